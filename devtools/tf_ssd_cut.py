"""Cut the SSDLite pedestrian frozen graph (TF1 object detection API) to its network (convert venv, TensorFlow).

Input `input_1` (1, 300, 300, 3) replaces `Preprocessor/sub` (RGB in [-1, 1]); outputs `Identity` (1, 1917, 1, 4)
box encodings and `Identity_1` (1, 1917, 2) class logits (background, person). The anchors (1917, 4: ymin, xmin,
ymax, xmax, normalised) are evaluated once and saved: decoding and NMS run outside the model.

usage: tf_ssd_cut.py FROZEN.pb OUT.pb ANCHORS.npy   (devtools/people_candidates.py runs it)
"""
from __future__ import annotations

import sys

import numpy as np


def main() -> int:
    src, dst, anchors_out = sys.argv[1:4]
    import tensorflow as tf

    gd = tf.compat.v1.GraphDef()
    with open(src, "rb") as f:
        gd.ParseFromString(f.read())
    with tf.Graph().as_default() as g:
        tf.import_graph_def(gd, name="")
        with tf.compat.v1.Session(graph=g) as s:
            anchors = s.run("Postprocessor/Reshape:0", {"image_tensor:0": np.zeros((1, 300, 300, 3), np.uint8)})
    np.save(anchors_out, anchors.astype(np.float32))
    sub = tf.compat.v1.graph_util.extract_sub_graph(gd, ["concat", "concat_1"])
    out = tf.compat.v1.GraphDef()
    for n in sub.node:
        if n.name == "Preprocessor/sub":
            ph = out.node.add(name="input_1", op="Placeholder")
            ph.attr["dtype"].type = tf.float32.as_datatype_enum
            ph.attr["shape"].shape.CopyFrom(tf.TensorShape([1, 300, 300, 3]).as_proto())
            continue
        m = out.node.add()
        m.CopyFrom(n)
        m.input[:] = ["input_1" if i == "Preprocessor/sub" else i for i in n.input]
    for name, src_name in (("Identity", "concat"), ("Identity_1", "concat_1")):
        m = out.node.add(name=name, op="Identity")
        m.input.append(src_name)
        m.attr["T"].type = tf.float32.as_datatype_enum
    out = tf.compat.v1.graph_util.extract_sub_graph(out, ["Identity", "Identity_1"])
    with open(dst, "wb") as f:
        f.write(out.SerializeToString())
    print(f"{src} -> {dst}: {len(out.node)} nodes, anchors {anchors.shape} -> {anchors_out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
