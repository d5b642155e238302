"""Frozen TensorFlow GraphDef → FP32 .tflite with the TFLite converter (convert venv, TensorFlow).

Builtin ops only (no Select TF ops: the runtime has no Flex delegate); tensor names stay the graph's
(`input_1`, `Identity*`). prep_tflite.py adds the `serving_default` signature afterwards.

usage: tf_tflite.py GRAPH.pb OUT.tflite --outputs Identity,Identity_1 --shape 1,416,416,3 [--input input_1]
"""
from __future__ import annotations

import argparse
import sys

from _util import Timer, setup_logging

log = setup_logging("tf_tflite")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--outputs", required=True)
    ap.add_argument("--shape", required=True)
    ap.add_argument("--input", default="input_1")
    a = ap.parse_args()
    t = Timer()
    import tensorflow as tf

    conv = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
        a.src, input_arrays=[a.input], output_arrays=a.outputs.split(","),
        input_shapes={a.input: [int(d) for d in a.shape.split(",")]})
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    data = conv.convert()
    with open(a.dst, "wb") as f:
        f.write(data)
    log.info("%s -> %s (%.1f MB, %s)", a.src, a.dst, len(data) / 1e6, t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
