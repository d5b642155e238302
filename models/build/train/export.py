"""`python export.py CKPT OUT_STEM --kind qat|student --teacher FP32.onnx`: trained weights → deployable files.

qat:     OUT_STEM.xml/.bin  OpenVINO IR with FakeQuantize (OpenVINO runs it as INT8)
         OUT_STEM.onnx      QDQ ONNX for onnxruntime, weights stored as int8 initializers + DequantizeLinear
         OUT_STEM.tflite_weights.npz  (with --tflite-consts) the same weights for the TFLite graph
student: OUT_STEM.xml/.bin  and OUT_STEM.onnx in FP32 (INT8 of the student goes through the normal quantizers)
Input `input_1` (1, 256, 256, 3) and outputs Identity..Identity_4, as the FP32 model, so the runtime is unchanged.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from teacher import OUTPUTS, load_onnx_as_torch, wrap  # noqa: E402

log = logging.getLogger("export")


def load_trained(ckpt: Path, kind: str, teacher_onnx: Path):
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    if kind == "student" and "start_onnx" in state:  # a pruned student: the weights belong to this graph
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            start = Path(d) / "start.onnx"
            start.write_bytes(state["start_onnx"])
            m = wrap(load_onnx_as_torch(start))
        m.load_state_dict(state["model"])
        return m.eval(), state
    if kind == "student":
        from student import StudentLandmark

        m = StudentLandmark()
        m.load_state_dict(state["model"])
        return m.eval(), state
    from loop import use_reference_quantizers
    from nncf.torch import load_from_config

    use_reference_quantizers()
    m = wrap(load_onnx_as_torch(teacher_onnx)).eval()
    q = load_from_config(m, state["nncf_config"])
    q.load_state_dict(state["model"])
    return q.eval(), state


def _name_io(ov_model) -> None:
    ov_model.inputs[0].get_tensor().set_names({"input_1"})
    for out, name in zip(ov_model.outputs, OUTPUTS):
        out.get_tensor().set_names({name})


def export_ir(model, dst: Path, fp16: bool = False) -> None:
    """fp16: the float (unquantized) weights stored as FP16 and widened at load; INT8 weights stay INT8."""
    import openvino as ov

    with torch.no_grad():
        ovm = ov.convert_model(model, example_input=torch.zeros(1, 256, 256, 3), input=[(1, 256, 256, 3)])
    _name_io(ovm)
    if fp16:
        _fp16_constants(ovm)
    ov.save_model(ovm, str(dst), compress_to_fp16=False)


def _fp16_constants(ovm, min_size: int = 1024) -> int:
    """FP32 weight constants → FP16 constant + Convert (folded when the model is compiled). save_model's own
    compress_to_fp16 leaves a model with FakeQuantize alone, so the FP32 layers of a mixed model stay 4 bytes."""
    import openvino as ov
    from openvino import opset13 as ops

    n = 0
    for op in ovm.get_ordered_ops():
        if op.get_type_name() != "Constant" or op.get_element_type() != ov.Type.f32:
            continue
        data = op.get_data()
        if data.size < min_size:
            continue
        conv = ops.convert(ops.constant(data.astype(np.float16)), ov.Type.f32)
        for target in list(op.output(0).get_target_inputs()):
            target.replace_source_output(conv.output(0))
        n += 1
    ovm.validate_nodes_and_infer_types()
    log.info("%d FP32 weight constants stored as FP16", n)
    return n


def export_onnx(model, dst: Path, kind: str) -> None:
    if kind == "qat":
        import nncf

        model = nncf.strip(model, do_copy=True, strip_format=nncf.StripFormat.NATIVE,
                           example_input=torch.zeros(1, 256, 256, 3))
    with torch.no_grad():
        torch.onnx.export(model, (torch.zeros(1, 256, 256, 3),), str(dst), input_names=["input_1"],
                          output_names=list(OUTPUTS), opset_version=17, dynamo=False)
    if kind == "qat":
        int8_weights(dst)
        fp16_weights(dst)


def fp16_weights(path: Path, min_size: int = 16) -> int:
    """Float initializers of min_size or more values (the weights of the layers left FP32) → FP16 initializer +
    Cast to float, which onnxruntime folds at load: the file holds half the bytes for those layers. The teacher's
    weights came from an FP16 TFLite file, so they round-trip exactly; trained ones move by <= 2^-11 relative."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    m = onnx.load(str(path))
    g = m.graph
    casts = []
    for init in list(g.initializer):
        a = numpy_helper.to_array(init)
        if a.dtype != np.float32 or a.size < min_size:
            continue
        name = init.name
        g.initializer.remove(init)
        g.initializer.append(numpy_helper.from_array(a.astype(np.float16), name + "_fp16"))
        casts.append(helper.make_node("Cast", [name + "_fp16"], [name], to=TensorProto.FLOAT, name=name + "_cast"))
    for n in reversed(casts):
        g.node.insert(0, n)
    short = {i.name: f"w{k}" for k, i in enumerate(g.initializer) if len(i.name) > 24}  # names of 100s of bytes
    for i in g.initializer:
        i.name = short.get(i.name, i.name)
    for j, n in enumerate(g.node):
        for k, x in enumerate(n.input):
            if x in short:
                n.input[k] = short[x]
        if len(n.name) > 24:
            n.name = f"{n.op_type}_{j}"
    onnx.save(m, str(path))
    log.info("%s: %d float initializers stored as FP16", path.name, len(casts))
    return len(casts)


