"""`edge models train --kind detector_qat`: quantization-aware training of the person detector `pose_detection`
(issue 11 item 4), export, evaluation against the FP32 IR and the build's held-out gate, packaging.

Data (made here, runtime venv): `calibration.datasets.detector_sets(seed=--seed)` windows of the calibration split
(photos + calibration negatives) and procedural person-free shop aisles of the same seed; the held-out split is
loaded only for the final gate. Training and export run train/detector_loop.py in the `train` venv. Evaluation:
the calibration-split validation windows and empty scenes of models.build.detector_sensitivity (recall / misses /
keypoint drift / new false positives vs the FP32 IR, the built PTQ `int8` beside it, speed interleaved in one
process), then the held-out gate as the build's eval_int8 (verify.int8_accuracy vs the TFLite FP32 source,
calibration.accuracy.passes_gate). --install copies the files into models/trained/pose_detection/ only if the gate
holds and the model is faster than FP32 on OpenVINO.
"""
from __future__ import annotations

import json
import logging
import os
import shlex
import time
from pathlib import Path

import numpy as np

from edge.core.files import sha256_file
from models.manifest import source_file_name

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
LOOP = Path(__file__).resolve().parent / "train" / "detector_loop.py"
MODEL, STEM = "pose_detection", "pose_detection_int8_qat"
NOTICE = """Trained by storefront-edge (`edge models train --kind detector_qat`) from MediaPipe BlazePose person
detector (pose_detection.tflite, mediapipe==0.10.21 wheel): quantization-aware trained INT8 copy.
Upstream model: Copyright Google LLC, Apache License 2.0 (https://www.apache.org/licenses/LICENSE-2.0);
model card: https://storage.googleapis.com/mediapipe-assets/Model%20Card%20BlazePose%20GHUM%203D.pdf
These files are a derivative work distributed under the same Apache License 2.0. Provenance: PROVENANCE.json.
"""


