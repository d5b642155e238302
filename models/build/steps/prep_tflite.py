"""TF-free .tflite rewrite (litert venv): fold DENSIFY(sparse) and fp16 DEQUANTIZE weights into dense fp32
constants, drop unused tensors/buffers, add a `serving_default` signature. The output is numerically identical.

usage: prep_tflite.py IN OUT [--keep-fp16]
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
from _util import Timer, setup_logging
from ai_edge_litert import schema_py_generated as sch
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from ai_edge_quantizer.utils import tfl_flatbuffer_utils as fu

log = setup_logging("prep_tflite")


def dense_values(src: str):
    """Run the reference interpreter once keeping all tensors: DENSIFY outputs become readable."""
    it = Interpreter(model_path=src, experimental_preserve_all_tensors=True,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    d = it.get_input_details()[0]
    it.set_tensor(d["index"], np.zeros(d["shape"], d["dtype"]))
    it.invoke()
    return it


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--keep-fp16", action="store_true")
    a = ap.parse_args()
    t = Timer()
    m = fu.read_model(a.src)
    if len(m.subgraphs) != 1:
        raise SystemExit(f"{a.src}: expected 1 subgraph, found {len(m.subgraphs)}")
    g = m.subgraphs[0]
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in m.operatorCodes]
    B = sch.BuiltinOperator
    it = None

    def const_buffer(arr: np.ndarray) -> int:
        nb = sch.BufferT()
        nb.data = np.frombuffer(np.ascontiguousarray(arr).tobytes(), np.uint8)
        m.buffers.append(nb)
        return len(m.buffers) - 1

    keep, nd, nq = [], 0, 0
    for op in g.operators:  # topological order: a DENSIFY is folded before the DEQUANTIZE that reads it
        c = codes[op.opcodeIndex]
        if c == B.DENSIFY:
            it = it or dense_values(a.src)
            o = int(op.outputs[0])
            g.tensors[o].buffer = const_buffer(it.get_tensor(o))
            nd += 1
            continue
        if c == B.DEQUANTIZE and not a.keep_fp16:
            ti = g.tensors[int(op.inputs[0])]
            if ti.type == sch.TensorType.FLOAT16:
                w = np.frombuffer(bytes(m.buffers[ti.buffer].data), np.float16)
                g.tensors[int(op.outputs[0])].buffer = const_buffer(w.astype(np.float32))
                nq += 1
                continue
        keep.append(op)
    g.operators = keep

    used = {int(x) for x in g.inputs} | {int(x) for x in g.outputs}
    for op in g.operators:
        used |= {int(x) for x in op.inputs if x >= 0} | {int(x) for x in op.outputs}
    order = sorted(used)
    remap = {old: new for new, old in enumerate(order)}
    g.tensors = [g.tensors[i] for i in order]
    if any(t.sparsity is not None for t in g.tensors):
        raise SystemExit(f"{a.src}: a sparse tensor is still in use after folding DENSIFY")
    for op in g.operators:
        op.inputs = np.array([remap[int(x)] if x >= 0 else -1 for x in op.inputs], np.int32)
        op.outputs = np.array([remap[int(x)] for x in op.outputs], np.int32)
    g.inputs = np.array([remap[int(x)] for x in g.inputs], np.int32)
    g.outputs = np.array([remap[int(x)] for x in g.outputs], np.int32)
    used_b = sorted({t.buffer for t in g.tensors} | {0})
    bremap = {old: new for new, old in enumerate(used_b)}
    m.buffers = [m.buffers[i] for i in used_b]
    for tensor in g.tensors:
        tensor.buffer = bremap[tensor.buffer]

    def tmap(idx: int):
        t = sch.TensorMapT()
        nm = g.tensors[idx].name
        t.name = nm.decode() if isinstance(nm, bytes) else nm
        t.tensorIndex = int(idx)
        return t

    s = sch.SignatureDefT()
    s.signatureKey, s.subgraphIndex = "serving_default", 0
    s.inputs = [tmap(i) for i in g.inputs]
    s.outputs = [tmap(o) for o in g.outputs]
    m.signatureDefs = [s]
    m.metadata = None
    m.metadataBuffer = None
    fu.write_model(m, a.dst)
    log.info("%s: folded %d DENSIFY, %d fp16 DEQUANTIZE; %d tensors, %d buffers -> %s (%s)",
             a.src, nd, nq, len(order), len(used_b), a.dst, t)
    return 0


if __name__ == "__main__":
    sys.exit(main())
