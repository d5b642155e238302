"""Channel pruning of an ONNX conv net: a student that starts as the teacher with fewer channels.

The graph's channels fall into groups that must be cut together: a group is every tensor linked through
channel-wise ops (activations, Pad, MaxPool, Resize, Add, depthwise Conv), from the full convolutions that make
it to the full convolutions that read it. A group can be cut when it touches nothing else (no graph output, no
Reshape/Transpose, no constant operand). Cutting keeps the channels that matter most (the mean |activation| on
sample inputs times the L2 norm of the weights that read them) and slices every conv, depthwise conv and bias
that touches the group; the result is a valid ONNX file with the teacher's inputs and outputs.

`python prune.py TEACHER.onnx OUT.onnx --keep 8x864=0.33 16x528=0.5 --inputs crops.npy --low-seg` (--keep: a
group's SIDExCHANNELS, the side of the maps its first conv makes and its channel count → the fraction kept;
--list shows the groups).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger("prune")

# The pruned student's cut (SIDExCHANNELS -> fraction kept): 1.01 M parameters, 2.28x (onnxruntime) / 1.97x
# (OpenVINO) faster than the full model on one thread with --low-seg (measured 2026-12-02, docs/MODELS.md). The
# 128x128 and 64x64 groups cost the most time; the 8x8 and 16x16 ones the most parameters.
PRUNED_KEEP = {"128x24": 0.67, "128x64": 0.25, "64x144": 0.25, "32x192": 0.33, "32x48": 0.67, "16x384": 0.33,
               "16x528": 0.33, "8x864": 0.33, "8x288": 0.5}
PASS = {"Clip", "Relu", "Pad", "MaxPool", "Resize", "Add", "Sigmoid"}  # channel-wise (elementwise per channel)


@dataclass
class Group:
    """Tensors sharing one channel axis: made by `producers` (full convs), read by `consumers` (full convs)."""
    tensors: set[str] = field(default_factory=set)
    producers: list = field(default_factory=list)
    consumers: list = field(default_factory=list)
    depthwise: list = field(default_factory=list)
    channels: int = 0
    side: int = 0  # spatial side of the maps its first producer makes
    prunable: bool = True
    why: str = ""

    @property
    def name(self) -> str:
        return self.producers[0].name if self.producers else sorted(self.tensors)[0]

    @property
    def key(self) -> str:
        """"SIDExCHANNELS", how --keep names it (e.g. 8x864: the 864-channel group with 8x8 maps)."""
        return f"{self.side}x{self.channels}"


def _attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            from onnx import helper

            return helper.get_attribute_value(a)
    return default


def groups(model) -> list[Group]:
    """The channel groups of a (shape-inferred) model."""
    from onnx import numpy_helper

    g = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    parent: dict[str, str] = {}

    def find(t):
        while parent.setdefault(t, t) != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    def union(a, b):
        parent[find(a)] = find(b)

    def is_dw(n):
        if n.op_type != "Conv":
            return False
        w = inits.get(n.input[1])
        return w is not None and _attr(n, "group", 1) == w.shape[0] and w.shape[1] == 1 and w.shape[0] > 1

    data = [n for n in g.node]
    for n in data:
        ins = [i for i in n.input if i and i not in inits]
        if n.op_type in PASS or is_dw(n):
            if n.op_type in ("Pad", "Resize", "Clip"):
                ins = ins[:1]
            for t in ins + list(n.output):
                union(t, n.output[0])
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in (*g.value_info, *g.output, *g.input)}
    by_root: dict[str, Group] = {}
    for n in data:
        for t in [i for i in n.input if i and i not in inits] + list(n.output):
            gr = by_root.setdefault(find(t), Group())
            gr.tensors.add(t)
    outputs = {o.name for o in g.output} | {i.name for i in g.input}
    for n in data:
        full_conv = n.op_type == "Conv" and not is_dw(n)
        for t in n.output:
            gr = by_root[find(t)]
            if full_conv:
                gr.producers.append(n)
            elif is_dw(n):
                gr.depthwise.append(n)
            elif n.op_type not in PASS:
                gr.prunable, gr.why = False, f"made by {n.op_type} {n.name}"
            elif n.op_type == "Add" and any(i in inits for i in n.input):
                gr.prunable, gr.why = False, f"Add of a constant {n.name}"
            elif n.op_type == "Pad":
                pads = inits.get(n.input[1]) if len(n.input) > 1 else _attr(n, "pads")
                if pads is None or pads[1] != 0 or pads[len(pads) // 2 + 1] != 0:
                    gr.prunable, gr.why = False, f"Pad on channels {n.name}"
        for t in [i for i in n.input if i and i not in inits][:1]:
            gr = by_root[find(t)]
            if full_conv:
                gr.consumers.append(n)
            elif n.op_type not in PASS and not is_dw(n):
                gr.prunable, gr.why = False, f"read by {n.op_type} {n.name}"
    out = []
    for gr in {id(v): v for v in by_root.values()}.values():
        if gr.tensors & outputs:
            gr.prunable, gr.why = False, "graph input/output"
        if not gr.producers:
            gr.prunable, gr.why = False, gr.why or "no conv makes it"
        s = [shapes[t] for t in gr.tensors if t in shapes and len(shapes[t]) == 4]
        if s:
            made = shapes.get(gr.producers[0].output[0]) if gr.producers else None
            gr.channels, gr.side = s[0][1], (made or s[0])[2]
        out.append(gr)
    return out


def seg_below_upsample(model, output: str = "Identity_2") -> int:
    """Run the layers between the last upsampling and the head that makes `output` (a conv, then a Reshape) at
    the lower resolution: the layers read that Resize's input, and the head's one-channel result is upsampled by
    the same Resize instead. The teacher refines 8 channels at 256x256 before its segmentation head, which costs
    about 40 % of its time on one CPU thread; at 128x128 it costs a quarter of that. Returns the number of layers
    moved."""
    from onnx import helper

    g = model.graph
    made = {o: n for n in g.node for o in n.output}
    reshape = made[output]
    head = made[reshape.input[0]]
    if reshape.op_type != "Reshape" or head.op_type != "Conv":
        raise ValueError(f"{output} is not made by Conv -> Reshape")
    todo, seen, resize = [head.input[0]], set(), None
    while todo:
        n = made.get(todo.pop())
        if n is None or n.name in seen:
            continue
        seen.add(n.name)
        if n.op_type == "Resize":
            if resize is not None and resize.name != n.name:
                raise ValueError(f"{output}: more than one upsampling on the way back ({resize.name}, {n.name})")
            resize = n
            continue
        todo += [i for i in n.input if i in made]
    if resize is None:
        raise ValueError(f"{output}: no Resize before its head")
    for n in g.node:  # the layers after the Resize read its input
        n.input[:] = [resize.input[0] if i == resize.output[0] else i for i in n.input]
    up = helper.make_node("Resize", [head.output[0] + "_low", *resize.input[1:]], [head.output[0]],
                          name=resize.name + "_seg")
    up.attribute.extend(resize.attribute)
    head.output[0] += "_low"
    nodes = list(g.node)
    nodes.insert(nodes.index(head) + 1, up)
    _keep_live(model, nodes)
    return len(seen) - 1


def _seg_logits_in_range(path: Path, x: np.ndarray, output: str = "Identity_2", target: float = 8.0) -> float:
    """Scale the segmentation head of the model at `path` so that the 99th percentile of its |logits| on x is
    `target`: the teacher's logits reach +-1.7e3, far outside the +-30 the distillation loss clamps them to,
    where a cut model's mask gets no gradient (with 20 the mask of a cut model still collapsed to background in
    200 steps). The sign of each logit (the mask) is unchanged. Returns the factor applied."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inp = sess.get_inputs()[0].name
    logits = np.concatenate([sess.run([output], {inp: x[i:i + 1]})[0] for i in range(len(x))])
    factor = float(target / max(np.percentile(np.abs(logits), 99), 1e-6))
    model = onnx.load(str(path))
    made = {o: n for n in model.graph.node for o in n.output}
    head = made[made[made[output].input[0]].input[0]]  # Reshape <- Resize <- head Conv
    if head.op_type != "Conv":
        raise ValueError(f"{output}: expected Conv -> Resize -> Reshape, found {head.op_type}")
    inits = {i.name: i for i in model.graph.initializer}
    for name in head.input[1:]:
        if name:
            inits[name].CopyFrom(numpy_helper.from_array(numpy_helper.to_array(inits[name]) * np.float32(factor),
                                                         name))
    onnx.save(model, str(path))
    return factor


