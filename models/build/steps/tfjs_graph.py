"""TF.js graph model (model.json + weight shards) → frozen TensorFlow GraphDefs (convert venv, TensorFlow).

Writes two graphs with the project's canonical I/O (`input_1` NHWC float32 in [0, 1]; outputs `Identity`,
`Identity_1`, ...):
- REF.pb keeps the TF.js ops as they are (`_FusedConv2D`, ...): the reference the golden outputs come from;
- FP32.pb is the same graph with every input-independent sub-graph constant-folded and the fused ops split into
  plain Conv2D / DepthwiseConv2dNative + BiasAdd + activation, which tf2onnx, the TFLite converter and OpenVINO
  all read (OpenVINO rejects the ScatterND that NanoDet's SparseToDense shape arithmetic becomes).

Fixes applied to the JSON on the way (tf2onnx 1.17 needs them too): `TArgs` on `_Fused*` nodes, `index_type`
on `TopKV2`, `FusedDepthwiseConv2dNative` → `_FusedDepthwiseConv2dNative` (the TF.js converter drops the
underscore). A recipe adds the input normalisation and arranges the outputs:

- nanodet: input BGR [0, 1] × 255, minus mean (103.53, 116.28, 123.675), divided by std (57.375, 57.12, 58.395),
  transposed to the model's NCHW; outputs the three stride levels (8, 16, 32) concatenated:
  `Identity` (1, 3549, 80) class probabilities, `Identity_1` (1, 3549, 44) box distributions (4 sides × 11 bins).
- movenet: input RGB [0, 1] × 255 (the model casts its int32 input to float itself); output `Identity`
  (1, 6, 56): per person 17 × (y, x, score) then (ymin, xmin, ymax, xmax, score), all relative to the input.

usage: tfjs_graph.py MODEL.json REF.pb FP32.pb --recipe nanodet|movenet --size N
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from _util import Timer, setup_logging

log = setup_logging("tfjs_graph")

ACTIVATIONS = {"Relu", "Relu6", "Elu", "Sigmoid", "Tanh", "LeakyRelu"}


def read_weights(model: dict, folder: Path) -> dict[str, np.ndarray]:
    """Weights of a TF.js graph model (float16 / affine uint8/uint16 quantization dequantized to float32)."""
    out = {}
    for group in model["weightsManifest"]:
        data = b"".join((folder / p).read_bytes() for p in group["paths"])
        off = 0
        for w in group["weights"]:
            n = int(np.prod(w["shape"], dtype=np.int64))
            dt = np.dtype(w["dtype"])
            q = w.get("quantization")
            if q:
                qd = np.dtype(q["dtype"])
                a = np.frombuffer(data, qd, n, off)
                off += a.nbytes
                a = a.astype(dt) * q["scale"] + q["min"] if "scale" in q else a.astype(dt)
            else:
                a = np.frombuffer(data, dt, n, off)
                off += a.nbytes
            out[w["name"]] = np.asarray(a, dt).reshape(w["shape"])
        if off != len(data):
            raise SystemExit(f"weights: read {off} bytes of {len(data)}: manifest and shards disagree")
    return out


def fix_nodes(nodes: list[dict]) -> int:
    n = 0
    for nd in nodes:
        a = nd.setdefault("attr", {})
        if nd["op"] == "FusedDepthwiseConv2dNative":
            nd["op"] = "_FusedDepthwiseConv2dNative"
        if nd["op"].startswith("_Fused") and "TArgs" not in a:
            k = int(a.get("num_args", {}).get("i", "0"))
            a["TArgs"] = {"list": {"type": [a.get("T", {}).get("type", "DT_FLOAT")] * k}}
            n += 1
        if nd["op"] == "TopKV2" and "index_type" not in a:
            a["index_type"] = {"type": "DT_INT32"}
            n += 1
    return n


def to_graph_def(model: dict, weights: dict[str, np.ndarray]):
    import tensorflow as tf
    from google.protobuf.json_format import ParseDict

    gd = tf.compat.v1.GraphDef()
    for nd in model["modelTopology"]["node"]:
        node = ParseDict(nd, gd.node.add())
        if node.op == "Const":
            if node.name not in weights:
                raise SystemExit(f"Const {node.name} has no weight")
            want = tf.as_dtype(node.attr["dtype"].type).as_numpy_dtype  # TF.js stores int64 as int32
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(weights[node.name].astype(want)))
    return gd


def _const(gd, name: str, value: np.ndarray):
    import tensorflow as tf
    n = gd.node.add(name=name, op="Const")
    n.attr["dtype"].type = tf.as_dtype(value.dtype).as_datatype_enum
    n.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
    return n


def _op(gd, name: str, op: str, inputs: list[str], **attrs):
    n = gd.node.add(name=name, op=op)
    n.input.extend(inputs)
    for k, v in attrs.items():
        if isinstance(v, str) and v.startswith("DT_"):
            from tensorflow.core.framework import types_pb2
            n.attr[k].type = types_pb2.DataType.Value(v)
        elif isinstance(v, bool):
            n.attr[k].b = v
        elif isinstance(v, int):
            n.attr[k].i = v
        elif isinstance(v, float):
            n.attr[k].f = v
        else:
            n.attr[k].CopyFrom(v)
    return n


def _rewire(gd, old: str, new: str) -> None:
    """Point every consumer of `old` (output 0) at `new`."""
    for n in gd.node:
        for i, x in enumerate(n.input):
            base, _, port = x.partition(":")
            if base == old and port in ("", "0"):
                n.input[i] = new


def _rename_outputs(gd, outputs: list[str]) -> list[str]:
    """Move the model's output nodes out of the way of the canonical names (`Identity*`)."""
    ren = {o.split(":")[0]: f"tfjs_out/{o.split(':')[0]}" for o in outputs}
    for n in gd.node:
        n.name = ren.get(n.name, n.name)
        for i, x in enumerate(n.input):
            ctrl = "^" if x.startswith("^") else ""
            base, sep, port = x.lstrip("^").partition(":")
            n.input[i] = ctrl + ren.get(base, base) + sep + port
    return [ren[o.split(":")[0]] for o in outputs]


