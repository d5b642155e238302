"""Frozen TensorFlow GraphDef → ONNX with tf2onnx (convert venv), canonical I/O names (input_1, Identity*).

usage: tf2onnx_graph.py GRAPH.pb OUT.onnx --outputs Identity,Identity_1 [--input input_1] [--opset 17]
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
from _util import Timer, setup_logging
from onnx_names import canonicalize

log = setup_logging("tf2onnx_graph")

if not hasattr(np, "product"):  # tf2onnx 1.17 still calls np.product (removed in numpy 2)
    np.product = np.prod


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--outputs", required=True)
    ap.add_argument("--input", default="input_1")
    ap.add_argument("--opset", type=int, default=17)
    a = ap.parse_args()
    t = Timer()
    import onnx
    import tensorflow as tf
    import tf2onnx

    gd = tf.compat.v1.GraphDef()
    with open(a.src, "rb") as f:
        gd.ParseFromString(f.read())
    outs = [f"{n}:0" for n in a.outputs.split(",")]
    model_proto, _ = tf2onnx.convert.from_graph_def(gd, input_names=[f"{a.input}:0"], output_names=outs,
                                                    opset=a.opset)
    g = model_proto.graph
    renames = {v.name: v.name.split(":")[0] for v in list(g.input) + list(g.output)}
    for v in list(g.input) + list(g.output):
        v.name = renames[v.name]
    for n in g.node:
        n.input[:] = [renames.get(x, x) for x in n.input]
        n.output[:] = [renames.get(x, x) for x in n.output]
    canonicalize(model_proto)  # tf2onnx's generated names vary from run to run
    onnx.checker.check_model(model_proto)
    onnx.save(model_proto, a.dst)
    log.info("%s -> %s opset %d inputs %s outputs %s, %d nodes (%s)", a.src, a.dst, a.opset,
             [i.name for i in g.input], [o.name for o in g.output], len(g.node), t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
