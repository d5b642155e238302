"""`python detector_loop.py train|export ...`: quantization-aware training of the BlazePose person detector
(`pose_detection`) against its FP32 teacher, and export of the result (build time, `train` venv).

train: the FP32 ONNX as a torch module (teacher.py; DCR DepthToSpace added to onnx2torch here), quantized by NNCF
  with the build chain's settings for this detector (performance preset, OverflowFix.ENABLE, range init on the
  chain's `calib.npz` windows) and an ignored scope of the manifest's selectors (default the built `int8`'s: first 6
  convs + head convs FP32), then fine-tuned to the teacher's outputs on the same augmented window: BCE of the
  student's score logits against the teacher's sigmoid scores over all anchors (anchors near the 0.5 threshold and
  positives weighted up) + L1 of the box/keypoint regressors where the teacher scores > 0.3. Data: --data NPZ
  (uint8 letterboxed windows of the calibration split + person-free frames, made by `edge models train --kind
  detector_qat`), augmented in torch (flip, scale/shift, colour, blur, noise), each batch a function of (seed, step)
  only. Checkpoints every --ckpt-every steps; a rerun with the same recipe resumes. Writes OUT/final.pt, curve.json.
export: final.pt -> OUT_STEM.xml/.bin (OpenVINO IR with FakeQuantize) and OUT_STEM.onnx (QDQ, int8 weights).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "steps"))  # nncf_scope (ignored scopes)
from teacher import cosine_lr, distill_step, load_onnx_as_torch, wrap  # noqa: E402

log = logging.getLogger("train")
OUTPUTS = ("Identity", "Identity_1")  # boxes + keypoints (B, 2254, 12), score logits (B, 2254, 1)
SIZE = 224
THRESHOLD = 0.5  # runtime detection threshold (edge.pose.config)
DEFAULT_SCOPE = {"first_convs": 6, "head_convs": list(OUTPUTS)}  # the built `int8` (manifest keep_first_convs)
LOSS_W = {"score": 1.0, "reg": 10.0}
ANCHOR_W = {"near_threshold": 8.0, "near_width": 0.15, "positive": 4.0, "reg_min_score": 0.3}
AUG = {"flip": 0.5, "scale": [0.85, 1.15], "shift_px": 16, "brightness": 20.0, "contrast": [0.8, 1.2],
       "gain": [0.92, 1.08], "p_blur": 0.2, "p_noise": 0.3, "noise_max": 6.0}


def _dcr_depth_to_space() -> None:
    """onnx2torch converts DepthToSpace in CRD mode only; tf2onnx writes this detector's in DCR (the default)."""
    from onnx2torch.node_converters import registry
    from onnx2torch.utils.common import OperationConverterResult, onnx_mapping_from_node

    class DepthToSpaceDCR(torch.nn.Module):
        def __init__(self, r: int):
            super().__init__()
            self.r = r

        def forward(self, x):
            n, c, h, w = x.shape
            r = self.r
            x = x.reshape(n, r, r, c // (r * r), h, w).permute(0, 3, 4, 1, 5, 2)
            return x.reshape(n, c // (r * r), h * r, w * r)

    def convert(node, graph):
        if node.attributes.get("mode", "DCR") == "CRD":
            return OperationConverterResult(torch_module=torch.nn.PixelShuffle(node.attributes["blocksize"]),
                                            onnx_mapping=onnx_mapping_from_node(node=node))
        return OperationConverterResult(torch_module=DepthToSpaceDCR(node.attributes["blocksize"]),
                                        onnx_mapping=onnx_mapping_from_node(node=node))

    for v in (11, 13):
        registry._CONVERTER_REGISTRY[registry.OperationDescription(
            domain="", operation_type="DepthToSpace", version=v)] = convert


def load_detector(onnx_path: Path):
    """The detector ONNX as a batched torch module: forward(x NHWC in [-1, 1]) -> (boxes, score logits). Its
    head Reshapes are [1, -1, k]: the batch becomes 0 (copy the input's) before teacher.load_onnx_as_torch."""
    import tempfile

    import onnx
    from onnx import numpy_helper

    import teacher

    teacher._stub_torchvision()
    _dcr_depth_to_space()
    m = onnx.load(str(onnx_path))
    shapes = {n.input[1] for n in m.graph.node if n.op_type == "Reshape"}
    for init in m.graph.initializer:
        if init.name in shapes:
            arr = numpy_helper.to_array(init).copy()
            if arr.ndim == 1 and len(arr) >= 2 and arr[0] == 1 and -1 in arr[1:]:
                arr[0] = 0
                init.CopyFrom(numpy_helper.from_array(arr, init.name))
    with tempfile.TemporaryDirectory() as tmp:
        onnx.save(m, f"{tmp}/detector.onnx")
        return wrap(load_onnx_as_torch(Path(f"{tmp}/detector.onnx"))).eval()


def to_input(u8: torch.Tensor) -> torch.Tensor:
    return u8.float() / 127.5 - 1.0


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """uint8 NHWC windows -> augmented float NHWC in [-1, 1] (letterbox border kept black)."""
    b = x.shape[0]
    f = x.permute(0, 3, 1, 2).float()  # NCHW 0..255

    def u(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*(shape or (b,)), generator=g)

    flip = torch.rand(b, generator=g) < AUG["flip"]
    f = torch.where(flip[:, None, None, None], f.flip(-1), f)
    s = u(*AUG["scale"])
    t = (torch.rand(b, 2, generator=g) * 2 - 1) * AUG["shift_px"] / (SIZE / 2)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = 1 / s, 1 / s
    theta[:, :, 2] = t
    grid = F.affine_grid(theta, list(f.shape), align_corners=False)
    f = F.grid_sample(f, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    pad = (f.amax(1, keepdim=True) < 0.5)
    mean = f.mean((1, 2, 3), keepdim=True)
    f = (f - mean) * u(*AUG["contrast"])[:, None, None, None] + mean
    f = f * u(*AUG["gain"], b, 3)[:, :, None, None] + u(-AUG["brightness"], AUG["brightness"])[:, None, None, None]
    blur = torch.rand(b, generator=g) < AUG["p_blur"]
    f = torch.where(blur[:, None, None, None], F.avg_pool2d(f, 3, 1, 1, count_include_pad=False), f)
    noisy = (torch.rand(b, generator=g) < AUG["p_noise"]).float() * u(0, AUG["noise_max"])
    f = f + torch.randn(f.shape, generator=g) * noisy[:, None, None, None]
    f = torch.where(pad, torch.zeros_like(f), f.clamp(0, 255).round())
    return to_input(f.permute(0, 2, 3, 1))


def batch(pool: torch.Tensor, n: int, seed: int, step: int) -> torch.Tensor:
    """The training batch of `step`: a function of (seed, step) only."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    idx = torch.randint(len(pool), (n,), generator=g)
    return augment(pool[idx], g)


def distill_loss(s: tuple, t: tuple) -> tuple[torch.Tensor, dict[str, float]]:
    pt = torch.sigmoid(t[1].clamp(-100, 100)).squeeze(-1)  # (B, A)
    sl = s[1].clamp(-100, 100).squeeze(-1)
    w = (1.0 + ANCHOR_W["near_threshold"] * torch.exp(-((pt - THRESHOLD) / ANCHOR_W["near_width"]) ** 2)
         + ANCHOR_W["positive"] * (pt >= THRESHOLD).float())
    score = (F.binary_cross_entropy_with_logits(sl, pt, reduction="none") * w).sum() / w.sum()
    m = (pt > ANCHOR_W["reg_min_score"]).float()
    reg = ((s[0] - t[0]).abs().mean(-1) / SIZE * m).sum() / m.sum().clamp(min=1.0)
    total = LOSS_W["score"] * score + LOSS_W["reg"] * reg
    return total, {"score": float(score.detach()), "reg": float(reg.detach()), "n_pos": float(m.sum())}


@torch.no_grad()
def flips(model, teacher, x: torch.Tensor) -> dict:
    """Torch-side agreement on validation windows (a training curve; the gates run in OpenVINO): anchors whose
    side of the 0.5 threshold differs from the teacher's, and the mean score error where the teacher scores > 0.3."""
    model.eval()
    ps, pt = [], []
    for i in range(0, len(x), 32):
        ps.append(torch.sigmoid(model(x[i:i + 32])[1]).squeeze(-1))
        pt.append(torch.sigmoid(teacher(x[i:i + 32])[1]).squeeze(-1))
    model.train()
    ps, pt = torch.cat(ps), torch.cat(pt)
    m = pt > ANCHOR_W["reg_min_score"]
    return {"val_flips": int(((ps >= THRESHOLD) != (pt >= THRESHOLD)).sum()),
            "val_lost": int(((ps < THRESHOLD) & (pt >= THRESHOLD)).sum()),
            "val_score_err": float((ps - pt).abs()[m].mean()) if m.any() else 0.0}


def ignored_names(model, scope: dict | None) -> list[str]:
    if not scope:
        return []
    import copy

    import nncf_scope

    probe = copy.deepcopy(model)  # tracing wraps the module in place
    graph, outs = nncf_scope.torch_graph(probe, torch.zeros(1, SIZE, SIZE, 3), list(OUTPUTS))
    return nncf_scope.resolve(graph, outs, scope)


def quantized(teacher_onnx: Path, calib: torch.Tensor | None, scope: dict | None, state: dict | None):
    """NNCF-quantized copy of the teacher (chain settings), or the one saved in `state`."""
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix
    from nncf.torch import get_config, load_from_config

    from loop import use_reference_quantizers

    use_reference_quantizers()
    m = load_detector(teacher_onnx)
    if state:
        q = load_from_config(m, state["nncf_config"])
        q.load_state_dict(state["model"])
        return q, state["nncf_config"]
    ignored = ignored_names(m, scope)
    log.info("ignored scope %s: %d nodes kept FP32", scope, len(ignored))
    q = nncf.quantize(m, nncf.Dataset([calib[i:i + 1] for i in range(len(calib))]), subset_size=len(calib),
                      preset=nncf.QuantizationPreset.PERFORMANCE,
                      ignored_scope=nncf.IgnoredScope(names=ignored) if ignored else None,
                      advanced_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix.ENABLE))
    return q, get_config(q)


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def train(a: argparse.Namespace) -> int:
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    a.out.mkdir(parents=True, exist_ok=True)
    ckpt = a.out / "checkpoint.pt"
    data = np.load(a.data)
    pool = torch.from_numpy(data["x"])
    val = to_input(torch.from_numpy(data["val"][:a.val])) if "val" in data.files and a.val else None
    calib = to_input(torch.from_numpy(np.load(a.calib_npz)["x"][:a.calib]))
    config = {"kind": "detector_qat", "steps": a.steps, "batch": a.batch, "lr": a.lr, "seed": a.seed,
              "calib": len(calib), "scope": a.ignored_scope, "loss_weights": LOSS_W, "anchor_weights": ANCHOR_W,
              "augmentation": AUG, "optimizer": "Adam, cosine decay",
              "quantization": "NNCF 8-bit PERFORMANCE preset (symmetric), OverflowFix.ENABLE (the build chain's)",
              "data_sha256": _sha256(a.data), "calib_sha256": _sha256(a.calib_npz), "n_pool": len(pool)}
    state = None
    if ckpt.exists():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        if state["config"] != config:
            raise SystemExit(f"{ckpt} was made with another recipe; delete it or use another --out\n"
                             f"checkpoint: {state['config']}\nnow: {config}")
        log.info("resuming at step %d of %d", state["step"], a.steps)
    teacher = load_detector(a.teacher)
    for p in teacher.parameters():
        p.requires_grad_(False)
    model, nncf_config = quantized(a.teacher, calib, a.ignored_scope, state)
    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=a.lr)
    step, curve = 0, []
    if state:
        opt.load_state_dict(state["opt"])
        step, curve = state["step"], state["curve"]
    elif val is not None:
        curve.append({"step": 0, **flips(model, teacher, val)})
        log.info("step 0 (PTQ init) %s", curve[-1])

    def save(path: Path, final: bool = False) -> None:
        tmp = path.with_suffix(".tmp")
        body = {"config": config, "step": step, "model": model.state_dict(), "curve": curve,
                "nncf_config": nncf_config, "complete": step >= a.steps, "torch": torch.__version__,
                "device": f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} threads)"}
        if not final:
            body["opt"] = opt.state_dict()
        torch.save(body, tmp)
        os.replace(tmp, path)

    def finish() -> None:
        save(a.out / "final.pt", final=True)
        (a.out / "curve.json").write_text(json.dumps({"config": config, "curve": curve, "steps_done": step},
                                                     indent=1))

    t0, seen0 = time.monotonic(), step
    while step < a.steps:
        x = batch(pool, a.batch, a.seed, step)
        loss, parts = distill_step(model, teacher, opt, distill_loss, x, cosine_lr(a.lr, step, a.steps))
        step += 1
        if step % 10 == 0 or step == a.steps:
            rate = (step - seen0) * a.batch / max(time.monotonic() - t0, 1e-6)
            log.info("step %d/%d loss %.5f score %.5f reg %.5f | %.1f windows/s, eta %.0f s", step, a.steps,
                     float(loss), parts["score"], parts["reg"], rate, (a.steps - step) * a.batch / max(rate, 1e-6))
        if val is not None and (step % a.eval_every == 0 or step == a.steps):
            curve.append({"step": step, "loss": float(loss), **parts, **flips(model, teacher, val)})
            log.info("validation (torch, calibration split): %s", curve[-1])
        if step % a.ckpt_every == 0:
            save(ckpt)
        if a.time_limit and time.monotonic() - t0 > a.time_limit and step < a.steps:
            log.warning("time limit reached at step %d of %d: checkpoint saved (rerun to resume)", step, a.steps)
            save(ckpt)
            finish()
            return 3
    save(ckpt)
    finish()
    log.info("done: %d steps in %.0f s", step, time.monotonic() - t0)
    return 0


