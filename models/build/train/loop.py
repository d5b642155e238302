"""`python loop.py --kind qat|student ...`: distil the FP32 landmark model into a QAT INT8 copy or a small student.

Runs in the `train` build venv on CPU or CUDA. Targets are the FP32 teacher's outputs on the same augmented crop
(augment.py). QAT: NNCF inserts FakeQuantize (8-bit, per-channel symmetric weights, activations as OpenVINO runs
them, no overflow fix: VNNI/AMX/ARM-dot targets) into the teacher's own weights, which are then fine-tuned.
Student: student.py from scratch. Progress is logged; a checkpoint every --ckpt-every steps makes a rerun resume
where it stopped; a run is deterministic for a seed on a given device. Writes OUT/final.pt, OUT/curve.json.

--ignored-scope JSON (QAT): the layers left FP32, as the manifest's `[quantization.ignored_scope]` selectors
(steps/nncf_scope.py), so QAT quantizes the layers the deployed mixed-precision model quantizes; the FP32 stem
(`first_convs`) keeps the teacher's weights (frozen: backward ends in front of it, ~30 % less time per step).
--workers N: batches are made on the CPU by N DataLoader worker processes (each batch from (seed, step) only,
whichever worker makes it) while the device trains; 0 (default) makes them in the main process on the device.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "steps"))  # nncf_scope (ignored scopes)
from augment import CropMaker, Person, Recipe  # noqa: E402
from prune import PRUNED_KEEP  # noqa: E402
from teacher import OUTPUTS, cosine_lr, distill_step, load_onnx_as_torch, wrap  # noqa: E402

log = logging.getLogger("train")
LOSS_W = {"xy": 1.0, "z": 0.2, "logits": 0.02, "flag": 1.0, "seg": 0.05, "heat": 0.1, "world": 0.5}


def use_reference_quantizers() -> None:
    """NNCF compiles C++/CUDA extensions for FakeQuantize on first use (~45 s, g++/nvcc); its own pure-torch
    reference functions do the same maths on any device. Use them: no compiler needed, same results."""
    from nncf.torch.quantization import quantize_functions as qf
    from nncf.torch.quantization.reference import ReferenceBackendType, ReferenceQuantize

    ref = ReferenceQuantize(backend_type=ReferenceBackendType.TORCH)

    class _Ns:
        @staticmethod
        def get(name):
            return {"Quantize_forward": ref.forward, "Quantize_backward": ref.backward}[name]

    qf.QuantizedFunctionsCPU = _Ns()
    qf.QuantizedFunctionsCUDA = _Ns()


def load_people(path: Path, split: str = "calib") -> tuple[list[Person], dict[str, str]]:
    prov = json.loads(path.read_text())
    people = [Person(p["photo"], **p["roi"]) for p in prov["people"] if p["split"] == split]
    files = {k: v.get("file") or Path(v["member"]).name for k, v in prov["sources"].items()}  # under <cache>/photos
    splits = {k: v["split"] for k, v in prov["sources"].items()}
    return people, {"files": files, "splits": splits}


def cpu_seg(teacher_onnx: Path):
    """The teacher's segmentation logits on the CPU for background swaps in DataLoader workers: onnxruntime, one
    thread, one crop at a time (~10x faster than the torch copy on a CPU core, and deterministic)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = 1, 1
    sess = ort.InferenceSession(str(teacher_onnx), so, providers=["CPUExecutionProvider"])

    def seg(x: torch.Tensor) -> torch.Tensor:
        xs = x.detach().cpu().numpy().astype(np.float32)
        return torch.from_numpy(np.concatenate([sess.run(["Identity_2"], {"input_1": xs[i:i + 1]})[0]
                                                for i in range(len(xs))]))
    return seg


