"""onnxruntime static INT8, QDQ, per-channel, U8U8 (quant venv).

U8U8 rather than the default U8S8: U8S8 saturates on AVX2 CPUs without VNNI (landmark drift 0.105 measured).
`--keep-first K` excludes the first K Conv nodes and the output-head convs (every Conv reaching a graph output
without passing another Conv) from quantization.

usage: ort_quantize.py IN.onnx OUT.onnx --data CALIB.npz --norm ... [--keep-first K] [--limit N]
"""
from __future__ import annotations

import json
import os
import sys
import tempfile

from _util import Timer, load_calib, quantize_arg_parser, setup_logging

log = setup_logging("ort_quant")


def excluded_convs(model, keep_first: int) -> list[str]:
    g = model.graph
    convs = [n.name for n in g.node if n.op_type == "Conv"]
    producer = {o: n for n in g.node for o in n.output}
    heads, seen = set(), set()
    stack = [o.name for o in g.output]
    while stack:
        t = stack.pop()
        n = producer.get(t)
        if n is None or n.name in seen:
            continue
        seen.add(n.name)
        if n.op_type == "Conv":
            heads.add(n.name)
            continue
        stack.extend(x for x in n.input if x)
    return sorted(set(convs[:keep_first]) | heads)


def main() -> int:
    ap = quantize_arg_parser()
    ap.add_argument("--keep-first", type=int, default=0, help="0 = quantize everything (full INT8)")
    a = ap.parse_args()
    t = Timer()
    import onnx
    import onnxruntime
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process

    data = load_calib(a.data, a.norm, a.limit)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter({"input_1": x} for x in data)

        def get_next(self):
            return next(self.it, None)

    with tempfile.TemporaryDirectory() as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        quant_pre_process(a.src, pre)
        excl = excluded_convs(onnx.load(pre), a.keep_first) if a.keep_first > 0 else []
        quantize_static(pre, a.dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=excl)
    log.info("%s -> %s: %d samples, %d convs kept FP32 (%s)", a.src, a.dst, len(data), len(excl), t)
    if a.info:
        with open(a.info, "w") as f:
            json.dump({"tool": f"onnxruntime {onnxruntime.__version__}", "samples": len(data), "format": "QDQ",
                       "types": "U8U8 per-channel MinMax", "keep_first": a.keep_first, "fp32_convs": len(excl)},
                      f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
