"""OpenVINO bf16 artefact (quant venv): the FP32 IR with the layers of the manifest's `[bf16] fp32_scope` marked
"precise" (OpenVINO's DisableFP16Compression run-time attribute), so that under `INFERENCE_PRECISION_HINT=bf16`
the CPU plugin runs every other layer in bf16 and those in f32. The IR also declares the hint it is meant for
(model rt_info `storefront_edge/inference_precision = bf16`), which the build runners and the runtime's OpenVINO
backend read. Weights are the FP32 IR's, unchanged.

The scope uses the selectors of `[quantization.ignored_scope]` (nncf_scope.py), resolved on this IR's graph.
OpenVINO has no Python setter for the attribute, so it is written into the IR's XML; the result is read back and
every marked layer, and only those, must carry it.

usage: ov_bf16.py IN.xml OUT.xml [--fp32-scope JSON] --info INFO.json
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from _util import Timer, setup_logging

log = setup_logging("ov_bf16")
PRECISE = {"name": "precise", "version": "0"}  # ov::DisableFP16Compression, as the IR serializer writes it
SKIP_TYPES = ("Const", "Parameter", "Result")


def is_precise(op) -> bool:
    """Whether an op read from an IR carries the precise / disable-precision-conversion attribute."""
    return any(k.startswith(("precise", "DisablePrecisionConversion", "disable_fp16_compression"))
               for k in op.get_rt_info().keys())


def mark(src: Path, dst: Path, names: set[str]) -> int:
    """Write src's XML to dst with the precise attribute on the named layers; returns the number of layers
    marked. KeyError when a name is not a layer of src."""
    tree = ET.parse(src)
    root = tree.getroot()
    found = set()
    for layer in root.iter("layer"):
        name = layer.get("name")
        if name not in names or layer.get("type") in SKIP_TYPES:
            continue
        rt = layer.find("rt_info")
        if rt is None:
            rt = ET.Element("rt_info")
            layer.insert(1 if layer.find("data") is not None else 0, rt)
        ET.SubElement(rt, "attribute", PRECISE)
        found.add(name)
    if names - found:
        raise KeyError(f"scope names that are not layers of {src.name}: {sorted(names - found)[:5]}")
    tree.write(dst, encoding="utf-8", xml_declaration=True)
    return len(found)


def scope_layers(graph, outputs: dict[str, str], scope: dict) -> set[str]:
    """The layers of an NNCF graph of the IR (nncf_scope.openvino_graph) that `scope` keeps f32: its resolved
    nodes but constants, parameters and results, which carry no precision of their own."""
    import nncf_scope

    names = nncf_scope.resolve(graph, outputs, scope) if scope else []
    return {n for n in names if graph.get_node_by_name(n).metatype.__name__ not in
            ("OVConstantMetatype", "OVParameterMetatype", "OVResultMetatype")}


def write(src: Path, dst: Path, names: set[str]) -> int:
    """dst: src's IR with `names` marked (mark) and the same weights; returns the number of layers marked."""
    n = mark(src, dst, names)
    shutil.copyfile(src.with_suffix(".bin"), dst.with_suffix(".bin"))
    return n


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--fp32-scope", default="", help="JSON table of nncf_scope selectors: the layers kept f32")
    ap.add_argument("--info", required=True)
    a = ap.parse_args()
    t = Timer()
    import openvino as ov

    import nncf_scope

    src, dst = Path(a.src), Path(a.dst)
    scope = json.loads(a.fp32_scope) if a.fp32_scope else {}
    names = scope_layers(*nncf_scope.openvino_graph(ov.Core().read_model(src)), scope)
    n = write(src, dst, names)

    back = ov.Core().read_model(dst)
    marked = {op.get_friendly_name() for op in back.get_ordered_ops() if is_precise(op)}
    if marked != names:
        raise SystemExit(f"read-back mismatch: {len(marked)} marked layers, expected {len(names)} "
                         f"(e.g. {sorted(marked ^ names)[:3]})")
    compute = [o for o in back.get_ordered_ops() if o.get_type_name() not in ("Constant", "Parameter", "Result")]
    info = {"fp32_scope": scope, "f32_layers": n, "layers": len(compute), "openvino": ov.__version__}
    Path(a.info).parent.mkdir(parents=True, exist_ok=True)
    Path(a.info).write_text(json.dumps(info, indent=1, sort_keys=True))
    log.info("%s -> %s: %d of %d layers kept f32 (%s), the rest bf16 where the CPU has it (%s)",
             src.name, dst.name, n, len(compute), scope or "none", t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