def int8_weights(path: Path) -> int:
    """QuantizeLinear(float initializer) → int8 initializer: the same graph, a quarter of the weight bytes."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(path))
    g = m.graph
    inits = {i.name: i for i in g.initializer}
    consts = {n.output[0]: n for n in g.node if n.op_type == "Constant"}
    idents = {n.output[0]: n.input[0] for n in g.node if n.op_type == "Identity"}

    def value(name):
        while name in idents:  # the exporter routes shared constants through Identity nodes
            name = idents[name]
        if name in inits:
            return numpy_helper.to_array(inits[name])
        if name in consts:
            return numpy_helper.to_array(consts[name].attribute[0].t)
        return None

    drop, folded = [], 0
    for n in g.node:
        if n.op_type != "QuantizeLinear":
            continue
        w, s = value(n.input[0]), value(n.input[1])
        zp = value(n.input[2]) if len(n.input) > 2 else np.zeros((), np.uint8)
        if w is None or s is None or zp is None:
            continue
        axis = next((a.i for a in n.attribute if a.name == "axis"), 1)
        if s.ndim == 1 and s.size > 1:
            shape = [1] * w.ndim
            shape[axis] = -1
            s_b, zp_b = s.reshape(shape), zp.reshape(shape)
        else:
            s_b, zp_b = s, zp
        info = np.iinfo(zp.dtype)
        q = np.clip(np.rint(w / s_b) + zp_b.astype(np.int32), info.min, info.max).astype(zp.dtype)
        g.initializer.append(numpy_helper.from_array(q, n.output[0]))
        drop.append(n)
        folded += 1
    for n in drop:
        g.node.remove(n)
    used = {i for n in g.node for i in n.input}
    for i in [i for i in g.initializer if i.name not in used]:
        g.initializer.remove(i)
    while True:  # constants / identities that fed only the folded quantizers
        dead = [n for n in g.node if n.op_type in ("Constant", "Identity") and n.output[0] not in used
                and n.output[0] not in {o.name for o in g.output}]
        if not dead:
            break
        for n in dead:
            g.node.remove(n)
        used = {i for n in g.node for i in n.input}
    for i in [i for i in g.initializer if i.name not in used]:
        g.initializer.remove(i)
    onnx.save(m, str(path))
    log.info("%s: %d weight QuantizeLinear folded into int8 initializers", path.name, folded)
    return folded


def tflite_weights(model, teacher_onnx: Path, consts: Path, dst: Path) -> int:
    """The trained conv weights and biases in TFLite layout, keyed by the prepared .tflite's tensor they replace
    (`t<index>`, as tflite_weights.py dumps them): each teacher parameter is found among the TFLite constants by
    its exact values. Quantized layers give their fake-quantized weights (on the QAT grid, so a per-channel
    max-abs quantizer lands on the same integers), FP32 layers their trained float weights."""
    z = np.load(consts)
    where: dict[bytes, list[str]] = {}
    for k in z.files:
        where.setdefault(np.ascontiguousarray(z[k]).tobytes(), []).append(k)
    teacher = wrap(load_onnx_as_torch(teacher_onnx)).eval()
    mods = dict(model.named_modules())
    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for name, ref in teacher.named_modules():
            if not isinstance(ref, torch.nn.Conv2d):
                continue
            conv = mods[name]
            wq = mods.get(f"__nncf_hooks.pre_hooks.{name.replace('.', '/', 1)}/conv2d/0__1.0")
            w = wq(conv.weight) if wq is not None else conv.weight
            for old, new in ((ref.weight, w), (ref.bias, conv.bias)):
                if old is None:
                    continue
                perms = [(0, 2, 3, 1), (1, 2, 3, 0)] if old.dim() == 4 else [tuple(range(old.dim()))]
                for perm in perms:  # conv OIHW -> OHWI, depthwise (C, 1, H, W) -> (1, H, W, C)
                    hits = where.get(np.ascontiguousarray(old.numpy().transpose(perm)).tobytes(), [])
                    if hits:
                        break
                else:
                    raise SystemExit(f"{name}: no TFLite constant holds the teacher's {tuple(old.shape)} values")
                for k in hits:  # identical constants (e.g. zero biases) all take the one new value
                    if k in out and not np.array_equal(out[k], new.numpy().transpose(perm)):
                        raise SystemExit(f"{name}: TFLite constant {k} is shared by layers trained apart")
                    out[k] = new.numpy().transpose(perm).astype(np.float32)
    np.savez(dst, **out)
    log.info("%s: %d TFLite constants from the trained weights", dst.name, len(out))
    return len(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt", type=Path)
    ap.add_argument("out_stem", type=Path)
    ap.add_argument("--kind", choices=("qat", "student"), required=True)
    ap.add_argument("--teacher", type=Path, required=True)
    ap.add_argument("--info", type=Path)
    ap.add_argument("--tflite-consts", type=Path, help="qat: the prepared .tflite's constants (tflite_weights.py "
                    "dump); writes OUT_STEM.tflite_weights.npz, the trained weights in its layout")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, state = load_trained(a.ckpt, a.kind, a.teacher)
    a.out_stem.parent.mkdir(parents=True, exist_ok=True)
    export_ir(model, a.out_stem.with_suffix(".xml"), fp16=a.kind == "qat")
    export_onnx(model, a.out_stem.with_suffix(".onnx"), a.kind)
    if a.tflite_consts:
        tflite_weights(model, a.teacher, a.tflite_consts, a.out_stem.with_suffix(".tflite_weights.npz"))
    if a.info:
        write_info(a.info, state)
    log.info("exported %s (.xml/.bin/.onnx)", a.out_stem)
    return 0


def write_info(path: Path, state: dict) -> None:
    """The run's recipe, steps, curve and device (from its checkpoint state) as JSON, for PROVENANCE.json."""
    path.write_text(json.dumps({"config": state["config"], "step": state["step"], "curve": state["curve"],
                                "complete": state.get("complete"), "device": state.get("device"),
                                "torch": state.get("torch", torch.__version__)}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