def make_data(cache: Path, m: dict, n: int, seed: int, path: Path) -> dict:
    """Training pool (calibration split only) + the calibration-split validation windows for the training curve."""
    import cv2

    from calibration.datasets import detector_sets, letterbox_u8
    from calibration.people import shelf_background
    from models.build.detector_sensitivity import TARGETS, VAL_SEED

    if seed == VAL_SEED:
        raise SystemExit(f"--seed {seed} is the validation seed of detector_sensitivity; pick another")
    cal = m["calibration"]
    x = detector_sets(cache, {**cal, "calib_samples": n}, seed=seed)["calib"][0]
    rng = np.random.default_rng(seed)
    t = TARGETS[MODEL]
    shelves = np.stack([letterbox_u8(cv2.cvtColor(shelf_background(rng), cv2.COLOR_BGR2RGB), t.size)
                        for _ in range(max(1, n // 8))])
    val = t.val_set(cache, m, 240)
    np.savez_compressed(path, x=np.concatenate([x, shelves]), val=val)
    return {"windows": len(x), "shelves": len(shelves), "seed": seed, "val": {"n": len(val), "seed": VAL_SEED},
            "what": "calibration.datasets.detector_sets(seed)['calib'] (calibration photos + calibration "
                    "negatives) + calibration.people.shelf_background(default_rng(seed)); val: detector_sensitivity's"}


def evaluate(cache: Path, fp32: Path, variants: dict[str, Path], threads: int, rounds: int) -> dict:
    """Calibration-split numbers (detector_sensitivity.evaluate) and interleaved speed vs the FP32 IR."""
    from calibration.accuracy import empty_scenes
    from models.build.detector_sensitivity import TARGETS, VAL_SEED, evaluate as agreement
    from models.build.sensitivity import timing
    from models.build.verify import normalize
    from models.manifest import MANIFEST_DIR, load

    m = load(MANIFEST_DIR / f"{MODEL}.toml")
    t = TARGETS[MODEL]
    val = t.val_set(cache, m, 240)
    empty = empty_scenes(cache, "calib", t.metric, t.size)
    norm, norm_e = normalize(val, t.norm), normalize(empty, t.norm)
    acc, _ = agreement(t, fp32, variants, norm, norm_e, threads)
    for r in acc.values():
        r["misses"] = round((1 - r["recall"]) * r["n_ref_detections"]) if r["recall"] is not None else None
    out = {"val": {"n": len(val), "seed": VAL_SEED, "split": "calib"}, "empty": {"n": len(empty), "split": "calib"},
           "accuracy": acc}
    if rounds:
        out["timing"] = timing({"fp32": fp32, **variants}, norm["input_1"][:1], (1, 2), rounds, 5, noseg=False)
        out["timing_setup"] = {"rounds": rounds, "per_round": 5, "interleaved": True, "loadavg": os.getloadavg()}
    return out


def heldout_gate(m: dict, mdir: Path, heldout: Path, variants: dict[str, Path]) -> dict:
    """The build's eval_int8 on the held-out set (TFLite FP32 source as reference) and its gate per variant."""
    from calibration.accuracy import passes_gate
    from models.build import verify

    cal = m["calibration"]
    src = mdir / source_file_name(m)
    acc = verify.int8_accuracy(cal["metric"], cal["input_size"], heldout, cal["norm"], src, variants)
    for r in acc.values():
        r["passes_gate"], r["gate"] = passes_gate(cal["metric"], r, m["quantization"]["int8_gate"])
    return acc


def run_detector(args, cache: Path, zoo) -> int:
    from models.build import venvs
    from models.build.train_steps import install, train_then_export

    m = zoo.manifest(MODEL)
    if args.ignored_scope == "manifest":
        print("edge models train: --kind detector_qat takes --ignored-scope as JSON selectors (default the built "
              "int8's: '{\"first_convs\": 6, \"head_convs\": [\"Identity\", \"Identity_1\"]}'; '{}' = full INT8)")
        return 1
    try:
        teacher = zoo.artifact(MODEL, "onnxruntime", "fp32").path
        fp32 = zoo.artifact(MODEL, "openvino", "fp32").path
        ptq = zoo.artifact(MODEL, "openvino", "int8").path
    except Exception as e:  # noqa: BLE001 - any reason the built models are not there
        print(f"edge models train: {MODEL} is not built ({e}); run `edge models build --only {MODEL}`")
        return 1
    mdir = teacher.parent
    cal = cache / "calibration" / MODEL
    calib_npz, heldout = cal / "calib.npz", cal / "heldout.npz"
    for p in (calib_npz, heldout):
        if not p.is_file():
            print(f"edge models train: {p} is missing; run `edge models build --only {MODEL}`")
            return 1
    work = Path(args.work) if args.work else cache / "train" / args.kind
    work.mkdir(parents=True, exist_ok=True)
    py = str(venvs.ensure(cache, "train"))
    t0 = time.monotonic()
    data = work / f"data-{args.windows}-{args.seed}.npz"
    if not data.is_file() and not args.from_run:
        data_info = make_data(cache, m, args.windows, args.seed, data)
        (work / "data.json").write_text(json.dumps(data_info, indent=1))
    data_info = json.loads((work / "data.json").read_text()) if (work / "data.json").is_file() else None
    cmd = [py, str(LOOP), "train", "--teacher", str(teacher), "--data", str(data), "--calib-npz",
           str(calib_npz), "--out", str(work), "--steps", str(args.steps), "--batch", str(args.batch),
           "--seed", str(args.seed), "--calib", str(min(args.calib, 128)), "--val", str(min(240, args.windows))]
    for flag, v in (("--lr", args.lr), ("--threads", args.threads or None),
                    ("--time-limit", args.time_limit or None), ("--ignored-scope", args.ignored_scope)):
        if v is not None:
            cmd += [flag, str(v)]
    done = train_then_export(args, work, cmd, "detector_loop.py train", lambda final, out: [
        py, str(LOOP), "export", str(final), str(out / STEM), "--teacher", str(teacher), "--info",
        str(out / "run.json")])
    if done is None:
        return 1
    out, command, run_info = done
    xml, onnx = out / f"{STEM}.xml", out / f"{STEM}.onnx"
    calib_eval = evaluate(cache, fp32, {"int8_ptq_x6": ptq, "int8_qat": xml}, 1, args.rounds)
    if args.no_gate:
        held = {"openvino/int8_qat": {"passes_gate": False, "gate": "not evaluated (--no-gate)"}}
    else:
        held = heldout_gate(m, mdir, heldout, {"openvino/int8": ptq, "openvino/int8_qat": xml,
                                               "onnxruntime/int8_qat": onnx})
    qat = held["openvino/int8_qat"]
    speed = calib_eval.get("timing", {}).get("int8_qat", {})
    faster = bool(speed) and all(v["speedup_vs_fp32"] > 1.0 for v in speed.values())
    accept = bool(qat["passes_gate"]) and faster
    files = sorted(p for p in out.iterdir() if p.name.startswith(STEM) and p.suffix in (".xml", ".bin", ".onnx"))
    rec = run_info["config"]
    prov = {
        "model": MODEL, "kind": "detector_qat", "made_by": "edge models train", "command": command,
        "reproduce": shlex.join(["edge", "models", "train", "--kind", "detector_qat", "--steps", str(rec["steps"]),
                                 "--batch", str(rec["batch"]), "--lr", str(rec["lr"]), "--seed", str(rec["seed"]),
                                 "--windows", str(args.windows), "--ignored-scope", json.dumps(rec["scope"]),
                                 "--install"]),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "recipe": rec, "steps_done": run_info["step"], "curve": run_info["curve"], "torch": run_info.get("torch"),
        "device": run_info.get("device"), "complete": run_info.get("complete"), "note": args.note or None,
        "source_sha256": m["source"]["sha256"], "data": data_info,
        "inputs": {"teacher_onnx_sha256": sha256_file(teacher), "calib_npz_sha256": sha256_file(calib_npz),
                   "train_data_sha256": rec.get("data_sha256"),
                   "held_out": "loaded only for the final gate (heldout.npz), never for training or tuning"},
        "accuracy_calib_split": calib_eval, "accuracy_heldout": held,
        "gate": {"passes": accept, "heldout_gate": qat["gate"], "faster_than_fp32_openvino": faster},
        "files": {p.name: {"sha256": sha256_file(p), "size_bytes": p.stat().st_size} for p in files},
        "licence": "Apache-2.0 (derivative of MediaPipe BlazePose person detector); see NOTICE",
    }
    (out / "PROVENANCE.json").write_text(json.dumps(prov, indent=1))
    if args.bench_json:
        Path(args.bench_json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.bench_json).write_text(json.dumps({k: prov[k] for k in (
            "command", "reproduce", "created", "recipe", "steps_done", "curve", "device", "data", "inputs",
            "accuracy_calib_split", "accuracy_heldout", "gate")}, indent=1))
    log.info("calibration split: %s", json.dumps({k: {a: v[a] for a in ("recall", "misses", "kp_drift")} | {
        "new_fp": v["empty_scenes"]["new_false_positives"]} for k, v in calib_eval["accuracy"].items()}))
    log.info("held-out gate (openvino/int8_qat): %s: %s", "PASS" if qat["passes_gate"] else "FAIL", qat["gate"])
    if args.install:
        if not accept:
            print(f"edge models train: not installing: the held-out gate / speed does not hold ({qat['gate']}; "
                  f"faster than FP32: {faster}); numbers in {out / 'PROVENANCE.json'}")
            return 2
        if install(files, prov, NOTICE, MODEL, args.trained_root):
            return 1
    print(f"edge models train: done in {time.monotonic() - t0:.0f} s; export and PROVENANCE.json in {out}")
    return 0
