"""The FP32 landmark model as a torch module (onnx2torch), batched, returning the five outputs in manifest order."""
from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np

OUTPUTS = ("Identity", "Identity_1", "Identity_2", "Identity_3", "Identity_4")


def _stub_torchvision() -> None:
    """onnx2torch imports torchvision for its NMS/RoiAlign converters only; the PyPI torchvision build cannot
    load its ops beside CPU torch (and is not installed in the train venv). This model needs neither."""
    if "torchvision" in sys.modules:
        return
    tv = types.ModuleType("torchvision")
    ops = types.ModuleType("torchvision.ops")
    ops.nms = ops.batched_nms = ops.roi_align = None  # type: ignore[attr-defined]
    tv.ops = ops  # type: ignore[attr-defined]
    sys.modules["torchvision"], sys.modules["torchvision.ops"] = tv, ops


def load_onnx_as_torch(path: Path):
    """onnx2torch GraphModule of an ONNX file with batch-1 Reshape constants made batch-agnostic (-1)."""
    import onnx
    import torch

    _stub_torchvision()
    from onnx2torch import convert

    m = onnx.load(str(path))
    shape_inputs = {n.input[1] for n in m.graph.node if n.op_type == "Reshape"}
    for init in m.graph.initializer:  # shape constants feeding Reshape: leading 1 -> -1 (batch)
        if init.name in shape_inputs:
            arr = onnx.numpy_helper.to_array(init).copy()
            if arr.ndim == 1 and len(arr) >= 2 and arr[0] == 1:
                arr[0] = -1
                init.CopyFrom(onnx.numpy_helper.from_array(arr, init.name))
    for d in (*m.graph.input, *m.graph.output):  # dynamic batch
        dim = d.type.tensor_type.shape.dim
        if dim:
            dim[0].dim_param = "batch"
    gm = convert(m)
    gm.eval()
    torch.set_grad_enabled(True)
    return gm


def wrap(gm):
    """A plain nn.Module around the GraphModule: NNCF then takes its PyTorch backend (supports QAT) instead of
    the PTQ-only TorchFX one. forward(x NHWC float in [0, 1]) -> tuple of the five outputs."""
    import torch

    class Landmark(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            out = self.inner(x)
            return tuple(out) if isinstance(out, (tuple, list)) else (out,)

    return Landmark(gm)


def numpy_outputs(model, x: np.ndarray, device: str = "cpu", batch: int = 32) -> dict[str, np.ndarray]:
    """Run a torch model on NHWC float32 inputs in batches → {output name: array}."""
    import torch

    outs: list[list[np.ndarray]] = [[] for _ in OUTPUTS]
    with torch.no_grad():
        for i in range(0, len(x), batch):
            o = model(torch.from_numpy(x[i:i + batch]).to(device))
            for k, t in enumerate(o):
                outs[k].append(t.float().cpu().numpy())
    return {n: np.concatenate(v) for n, v in zip(OUTPUTS, outs)}


def cosine_lr(base: float, step: int, steps: int, warmup: int = 0) -> float:
    """Cosine decay from `base` over `steps`, after a linear warm-up of `warmup` steps (0: none)."""
    import math

    return base * 0.5 * (1 + math.cos(math.pi * step / steps)) * min(1.0, (step + 1) / max(warmup, 1))


def distill_step(model, teacher, opt, loss_fn, x, lr: float):
    """One distillation step at learning rate lr (times a parameter group's "lr_scale"): the teacher's outputs on
    x are the targets of loss_fn(student outputs, teacher outputs) -> (loss, parts); returns what loss_fn returned."""
    import torch

    for g in opt.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
    with torch.no_grad():
        tgt = teacher(x)
    loss, parts = loss_fn(model(x), tgt)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss, parts
