"""OpenVINO INT8 with NNCF post-training quantization (quant venv).

The input IR must be constant-folded FP32 (ov_convert.py). OverflowFix.ENABLE: on AVX2 CPUs without VNNI the
u8s8 dot products saturate otherwise. `--keep-first K` keeps the first K convolutions and the output heads
(every convolution that reaches a Result without passing another convolution) in FP32; names are computed here,
in-process, because OpenVINO's generated node names differ between processes. `--ignored-scope JSON` instead
keeps the layers of a manifest's structural `[quantization.ignored_scope]` FP32 (nncf_scope.py).
`--output-offset JSON` ({output: logit}, the manifest's `int8_output_offset`) adds a constant to the logits of those
outputs of the quantized model: e.g. a detector's scores, which INT8 biases low. An output made of Sigmoid ops
(through shape-only ops) gets it in front of each Sigmoid; any other output gets an Add before its Result (it
keeps its name).

usage: nncf_quantize.py IN.xml OUT.xml --data CALIB.npz --norm zero_one|minus_one_one
                        [--keep-first K | --ignored-scope JSON] [--output-offset JSON] [--limit N]
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


SHAPE_OPS = ("Transpose", "Reshape", "Concat", "Squeeze", "Unsqueeze")


def _sigmoids_feeding(node) -> list | None:
    """The Sigmoid ops an output is made of through shape-only ops (e.g. Transpose <- Concat <- Reshape <- Sigmoid
    per feature level), or None when some path reaches anything else."""
    if node.get_type_name() == "Sigmoid":
        return [node]
    if node.get_type_name() not in SHAPE_OPS:
        return None
    found = []
    for v in node.input_values():
        src = v.get_node()
        if src.get_type_name() == "Constant":
            continue
        sub = _sigmoids_feeding(src)
        if sub is None:
            return None
        found += sub
    return found or None


def add_output_offsets(model, offsets: dict[str, float]) -> list[str]:
    """Add offsets[name] (a logit) to each output `name` of the OpenVINO model in place: in front of its Sigmoid
    ops when the output is sigmoid probabilities, else to the output itself (an Add before the Result; the output
    keeps its name). Returns the outputs changed."""
    import numpy as np
    from openvino import opset13 as ops

    done = []
    for r in model.get_results():
        src = r.input_value(0)
        names = set(src.get_names())
        hit = sorted(n for n in offsets if n in names)
        if not hit:
            continue
        const = ops.constant(np.float32(offsets[hit[0]]))
        sigmoids = _sigmoids_feeding(src.get_node())
        if sigmoids:
            for i, sg in enumerate(sigmoids):
                x = sg.input_value(0)
                sg.input(0).replace_source_output(ops.add(x, const, name=f"{hit[0]}/int8_logit_offset_{i}").output(0))
        else:
            add = ops.add(src, const, name=f"{hit[0]}/int8_output_offset")
            src.get_tensor().set_names(set())
            add.output(0).get_tensor().set_names(names)  # the output keeps its name
            r.input(0).replace_source_output(add.output(0))
        done.append(hit[0])
    model.validate_nodes_and_infer_types()
    return done


def main() -> int:
    ap = quantize_arg_parser()
    ap.add_argument("--keep-first", type=int, default=0, help="0 = quantize everything (full INT8)")
    ap.add_argument("--ignored-scope", help="JSON table of nncf_scope selectors (the manifest's ignored_scope)")
    ap.add_argument("--output-offset", help="JSON {output: value} added to those outputs after quantization")
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
    offsets = json.loads(a.output_offset) if a.output_offset else {}
    if offsets:
        done = add_output_offsets(q, offsets)
        missing = sorted(set(offsets) - set(done))
        if missing:
            log.error("%s: --output-offset: no output %s (outputs: %s)", a.src, missing,
                      sorted(n for r in q.get_results() for n in r.input_value(0).get_names()))
            return 2
        log.info("output offsets added: %s", offsets)
    ov.save_model(q, a.dst, compress_to_fp16=False)
    log.info("%s -> %s: %d calibration samples, %d ops kept FP32, %d of them convs (%s)", a.src, a.dst, len(data),
             len(ignored), len(fp32_convs), t)
    if a.info:
        with open(a.info, "w") as f:
            json.dump({"tool": f"nncf {nncf.__version__}", "samples": len(data), "keep_first": a.keep_first,
                       "ignored_scope": scope, "fp32_ops": len(ignored), "fp32_convs": len(fp32_convs),
                       "overflow_fix": "ENABLE", "output_offset": offsets or None}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
