"""tflite → OpenVINO IR FP32, constant-folded: the FP16 weight decompression is folded into FP32 constants
(NNCF needs this to shrink weights; the FP32 IR then has no runtime decompression either).

usage: ov_convert.py IN.tflite OUT.xml
"""
from __future__ import annotations

import argparse
import sys

from _util import Timer, setup_logging

log = setup_logging("ov_convert")


def fold(model):
    """Drop the decompression / DisableConstantFolding marks on the FP16 Converts and constant-fold."""
    from openvino import passes
    n = 0
    for op in model.get_ops():
        if op.get_type_name() == "Convert":
            rt = op.get_rt_info()
            for k in list(rt.keys()):
                if k.startswith(("decompression", "DisableConstantFolding")):
                    del rt[k]
                    n += 1
    pm = passes.Manager()
    pm.register_pass(passes.ConstantFolding())
    pm.run_passes(model)
    return model, n


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    a = ap.parse_args()
    t = Timer()
    import openvino as ov
    m, n = fold(ov.Core().read_model(a.src))
    ov.save_model(m, a.dst, compress_to_fp16=False)
    log.info("%s -> %s (unmarked %d decompression attrs, %s)", a.src, a.dst, n, t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