def recipe_nanodet(gd, model: dict, size: int) -> list[str]:
    import tensorflow as tf
    from tensorflow.core.framework import tensor_shape_pb2

    (ph,) = [n for n in gd.node if n.op == "Placeholder"]
    old = ph.name
    gd.node.remove(ph)
    _rewire(gd, old, "prep/nchw")  # before adding the new `input_1`: the old input has the same name
    sig = model["signature"]["outputs"]
    by_n = {}
    for v in sig.values():
        dims = [int(d["size"]) for d in v["tensorShape"]["dim"]]
        by_n.setdefault(dims[2] == 80, {})[dims[1]] = v["name"]
    cls_names = [by_n[True][k] for k in sorted(by_n[True], reverse=True)]  # stride 8 (most cells) first
    reg_names = [by_n[False][k] for k in sorted(by_n[False], reverse=True)]
    renamed = _rename_outputs(gd, cls_names + reg_names)
    # the old placeholder becomes: transpose(((x * 255) - mean) / std) of the new NHWC input
    x = gd.node.add(name="input_1", op="Placeholder")
    x.attr["dtype"].type = tf.float32.as_datatype_enum
    x.attr["shape"].shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in (1, size, size, 3)]))
    _const(gd, "prep/scale", np.float32(255.0))
    _const(gd, "prep/mean", np.array([103.53, 116.28, 123.675], np.float32))
    _const(gd, "prep/inv_std", (1.0 / np.array([57.375, 57.12, 58.395], np.float64)).astype(np.float32))
    _const(gd, "prep/perm", np.array([0, 3, 1, 2], np.int32))
    _op(gd, "prep/mul", "Mul", ["input_1", "prep/scale"], T="DT_FLOAT")
    _op(gd, "prep/sub", "Sub", ["prep/mul", "prep/mean"], T="DT_FLOAT")
    _op(gd, "prep/norm", "Mul", ["prep/sub", "prep/inv_std"], T="DT_FLOAT")
    _op(gd, "prep/nchw", "Transpose", ["prep/norm", "prep/perm"], T="DT_FLOAT", Tperm="DT_INT32")
    _const(gd, "post/axis", np.int32(1))
    _op(gd, "Identity", "ConcatV2", renamed[:3] + ["post/axis"], T="DT_FLOAT", N=3, Tidx="DT_INT32")
    _op(gd, "Identity_1", "ConcatV2", renamed[3:] + ["post/axis"], T="DT_FLOAT", N=3, Tidx="DT_INT32")
    return ["Identity", "Identity_1"]


def recipe_movenet(gd, model: dict, size: int) -> list[str]:
    import tensorflow as tf
    from tensorflow.core.framework import tensor_shape_pb2

    (ph,) = [n for n in gd.node if n.op == "Placeholder"]
    outs = [v["name"] for v in model["signature"]["outputs"].values()]
    renamed = _rename_outputs(gd, outs)
    old = ph.name
    gd.node.remove(ph)
    _rewire(gd, old, "prep/mul")
    x = gd.node.add(name="input_1", op="Placeholder")
    x.attr["dtype"].type = tf.float32.as_datatype_enum
    x.attr["shape"].shape.CopyFrom(tensor_shape_pb2.TensorShapeProto(
        dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in (1, size, size, 3)]))
    _const(gd, "prep/scale", np.float32(255.0))
    _op(gd, "prep/mul", "Mul", ["input_1", "prep/scale"], T="DT_FLOAT")
    for n in gd.node:  # the int32 -> float Cast now reads float
        if n.op == "Cast" and list(n.input) == ["prep/mul"]:
            n.attr["SrcT"].type = tf.float32.as_datatype_enum
    _op(gd, "Identity", "Identity", [renamed[0]], T="DT_FLOAT")
    return ["Identity"]


RECIPES = {"nanodet": recipe_nanodet, "movenet": recipe_movenet}


def prune(gd, outputs: list[str]):
    import tensorflow as tf
    return tf.compat.v1.graph_util.extract_sub_graph(gd, outputs)