class CropBatches(torch.utils.data.Dataset):
    """Item i = the training batch of step `first + i` (CropMaker.batch(batch, seed, step)), made on the CPU in a
    DataLoader worker, background swaps by the teacher's mask from onnxruntime (cpu_seg). A batch depends only on
    (seed, step): the same whichever worker makes it and however many there are."""

    def __init__(self, photos: Path, provenance: Path, teacher_onnx: Path, recipe: Recipe, batch: int, seed: int,
                 first: int, last: int, extra: Path | None = None):
        self.args = (photos, provenance, teacher_onnx, recipe, extra)
        self.batch, self.seed, self.first, self.last = batch, seed, first, last
        self.maker = self.seg = None

    def __len__(self) -> int:
        return self.last - self.first

    def __getitem__(self, i: int) -> torch.Tensor:
        if self.maker is None:  # once per worker process
            photos, provenance, teacher_onnx, recipe, extra = self.args
            torch.set_num_threads(1)
            self.maker = make_data(photos, provenance, "cpu", recipe, extra)
            self.seg = cpu_seg(teacher_onnx)
        with torch.no_grad():
            return self.maker.batch(self.batch, self.seed, self.first + i, teacher_seg=self.seg)


def batch_loader(a, recipe: Recipe, first: int, dev: str):
    """Iterator over the batches of steps first..a.steps made by a.workers DataLoader workers."""
    ds = CropBatches(a.photos, a.provenance, a.teacher, recipe, a.batch, a.seed, first, a.steps, a.extra_people)
    return iter(torch.utils.data.DataLoader(ds, batch_size=None, shuffle=False, num_workers=a.workers,
                                            prefetch_factor=a.prefetch, pin_memory=dev == "cuda"))


