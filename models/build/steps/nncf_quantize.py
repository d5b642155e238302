"""OpenVINO INT8 with NNCF post-training quantization (quant venv).

The input IR must be constant-folded FP32 (ov_convert.py). OverflowFix.ENABLE: on AVX2 CPUs without VNNI the
u8s8 dot products saturate otherwise. `--keep-first K` keeps the first K convolutions and the output heads
(every convolution that reaches a Result without passing another convolution) in FP32; names are computed here,
in-process, because OpenVINO's generated node names differ between processes. `--ignored-scope JSON` instead
keeps the layers of a manifest's structural `[quantization.ignored_scope]` FP32 (nncf_scope.py).

usage: nncf_quantize.py IN.xml OUT.xml --data CALIB.npz --norm zero_one|minus_one_one
                        [--keep-first K | --ignored-scope JSON] [--limit N]
"""
from __future__ import annotations

import json
import sys

from _util import Timer, load_calib, quantize_arg_parser, setup_logging

log = setup_logging("nncf")
CONVS = ("Convolution", "GroupConvolution")


def head_convs(model) -> list[str]:
    """Convolutions feeding the outputs: walk back from each Result through non-conv ops."""
    out, seen = set(), set()
    stack = [r.input_value(0).get_node() for r in model.get_results()]
    while stack:
        n = stack.pop()
        if n.get_friendly_name() in seen:
            continue
        seen.add(n.get_friendly_name())
        if n.get_type_name() in CONVS:
            out.add(n.get_friendly_name())
            continue
        if n.get_type_name() in ("Parameter", "Constant"):
            continue
        stack.extend(v.get_node() for v in n.input_values())
    return sorted(out)


def main() -> int:
    ap = quantize_arg_parser()
    ap.add_argument("--keep-first", type=int, default=0, help="0 = quantize everything (full INT8)")
    ap.add_argument("--ignored-scope", help="JSON table of nncf_scope selectors (the manifest's ignored_scope)")
    a = ap.parse_args()
    if a.ignored_scope and a.keep_first:
        ap.error("--keep-first and --ignored-scope are alternatives")
    t = Timer()
    import nncf
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    m = ov.Core().read_model(a.src)
    data = load_calib(a.data, a.norm, a.limit)
    kw = {}
    ignored: list[str] = []
    scope = json.loads(a.ignored_scope) if a.ignored_scope else None
    if a.keep_first > 0:
        convs = [op.get_friendly_name() for op in m.get_ordered_ops() if op.get_type_name() in CONVS]
        ignored = sorted(set(convs[:a.keep_first]) | set(head_convs(m)))
    elif scope:
        import nncf_scope

        try:
            ignored = nncf_scope.resolve(*nncf_scope.openvino_graph(m), scope)
        except ValueError as e:
            log.error("%s: %s", a.src, e)
            return 2
    if ignored:
        kw["ignored_scope"] = nncf.IgnoredScope(names=ignored)
    conv_names = {op.get_friendly_name() for op in m.get_ordered_ops() if op.get_type_name() in CONVS}
    fp32_convs = [n for n in ignored if n in conv_names]
    q = nncf.quantize(m, nncf.Dataset(data), subset_size=len(data),
                      advanced_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE), **kw)
    ov.save_model(q, a.dst, compress_to_fp16=False)
    log.info("%s -> %s: %d calibration samples, %d ops kept FP32, %d of them convs (%s)", a.src, a.dst, len(data),
             len(ignored), len(fp32_convs), t)
    if a.info:
        with open(a.info, "w") as f:
            json.dump({"tool": f"nncf {nncf.__version__}", "samples": len(data), "keep_first": a.keep_first,
                       "ignored_scope": scope, "fp32_ops": len(ignored), "fp32_convs": len(fp32_convs),
                       "overflow_fix": "ENABLE"}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
