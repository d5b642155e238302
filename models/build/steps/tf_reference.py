"""Run a frozen TensorFlow GraphDef over stacked uint8 samples → golden.npz (convert venv, TensorFlow).

The reference outputs of models that come as TensorFlow graphs (TF.js, frozen GraphDef): written like
models.build.verify.save_golden (`input:<name>`, `output:<name>`, batch-1 samples stacked on axis 0).

usage: tf_reference.py GRAPH.pb SAMPLES.npz OUT.npz --norm zero_one|minus_one_one --outputs Identity,Identity_1
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from _util import NORMS, Timer, setup_logging

log = setup_logging("tf_reference")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("graph")
    ap.add_argument("samples")
    ap.add_argument("out")
    ap.add_argument("--norm", required=True, choices=sorted(NORMS))
    ap.add_argument("--outputs", required=True, help="comma-separated output node names")
    ap.add_argument("--input", default="input_1")
    a = ap.parse_args()
    t = Timer()
    import tensorflow as tf

    gd = tf.compat.v1.GraphDef()
    with open(a.graph, "rb") as f:
        gd.ParseFromString(f.read())
    scale, offset = NORMS[a.norm]
    x = np.load(a.samples)["x"].astype(np.float32) * np.float32(scale) + np.float32(offset)
    names = a.outputs.split(",")
    cfg = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=1, inter_op_parallelism_threads=1)
    outs: dict[str, list] = {n: [] for n in names}
    with tf.Graph().as_default() as g:
        tf.import_graph_def(gd, name="")
        with tf.compat.v1.Session(graph=g, config=cfg) as s:
            for i in range(len(x)):
                res = s.run([f"{n}:0" for n in names], {f"{a.input}:0": x[i:i + 1]})
                for n, r in zip(names, res):
                    outs[n].append(np.asarray(r, np.float32))
    arrays = {f"input:{a.input}": x} | {f"output:{n}": np.concatenate(v) for n, v in outs.items()}
    tmp = a.out[:-4] + ".tmp.npz"
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, a.out)
    log.info("%s: %d samples -> %s %s (%s)", a.graph, len(x), a.out,
             {n: arrays[f"output:{n}"].shape for n in names}, t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
