"""TFLite static INT8 (int8 weights + activations) with ai-edge-quantizer, no TensorFlow (litert venv).

Input must be a prepared fp32 .tflite with a `serving_default` signature (prep_tflite.py). The result has
int8 input/outputs: callers quantize/dequantize with the tensors' (scale, zero_point).

usage: aeq_quantize.py IN.tflite OUT.tflite --data CALIB.npz --norm ... [--limit N]
"""
from __future__ import annotations

import json
import sys

from _util import Timer, load_calib, quantize_arg_parser, setup_logging

log = setup_logging("aeq")


def main() -> int:
    ap = quantize_arg_parser()
    ap.add_argument("--recipe", default="static_wi8_ai8")
    a = ap.parse_args()
    t = Timer()
    from ai_edge_quantizer import quantizer, recipe

    data = load_calib(a.data, a.norm, a.limit)
    qt = quantizer.Quantizer(float_model=a.src)
    qt.load_quantization_recipe(getattr(recipe, a.recipe)())
    cal = qt.calibrate({"serving_default": [{"input_1": x} for x in data]}) if qt.need_calibration else None
    qt.quantize(cal).export_model(a.dst, overwrite=True)
    log.info("%s -> %s: recipe %s, %d samples (%s)", a.src, a.dst, a.recipe, len(data), t)
    if a.info:
        with open(a.info, "w") as f:
            json.dump({"tool": "ai-edge-quantizer 0.10.0", "recipe": a.recipe, "samples": len(data)}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
