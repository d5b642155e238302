"""Read or replace the float32 constant tensors of a prepared .tflite (litert venv, no TensorFlow).

  tflite_weights.py dump MODEL.tflite CONSTS.npz
      every float32 constant tensor, in TFLite layout, as `t<tensor index>`
  tflite_weights.py apply MODEL.tflite WEIGHTS.npz OUT.tflite
      a copy of MODEL with the tensors named in WEIGHTS (`t<tensor index>`) holding the new values

Used to give the TFLite graph the weights QAT tuned (`edge models train`): the graph, the op set and the signature
stay the original's, so TFLite's own quantizer (aeq_quantize.py) can take it from there. A new value must have the
tensor's shape; a missing or non-float tensor is an error.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
from _util import Timer, setup_logging
from ai_edge_litert import schema_py_generated as sch
from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fu

log = setup_logging("tflite_weights")


def float_constants(m) -> dict[int, np.ndarray]:
    g = m.subgraphs[0]
    out = {}
    for i, t in enumerate(g.tensors):
        data = m.buffers[t.buffer].data if t.buffer < len(m.buffers) else None
        if t.type == sch.TensorType.FLOAT32 and data is not None and len(data):
            out[i] = np.frombuffer(bytes(data), np.float32).reshape([int(d) for d in t.shape])
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    sp = ap.add_subparsers(dest="cmd", required=True)
    d = sp.add_parser("dump")
    d.add_argument("src")
    d.add_argument("dst")
    p = sp.add_parser("apply")
    p.add_argument("src")
    p.add_argument("weights")
    p.add_argument("dst")
    a = ap.parse_args()
    t = Timer()
    m = fu.read_model(a.src)
    if len(m.subgraphs) != 1:
        raise SystemExit(f"{a.src}: expected 1 subgraph, found {len(m.subgraphs)}")
    consts = float_constants(m)
    if a.cmd == "dump":
        np.savez(a.dst, **{f"t{i}": v for i, v in consts.items()})
        log.info("%s: %d float32 constants -> %s (%s)", a.src, len(consts), a.dst, t)
        return 0
    g = m.subgraphs[0]
    users: dict[int, int] = {}
    for t in g.tensors:
        users[t.buffer] = users.get(t.buffer, 0) + 1
    new = np.load(a.weights)
    for key in new.files:
        i = int(key[1:])
        if i not in consts:
            raise SystemExit(f"{a.weights}: tensor {i} is not a float32 constant of {a.src}")
        v = np.ascontiguousarray(new[key], np.float32)
        if v.shape != consts[i].shape:
            raise SystemExit(f"{a.weights}: tensor {i} has shape {consts[i].shape}, the new value {v.shape}")
        if not np.isfinite(v).all():
            raise SystemExit(f"{a.weights}: tensor {i} has non-finite values")
        data = np.frombuffer(v.tobytes(), np.uint8)
        if users[g.tensors[i].buffer] == 1:
            m.buffers[g.tensors[i].buffer].data = data
        else:  # a buffer of its own: a shared one must not change under another tensor
            b = sch.BufferT()
            b.data = data
            m.buffers.append(b)
            users[g.tensors[i].buffer] -= 1
            g.tensors[i].buffer = len(m.buffers) - 1
            users[g.tensors[i].buffer] = 1
    fu.write_model(m, a.dst)
    log.info("%s: %d of %d float32 constants replaced -> %s (%s)", a.src, len(new.files), len(consts), a.dst, t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