def _keep_live(model, nodes) -> int:
    """Set the graph's nodes to those the outputs need (in order), drop unused initializers."""
    g = model.graph
    need = {o.name for o in g.output}
    live = []
    for n in reversed(nodes):
        if any(o in need for o in n.output):
            live.append(n)
            need.update(i for i in n.input if i)
    removed = len(nodes) - len(live)
    del g.node[:]
    g.node.extend(reversed(live))
    inits = [i for i in g.initializer if i.name in need]
    del g.initializer[:]
    g.initializer.extend(inits)
    return removed


def importance(model, gr: Group, acts: dict[str, np.ndarray]) -> np.ndarray:
    """Per channel: the mean |activation| at each consumer's input times the L2 norm of the weights reading it,
    summed over consumers (scaled to each consumer's total)."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    score = np.zeros(gr.channels)
    for c in gr.consumers:
        w = numpy_helper.to_array(inits[c.input[1]])
        col = np.sqrt((w.astype(np.float64) ** 2).sum(axis=(0, 2, 3)))
        a = acts.get(c.input[0], np.ones(gr.channels))
        s = col * a
        score += s / max(s.sum(), 1e-12)
    return score


def activations(model_path: Path, model, tensors: set[str], x: np.ndarray) -> dict[str, np.ndarray]:
    """Mean |value| per channel of the named NCHW tensors over the inputs x (NHWC batch)."""
    import onnx
    import onnxruntime as ort

    m = onnx.load(str(model_path))
    known = {o.name for o in m.graph.output}
    m.graph.output.extend([onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None)
                           for t in sorted(tensors - known)])
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    sums: dict[str, np.ndarray] = {}
    inp = sess.get_inputs()[0].name
    for i in range(len(x)):
        for n, v in zip(names, sess.run(None, {inp: x[i:i + 1]})):
            if n in tensors and v.ndim == 4:
                sums[n] = sums.get(n, 0) + np.abs(v).mean(axis=(0, 2, 3))
    return {k: v / len(x) for k, v in sums.items()}


def prune(teacher: Path, out: Path, keep: dict[str, float], x: np.ndarray | None = None,
          multiple: int = 8, low_seg: bool = False) -> dict:
    """Write `out`: the teacher with each prunable group cut to keep[group.key] of its channels (rounded up to a
    multiple of `multiple`). Returns a report: per group its key, name, channels before and after, and the
    parameter count. low_seg: first move the segmentation head below its last upsampling (seg_below_upsample),
    and (given x) scale its logits into the distillation loss's range (_seg_logits_in_range)."""
    import onnx
    from onnx import helper, numpy_helper, shape_inference

    model = onnx.load(str(teacher))
    removed = seg_below_upsample(model) if low_seg else 0
    del model.graph.value_info[:]
    model = shape_inference.infer_shapes(model)
    if removed:  # the importance is measured on the model being cut
        teacher = out.with_suffix(".low_seg.onnx")
        onnx.save(model, str(teacher))
    found = groups(model)
    unknown = sorted(set(keep) - {gr.key for gr in found if gr.prunable})
    if unknown:
        raise ValueError(f"--keep {unknown}: no prunable channel group of that SIDExCHANNELS (--list shows them)")
    grs = [gr for gr in found if gr.prunable and gr.key in keep]
    consumer_inputs = {c.input[0] for gr in grs for c in gr.consumers}
    acts = activations(teacher, model, consumer_inputs, x) if x is not None and len(x) else {}
    inits = {i.name: i for i in model.graph.initializer}
    report = []
    edits: dict[str, np.ndarray] = {}  # initializer name -> new array

    def arr(name):
        return edits[name] if name in edits else numpy_helper.to_array(inits[name])

    for gr in sorted(grs, key=lambda g: g.name):
        n_keep = min(gr.channels, max(multiple, int(np.ceil(gr.channels * keep[gr.key] / multiple)) * multiple))
        if n_keep >= gr.channels:
            continue
        idx = np.sort(np.argsort(-importance(model, gr, acts), kind="stable")[:n_keep])
        for p in gr.producers + gr.depthwise:
            edits[p.input[1]] = arr(p.input[1])[idx]
            if len(p.input) > 2 and p.input[2]:
                edits[p.input[2]] = arr(p.input[2])[idx]
        for d in gr.depthwise:
            for a in d.attribute:
                if a.name == "group":
                    a.CopyFrom(helper.make_attribute("group", int(n_keep)))
        for c in gr.consumers:
            edits[c.input[1]] = arr(c.input[1])[:, idx]
        report.append({"key": gr.key, "group": gr.name, "channels": gr.channels, "kept": int(n_keep)})
    shared = [t for t in edits if sum(1 for n in model.graph.node for i in n.input[1:] if i == t) > 1]
    if shared:
        raise ValueError(f"weights shared between convs cannot be cut per group: {shared[:3]}")
    for name, a in edits.items():
        inits[name].CopyFrom(numpy_helper.from_array(np.ascontiguousarray(a), name))
    del model.graph.value_info[:]
    model = shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    seg_scale = _seg_logits_in_range(out, x) if removed and x is not None and len(x) else 1.0
    params = sum(int(np.prod(i.dims)) for i in model.graph.initializer)
    if removed:
        teacher.unlink()
    return {"groups": report, "params": params, "low_seg_moved_nodes": removed, "seg_scale": seg_scale}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("teacher", type=Path)
    ap.add_argument("out", type=Path, nargs="?")
    ap.add_argument("--keep", nargs="*", default=[], help="SIDExCHANNELS=FRACTION, e.g. 8x864=0.33")
    ap.add_argument("--inputs", type=Path, help=".npy NHWC float32 sample inputs for the importance")
    ap.add_argument("--low-seg", action="store_true", help="segmentation head below its last upsampling")
    ap.add_argument("--list", action="store_true", help="print the channel groups and exit")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if a.list:
        import onnx
        from onnx import shape_inference

        for gr in groups(shape_inference.infer_shapes(onnx.load(str(a.teacher)))):
            print(f"{gr.key:8s} {gr.name[-40:]:40s} prod {len(gr.producers)} "
                  f"dw {len(gr.depthwise)} cons {len(gr.consumers)} {'ok' if gr.prunable else gr.why}")
        return 0
    if a.out is None:
        ap.error("OUT is required unless --list")
    keep = {k: float(v) for k, v in (s.split("=", 1) for s in a.keep)}
    x = np.load(a.inputs) if a.inputs else None
    print(json.dumps(prune(a.teacher, a.out, keep, x, low_seg=a.low_seg), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