def make_data(photos_dir: Path, provenance: Path, device: str, recipe: Recipe, extra: Path | None = None) -> CropMaker:
    """CropMaker over the calibration split's people, plus the train-only photos' people of `extra` (the JSON
    `edge models train --extra-photos` writes) when given."""
    import cv2

    people, meta = load_people(provenance)
    scenes = sorted(k for k, s in meta["splits"].items() if s == "calib" and k not in {p.photo for p in people})
    if extra is not None:
        more, more_meta = load_people(extra, "train")
        people += more
        meta["files"].update(more_meta["files"])
    train_photos = sorted({p.photo for p in people})
    imgs = {}
    for k in train_photos + scenes:  # held-out photos are never loaded here
        bgr = cv2.imread(str(photos_dir / meta["files"][k]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise SystemExit(f"cannot read training photo {photos_dir / meta['files'][k]}")
        imgs[k] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    return CropMaker(imgs, people, scenes + train_photos, device, recipe)


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def distill_loss(s: tuple, t: tuple, weights: dict[str, float] = LOSS_W
                 ) -> tuple[torch.Tensor, dict[str, float]]:
    sl, tl = s[0].view(-1, 39, 5), t[0].view(-1, 39, 5)
    w = torch.sigmoid(tl[:, :, 3]).clamp(0.2, 1.0) * (t[1].view(-1, 1) > 0.5).float()
    xy = ((sl[:, :, :2] - tl[:, :, :2]).abs().sum(-1) / 256.0 * w).sum() / w.sum().clamp(min=1.0)
    z = ((sl[:, :, 2] - tl[:, :, 2]).abs() / 256.0 * w).sum() / w.sum().clamp(min=1.0)
    logits = F.smooth_l1_loss(sl[:, :, 3:].clamp(-12, 12), tl[:, :, 3:].clamp(-12, 12))
    flag = (s[1] - t[1]).abs().mean()
    seg = F.binary_cross_entropy_with_logits(s[2].clamp(-30, 30), torch.sigmoid(t[2].float()))
    heat = (s[3].clamp(-8, 8) - t[3].clamp(-8, 8)).abs().mean()  # logits: only the peaks matter (refinement)
    world = (s[4] - t[4]).abs().mean()
    parts = {"xy": xy, "z": z, "logits": logits, "flag": flag, "seg": seg, "heat": heat, "world": world}
    total = sum(weights[k] * v for k, v in parts.items())
    return total, {k: float(v.detach()) for k, v in parts.items()}


def heldout_drift(model, teacher, x: np.ndarray, device: str) -> dict:
    """Torch-side drift vs the teacher on held-out crops (a training curve, not a gate: gates run per runtime)."""
    model.eval()
    with torch.no_grad():
        xs = torch.from_numpy(x.astype(np.float32) / 255.0).to(device)
        s, t = model(xs), teacher(xs)
    model.train()
    a, b = t[0].view(-1, 39, 5)[:, :33].cpu().numpy(), s[0].view(-1, 39, 5)[:, :33].cpu().numpy()
    d = np.linalg.norm(a[..., :2] - b[..., :2], axis=-1) / 256.0
    sel = (1 / (1 + np.exp(-a[..., 3])) > 0.5) & (t[1].view(-1, 1).cpu().numpy() > 0.5)
    seg_a, seg_b = t[2].cpu().numpy() > 0, s[2].cpu().numpy() > 0
    iou = ((seg_a & seg_b).sum((1, 2, 3)) / np.maximum((seg_a | seg_b).sum((1, 2, 3)), 1)).mean()
    return {"drift_mean": float(d[sel].mean()) if sel.any() else None,
            "drift_p95": float(np.percentile(d[sel], 95)) if sel.any() else None, "seg_iou": float(iou)}


def ignored_names(model, scope: dict | None) -> tuple[list[str], list[str]]:
    """(node names of the torch model's NNCF graph that the ignored scope keeps FP32, parameter names of its
    `first_convs`: the FP32 stem in front of every quantized layer); both empty without a scope."""
    if not scope:
        return [], []
    import copy

    import nncf_scope

    probe = copy.deepcopy(model)  # tracing wraps the module in place: keep the model NNCF quantizes untouched
    graph, outs = nncf_scope.torch_graph(probe, torch.zeros(1, 256, 256, 3, device=next(model.parameters()).device),
                                         list(OUTPUTS))
    stem = nncf_scope.backbone_convs(graph, outs)[:scope.get("first_convs", 0)]
    return nncf_scope.resolve(graph, outs, scope), conv_params(model, stem)


def conv_params(model, nodes: list[str]) -> list[str]:
    """Parameter names of the convolutions among torch-graph `nodes` ("inner/<module target>/conv2d/0"); other
    ops (clips, adds, resizes) have none. ValueError when a convolution names no module of `model`."""
    # node names join the module path with "/", and onnx2torch's module names hold the TF names' "/" too
    modules = {name.replace(".", "/"): (name, mod) for name, mod in model.named_modules()}
    params = []
    for node in nodes:
        if "/conv2d/" not in node:
            continue
        path = node[:node.rindex("/conv2d/")]
        if path not in modules:
            raise ValueError(f"ignored scope: no module {path!r} for the convolution {node!r}")
        target, mod = modules[path]
        params += [f"{target}.{n}" for n, _ in mod.named_parameters()]
    return params


def param_groups(model, fp32: list[str], scale: float) -> list[dict]:
    """Adam parameter groups: the trainable FP32 (ignored-scope) convolutions at `scale` x the learning rate
    (they have no quantizer to keep near its range, so they can move faster), everything else at 1x."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    fast = set(fp32)
    missing = fast - {n for n, _ in model.named_parameters()}
    if missing:
        raise ValueError(f"no parameter {sorted(missing)[0]!r} in the quantized model")
    groups = [{"params": [p for n, p in named if n not in fast], "lr_scale": 1.0}]
    if fast:
        groups.append({"params": [p for n, p in named if n in fast], "lr_scale": scale})
    return groups


def build_student_or_qat(kind: str, teacher_onnx: Path, maker: CropMaker, seed: int, device: str,
                         calib_n: int, state: dict | None, scope: dict | None = None, preset: str = "mixed",
                         start: Path | None = None):
    """The trainable model: NNCF-quantized copy of the teacher (qat; `scope`: layers kept FP32; `preset`: NNCF's
    "mixed" (asymmetric activations) or "performance" (symmetric: faster on OpenVINO)), a student started from
    the ONNX file `start` (e.g. the pruned teacher) or a fresh small student."""
    if kind == "student" and start is not None:
        m = wrap(load_onnx_as_torch(start)).to(device)
        if state:
            m.load_state_dict(state["model"])
        return m, None
    if kind == "student":
        from student import StudentLandmark

        torch.manual_seed(seed)
        m = StudentLandmark().to(device)
        if state:
            m.load_state_dict(state["model"])
        return m, None
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    use_reference_quantizers()
    m = wrap(load_onnx_as_torch(teacher_onnx)).to(device).eval()
    ignored, stem = ignored_names(m, scope)
    if state:
        from nncf.torch import load_from_config

        q = load_from_config(m, state["nncf_config"])
        q.load_state_dict(state["model"])
        return freeze(q, stem), state["nncf_config"]
    calib = maker.batch(calib_n, seed + 1, 0)  # the same calibration crops for a seed, not a training batch
    data = nncf.Dataset([calib[i:i + 1] for i in range(len(calib))])
    if scope:
        log.info("ignored scope %s: %d nodes kept FP32, %d stem parameters frozen", scope, len(ignored), len(stem))
    q = nncf.quantize(m, data, subset_size=calib_n, preset=nncf.QuantizationPreset[preset.upper()],
                      ignored_scope=nncf.IgnoredScope(names=ignored) if ignored else None,
                      advanced_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix.DISABLE))
    from nncf.torch import get_config

    return freeze(q, stem), get_config(q)


def freeze(model, names: list[str]):
    """Stop training these parameters (the FP32 stem: it stays the teacher's, and backward ends before it)."""
    params = dict(model.named_parameters())
    missing = [n for n in names if n not in params]
    if missing:
        raise ValueError(f"no parameter {missing[0]!r} in the quantized model")
    for n in names:
        params[n].requires_grad_(False)
    return model


def _key_values(items: list[str], option: str, known, out_of_range) -> dict[str, float]:
    """KEY=VALUE strings -> {key: float} for keys in `known`; out_of_range(key, value) says why a value is refused
    (or None). ValueError names the option, the bad item and the known keys."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or key not in known:
            raise ValueError(f"{option} {item!r}: expected KEY=VALUE with KEY one of {', '.join(known)}")
        try:
            out[key] = float(value)
        except ValueError:
            raise ValueError(f"{option} {item!r}: {value!r} is not a number") from None
        why = out_of_range(key, out[key])
        if why:
            raise ValueError(f"{option} {item!r}: {why}")
    return out


def recipe_overrides(items: list[str]) -> dict[str, float]:
    """--recipe KEY=VALUE strings -> {Recipe field: value} (probabilities p_* in 0..1, the rest >= 0)."""
    return _key_values(items, "--recipe", Recipe.keys(), lambda k, v: (
        f"out of range ({'0..1' if k.startswith('p_') else '>= 0'})" if v < 0 or (k.startswith("p_") and v > 1)
        else None))


def loss_weight_overrides(items: list[str]) -> dict[str, float]:
    """--loss-weight KEY=VALUE strings -> {output: weight} replacing LOSS_W entries (weights >= 0)."""
    return _key_values(items, "--loss-weight", LOSS_W, lambda k, v: None if v >= 0 else "a weight is >= 0")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kind", choices=("qat", "student"), required=True)
    ap.add_argument("--teacher", type=Path, required=True, help="FP32 landmark ONNX")
    ap.add_argument("--photos", type=Path, required=True, help="staged photos (<cache>/photos)")
    ap.add_argument("--provenance", type=Path, required=True, help="calibration/pose_landmark_full/provenance.json")
    ap.add_argument("--heldout", type=Path, help="heldout.npz (uint8 crops) for the training curve")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=None, help="default 1e-6 (qat: Adam at 1e-5 takes the PTQ init "
                    "from 0.0065 to 0.03 drift in 10 steps) / 2e-3 (student)")
    ap.add_argument("--seed", type=int, default=20261129)
    ap.add_argument("--warmup", type=int, default=0, help="steps of linear LR warm-up before the cosine decay")
    ap.add_argument("--calib", type=int, default=256, help="QAT: crops for NNCF range initialisation")
    ap.add_argument("--preset", choices=("mixed", "performance"), default="mixed",
                    help="QAT: NNCF preset; performance = symmetric activations (faster on OpenVINO)")
    ap.add_argument("--ckpt-every", type=int, default=200)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--init", type=Path, help="warm start from a final.pt of an earlier run (same kind), or "
                    "(student) from an exported student ONNX file")
    ap.add_argument("--time-limit", type=float, default=0, help="stop (with a checkpoint) after this many seconds")
    ap.add_argument("--ignored-scope", type=json.loads, default=None, metavar="JSON",
                    help="qat: layers kept FP32, as [quantization.ignored_scope] selectors, "
                    "e.g. '{\"first_convs\": 3}'")
    ap.add_argument("--fp32-lr-scale", type=float, default=1.0, help="qat: learning rate of the ignored scope's "
                    "FP32 convolutions (not the frozen stem) as a multiple of --lr, e.g. 30")
    ap.add_argument("--extra-people", type=Path, metavar="JSON", help="people of the train-only photos "
                    "(`edge models train --extra-photos` writes it), trained on beside the calibration split's")
    ap.add_argument("--workers", type=int, default=0, help="DataLoader worker processes making the batches on the "
                    "CPU (0: in the main process, on the device)")
    ap.add_argument("--prefetch", type=int, default=4, help="batches each worker makes ahead")
    ap.add_argument("--recipe", nargs="+", default=[], metavar="KEY=VALUE",
                    help=f"augmentation overrides, e.g. shift=0.12 scale_std=0.25 (keys: {', '.join(Recipe.keys())})")
    ap.add_argument("--loss-weight", nargs="+", default=[], metavar="KEY=VALUE",
                    help=f"distillation loss weights, e.g. seg=0.5 (defaults: {LOSS_W})")
    ap.add_argument("--arch", choices=("small", "pruned"), default="small", help="student: small = student.py from "
                    "scratch; pruned = the teacher with fewer channels and its segmentation refined at 128x128 "
                    "(prune.py), trained from there")
    ap.add_argument("--keep", nargs="+", default=[], metavar="SIDExCH=FRACTION",
                    help=f"--arch pruned: channel groups' fractions kept, over {PRUNED_KEEP}")
    a = ap.parse_args(argv)
    try:
        overrides = recipe_overrides(a.recipe)
        weight_overrides = loss_weight_overrides(a.loss_weight)
    except ValueError as e:
        ap.error(str(e))
    if a.arch != "small" and a.kind != "student":
        ap.error("--arch is for --kind student")
    if a.keep and a.arch != "pruned":
        ap.error("--keep is for --arch pruned")
    try:
        keep = {k: float(v) for k, v in (item.split("=", 1) for item in a.keep)}
    except ValueError:
        ap.error(f"--keep {a.keep}: give SIDExCHANNELS=FRACTION, e.g. 8x864=0.33")
    if any(not 0 < v <= 1 for v in keep.values()):
        ap.error("--keep fractions must be in (0, 1]")
    if a.ignored_scope is not None and a.kind != "qat":
        ap.error("--ignored-scope is for --kind qat")
    if a.fp32_lr_scale != 1 and (a.kind != "qat" or not a.ignored_scope):
        ap.error("--fp32-lr-scale is for --kind qat with an --ignored-scope (the layers kept FP32)")
    if a.fp32_lr_scale <= 0:
        ap.error("--fp32-lr-scale must be > 0")
    if a.ignored_scope is not None:
        import nncf_scope

        try:
            nncf_scope.validate(a.ignored_scope, list(OUTPUTS))
        except ValueError as e:
            ap.error(str(e))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    dev = ("cuda" if torch.cuda.is_available() else "cpu") if a.device == "auto" else a.device
    if a.threads:
        torch.set_num_threads(a.threads)
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    a.out.mkdir(parents=True, exist_ok=True)
    ckpt = a.out / "checkpoint.pt"
    recipe = Recipe(**overrides)
    weights = {**LOSS_W, **weight_overrides}
    lr = a.lr if a.lr is not None else (1e-6 if a.kind == "qat" else 2e-3)  # qat: 1e-5 ruins the PTQ init
    config = {"kind": a.kind, "steps": a.steps, "batch": a.batch, "lr": lr, "seed": a.seed, "calib": a.calib,
              "recipe": recipe.as_dict(), "loss_weights": weights, "optimizer": "Adam, cosine decay",
              "init": _sha256(a.init) if a.init else None,
              "quantization": None if a.kind != "qat" else
              "NNCF 8-bit MIXED preset (symmetric per-channel weights, asymmetric activations), overflow fix off"
              if a.preset == "mixed" else
              "NNCF 8-bit PERFORMANCE preset (symmetric per-channel weights, symmetric activations), overflow fix off"}
    if a.ignored_scope:  # only when set: runs without one keep their recipe (and their checkpoints resume)
        config["ignored_scope"] = a.ignored_scope
        if a.ignored_scope.get("first_convs"):
            config["frozen"] = "the FP32 stem (first_convs): teacher weights, not trained"
    if a.warmup:  # only when set, as the scope
        config["warmup"] = a.warmup
    if a.fp32_lr_scale != 1:
        config["fp32_lr_scale"] = a.fp32_lr_scale
    if overrides:  # the changed keys, also inside config["recipe"]: `edge models train` rebuilds the command from it
        config["recipe_overrides"] = overrides
    if weight_overrides:  # the changed weights, also inside config["loss_weights"], for the reproduce command
        config["loss_weight_overrides"] = weight_overrides
    if a.preset != "mixed":
        config["preset"] = a.preset
    if a.extra_people:  # another data stream: part of the recipe
        config["extra_people"] = _sha256(a.extra_people)
    if a.workers:  # CPU crops with onnxruntime masks differ slightly from device-made ones: another data stream
        config["crops"] = "cpu workers"
    if a.arch == "pruned":  # only when set: small-student runs keep their recipe
        config["arch"] = {"name": "pruned", "keep": {**PRUNED_KEEP, **keep}, "low_seg": True,
                          "importance": "64 calibration crops (seed + 2)"}
        if keep:
            config["keep_overrides"] = keep
    start = a.out / "start.onnx" if a.arch == "pruned" else None
    state = None
    if ckpt.exists():
        state = torch.load(ckpt, map_location=dev, weights_only=False)
        if state["config"] != config:
            raise SystemExit(f"{ckpt} was made with another recipe; delete it or use another --out\n"
                             f"checkpoint: {state['config']}\nnow: {config}")
        log.info("resuming at step %d of %d", state["step"], a.steps)
    if start is not None and state is not None:
        start.write_bytes(state["start_onnx"])  # the graph the checkpoint's weights belong to
    if state is None and start is not None and a.init and a.init.suffix == ".onnx":  # an exported pruned student
        shutil.copyfile(a.init, start)
        log.info("warm start from the pruned student %s", a.init)
    elif state is None and a.init and a.init.suffix == ".onnx":  # a student's exported weights (e.g. the committed one)
        if a.kind != "student":
            raise SystemExit(f"--init {a.init}: an ONNX file warm-starts only --kind student (qat: give a final.pt)")
        from student import weights_from_onnx

        try:
            state = {"model": weights_from_onnx(a.init), "nncf_config": None}
        except ValueError as e:
            raise SystemExit(f"--init {e}") from None
        log.info("warm start from the student weights in %s", a.init)
    elif state is None and a.init:
        init = torch.load(a.init, map_location=dev, weights_only=False)
        if init["config"]["kind"] != a.kind:
            raise SystemExit(f"--init {a.init} is a {init['config']['kind']} run, not {a.kind}")
        if (start is not None) != ("start_onnx" in init):
            raise SystemExit(f"--init {a.init}: a {'pruned' if 'start_onnx' in init else 'small'} student's run; "
                             f"give --arch {'pruned' if 'start_onnx' in init else 'small'}")
        state = {"model": init["model"], "nncf_config": init["nncf_config"]}
        if start is not None:
            start.write_bytes(init["start_onnx"])
        log.info("warm start from %s (step %d of its run)", a.init, init["step"])
    maker = make_data(a.photos, a.provenance, dev, recipe, a.extra_people)
    if start is not None and not (state or (a.init and a.init.suffix == ".onnx")):
        from prune import prune  # noqa: PLC0415

        x = maker.batch(64, a.seed + 2, 0).float().cpu().numpy()
        report = prune(a.teacher, start, config["arch"]["keep"], x, low_seg=True)
        log.info("pruned the teacher to %d parameters: %s", report["params"],
                 ", ".join(f"{g['key']} {g['channels']}->{g['kept']}" for g in report["groups"]))
    teacher = wrap(load_onnx_as_torch(a.teacher)).to(dev).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    model, nncf_config = build_student_or_qat(a.kind, a.teacher, maker, a.seed, dev, a.calib, state,
                                              a.ignored_scope, a.preset, start)
    model.train()
    fp32 = []
    if a.fp32_lr_scale != 1:
        nodes, stem = ignored_names(teacher, a.ignored_scope)  # the teacher is the graph NNCF quantized (traced as a copy)
        fp32 = [n for n in conv_params(model, nodes) if n not in set(stem)]
        log.info("%d FP32 parameters train at %g x the learning rate", len(fp32), a.fp32_lr_scale)
    opt = torch.optim.Adam(param_groups(model, fp32, a.fp32_lr_scale), lr=lr)
    step, curve = 0, []
    if state and "opt" in state:
        opt.load_state_dict(state["opt"])
        step, curve = state["step"], state["curve"]
    held = np.load(a.heldout)["x"][:64] if a.heldout else None

    def seg_fn(x):
        return teacher(x)[2]

    def save(path: Path, final: bool = False) -> None:
        """checkpoint.pt holds the optimizer for resuming; final.pt only what export needs."""
        tmp = path.with_suffix(".tmp")
        body = {"config": config, "step": step, "model": model.state_dict(), "curve": curve,
                "nncf_config": nncf_config, "complete": step >= a.steps, "torch": torch.__version__,
                "device": torch.cuda.get_device_name() if dev == "cuda" else f"cpu ({os.cpu_count()} cores)"}
        if start is not None:  # the graph the weights belong to (export rebuilds the model from it)
            body["start_onnx"] = start.read_bytes()
        if not final:
            body["opt"] = opt.state_dict()
        torch.save(body, tmp)
        os.replace(tmp, path)

    def finish() -> None:
        save(a.out / "final.pt", final=True)
        (a.out / "curve.json").write_text(json.dumps({"config": config, "curve": curve, "device": dev,
                                                      "steps_done": step, "torch": torch.__version__}, indent=1))

    def loss_fn(s, t):
        return distill_loss(s, t, weights)

    t0, seen0, t_start = time.monotonic(), step, time.monotonic()
    batches = batch_loader(a, recipe, step, dev) if a.workers and step < a.steps else None
    while step < a.steps:
        if batches is not None:
            x = next(batches).to(dev, non_blocking=True)
        else:
            x = maker.batch(a.batch, a.seed, step, teacher_seg=seg_fn)
        loss, parts = distill_step(model, teacher, opt, loss_fn, x,
                                   cosine_lr(lr, step, a.steps, a.warmup))
        step += 1
        if step % 20 == 0 or step == a.steps:
            rate = (step - seen0) * a.batch / max(time.monotonic() - t0, 1e-6)
            eta = (a.steps - step) * a.batch / max(rate, 1e-6)
            log.info("step %d/%d loss %.5f xy %.5f seg %.4f | %.0f crops/s, eta %.0f s", step, a.steps,
                     float(loss), parts["xy"], parts["seg"], rate, eta)
        if held is not None and (step % a.eval_every == 0 or step == a.steps):
            curve.append({"step": step, "loss": float(loss), **parts, **heldout_drift(model, teacher, held, dev)})
            log.info("held-out (torch): %s", {k: round(v, 5) for k, v in curve[-1].items() if isinstance(v, float)})
        if step % a.ckpt_every == 0:
            save(ckpt)
        if a.time_limit and time.monotonic() - t_start > a.time_limit:
            log.warning("time limit reached at step %d of %d: checkpoint saved (rerun to resume); final.pt "
                        "marked incomplete", step, a.steps)
            save(ckpt)
            finish()
            return 3
    save(ckpt)
    finish()
    log.info("done: %d steps in %.0f s", step, time.monotonic() - t_start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