def fold_constants(gd, outputs: list[str]):
    """Replace every input-independent node that feeds an input-dependent one by its value (one TF run)."""
    import tensorflow as tf

    by = {n.name: n for n in gd.node}
    dep: dict[str, bool] = {}

    def depends(name: str) -> bool:
        if name in dep:
            return dep[name]
        stack = [name]
        while stack:  # iterative post-order: graphs are deep
            cur = stack[-1]
            ins = [i.split(":")[0].lstrip("^") for i in by[cur].input]
            todo = [i for i in ins if i not in dep]
            if todo:
                stack.extend(todo)
                continue
            stack.pop()
            dep[cur] = by[cur].op == "Placeholder" or any(dep[i] for i in ins)
        return dep[name]

    frontier = set()
    for n in gd.node:
        if depends(n.name):
            for i in n.input:
                base = i.lstrip("^")
                if not depends(base.split(":")[0]) and by[base.split(":")[0]].op != "Const":
                    frontier.add(base if ":" in base else base + ":0")
    if not frontier:
        return gd, 0
    with tf.Graph().as_default() as g:
        tf.import_graph_def(gd, name="")
        with tf.compat.v1.Session(graph=g) as s:
            values = dict(zip(sorted(frontier), s.run(sorted(frontier))))
    out = tf.compat.v1.GraphDef()
    out.CopyFrom(gd)
    for t, v in values.items():
        cname = "folded/" + t.replace(":", "_")
        _const(out, cname, np.asarray(v))
        base, port = t.split(":")
        for n in out.node:
            for k, x in enumerate(n.input):
                xb, _, xp = x.partition(":")
                if xb == base and (xp or "0") == port:
                    n.input[k] = cname
    return prune(out, outputs), len(values)


def unfuse(gd):
    """_FusedConv2D / _FusedDepthwiseConv2dNative (BiasAdd + activation) → plain ops."""
    import tensorflow as tf

    out = tf.compat.v1.GraphDef()
    n_done = 0
    for n in gd.node:
        if n.op not in ("_FusedConv2D", "_FusedDepthwiseConv2dNative"):
            out.node.add().CopyFrom(n)
            continue
        fused = [s.decode() for s in n.attr["fused_ops"].list.s]
        if not fused or fused[0] != "BiasAdd" or len(fused) > 2 or (len(fused) == 2 and fused[1] not in ACTIVATIONS):
            raise SystemExit(f"{n.name}: fused ops {fused} not supported")
        conv = out.node.add(name=n.name + "/conv", op="Conv2D" if n.op == "_FusedConv2D" else "DepthwiseConv2dNative")
        conv.input.extend(n.input[:2])
        for k in ("T", "strides", "padding", "explicit_paddings", "data_format", "dilations"):
            if k in n.attr:
                conv.attr[k].CopyFrom(n.attr[k])
        last = conv.name
        name = n.name if len(fused) == 1 else n.name + "/bias"
        b = out.node.add(name=name, op="BiasAdd")
        b.input.extend([last, n.input[2]])
        b.attr["T"].CopyFrom(n.attr["T"])
        b.attr["data_format"].CopyFrom(n.attr["data_format"])
        if len(fused) == 2:
            act = out.node.add(name=n.name, op=fused[1])
            act.input.append(b.name)
            act.attr["T"].CopyFrom(n.attr["T"])
            if fused[1] == "LeakyRelu":
                act.attr["alpha"].f = n.attr["leakyrelu_alpha"].f
        n_done += 1
    return out, n_done


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("ref")
    ap.add_argument("fp32")
    ap.add_argument("--recipe", required=True, choices=sorted(RECIPES))
    ap.add_argument("--size", type=int, required=True)
    a = ap.parse_args()
    t = Timer()
    import tensorflow as tf

    src = Path(a.src)
    model = json.loads(src.read_text())
    if model.get("format") != "graph-model":
        raise SystemExit(f"{src}: not a TF.js graph model (format {model.get('format')!r})")
    nodes = model["modelTopology"]["node"]
    n_fix = fix_nodes(nodes)
    weights = read_weights(model, src.parent)
    gd = to_graph_def(model, weights)
    outputs = RECIPES[a.recipe](gd, model, a.size)
    gd = prune(gd, outputs)
    with tf.Graph().as_default():  # validates the graph (op signatures, shapes)
        tf.import_graph_def(gd, name="")
    # deterministic: attribute maps in a fixed order, so two runs write the same bytes
    Path(a.ref).write_bytes(gd.SerializeToString(deterministic=True))
    folded, n_folded = fold_constants(gd, outputs)
    plain, n_unfused = unfuse(folded)
    with tf.Graph().as_default():
        tf.import_graph_def(plain, name="")
    Path(a.fp32).write_bytes(plain.SerializeToString(deterministic=True))
    ops = sorted({n.op for n in plain.node})
    log.info("%s: %d weights, %d attr fixes, %d folded tensors, %d fused ops split; outputs %s; ops %s (%s)",
             src.name, len(weights), n_fix, n_folded, n_unfused, outputs, ops, t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
