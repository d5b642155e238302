"""tflite → ONNX with tf2onnx (convert venv, needs TensorFlow). Keeps the canonical I/O names (input_1, Identity*).

usage: tf2onnx_convert.py IN.tflite OUT.onnx [--opset 17]
"""
from __future__ import annotations

import argparse
import sys

from _util import Timer, setup_logging
from onnx_names import canonicalize

log = setup_logging("tf2onnx")


def canonical(name: str) -> str:
    return name.split(":")[0]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--opset", type=int, default=17)
    a = ap.parse_args()
    t = Timer()
    import onnx
    import tf2onnx

    model_proto, _ = tf2onnx.convert.from_tflite(a.src, opset=a.opset)
    g = model_proto.graph
    renames = {v.name: canonical(v.name) for v in list(g.input) + list(g.output) if canonical(v.name) != v.name}
    for v in list(g.input) + list(g.output):
        v.name = renames.get(v.name, v.name)
    for n in g.node:
        n.input[:] = [renames.get(x, x) for x in n.input]
        n.output[:] = [renames.get(x, x) for x in n.output]
    canonicalize(model_proto)  # tf2onnx's generated names vary from run to run
    onnx.checker.check_model(model_proto)
    onnx.save(model_proto, a.dst)
    log.info("%s -> %s opset %d inputs %s outputs %s (%s)", a.src, a.dst, a.opset,
             [i.name for i in g.input], [o.name for o in g.output], t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