def export(a: argparse.Namespace) -> int:
    """final.pt -> IR (FakeQuantize) + QDQ ONNX with int8 weights, input `input_1` (1, 224, 224, 3)."""
    import nncf
    import openvino as ov

    from export import int8_weights, write_info

    state = torch.load(a.ckpt, map_location="cpu", weights_only=False)
    model, _ = quantized(a.teacher, None, None, state)
    model.eval()
    x = torch.zeros(1, SIZE, SIZE, 3)
    a.out_stem.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        ovm = ov.convert_model(model, example_input=x, input=[(1, SIZE, SIZE, 3)])
    ovm.inputs[0].get_tensor().set_names({"input_1"})
    for out, name in zip(ovm.outputs, OUTPUTS):
        out.get_tensor().set_names({name})
    ov.save_model(ovm, str(a.out_stem.with_suffix(".xml")), compress_to_fp16=False)
    stripped = nncf.strip(model, do_copy=True, strip_format=nncf.StripFormat.NATIVE, example_input=x)
    with torch.no_grad():
        torch.onnx.export(stripped, (x,), str(a.out_stem.with_suffix(".onnx")), input_names=["input_1"],
                          output_names=list(OUTPUTS), opset_version=17, dynamo=False)
    int8_weights(a.out_stem.with_suffix(".onnx"))
    if a.info:
        write_info(a.info, state)
    log.info("exported %s (.xml/.bin/.onnx)", a.out_stem)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--teacher", type=Path, required=True, help="FP32 pose_detection ONNX")
    t.add_argument("--data", type=Path, required=True, help="NPZ: x (uint8 windows), val (optional)")
    t.add_argument("--calib-npz", type=Path, required=True, help="calibration/pose_detection/calib.npz")
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--steps", type=int, default=300)
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--lr", type=float, default=1e-5)
    t.add_argument("--seed", type=int, default=20261206)
    t.add_argument("--calib", type=int, default=128, help="windows of calib.npz for NNCF range initialisation")
    t.add_argument("--ignored-scope", type=json.loads, default=DEFAULT_SCOPE, metavar="JSON",
                   help="layers kept FP32 as manifest selectors; '{}' = full INT8")
    t.add_argument("--val", type=int, default=240, help="validation windows of --data for the curve (0: none)")
    t.add_argument("--ckpt-every", type=int, default=50)
    t.add_argument("--eval-every", type=int, default=100)
    t.add_argument("--threads", type=int, default=0)
    t.add_argument("--time-limit", type=float, default=0)
    e = sub.add_parser("export")
    e.add_argument("ckpt", type=Path)
    e.add_argument("out_stem", type=Path)
    e.add_argument("--teacher", type=Path, required=True)
    e.add_argument("--info", type=Path)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("nncf").setLevel(logging.WARNING)
    if a.cmd == "train":
        import nncf_scope

        try:
            nncf_scope.validate(a.ignored_scope, list(OUTPUTS))
        except ValueError as err:
            ap.error(str(err))
        return train(a)
    return export(a)


if __name__ == "__main__":
    sys.exit(main())
