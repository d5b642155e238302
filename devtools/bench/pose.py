"""`edge bench pose [--json PATH]`: MediaPipe Pose (tracking mode) vs our pipeline on every zoo landmark model ×
backend × precision: pose_landmark_full (fp32, PTQ int8, QAT int8_qat where built, OpenVINO bf16) and the distilled
pose_landmark_student (fp32, int8), each keyed `model/backend/precision`.

Same frames, same run, interleaved in chunks of a few frames (each candidate keeps its own tracking state and sees
every frame in order; the candidate order rotates every chunk so load noise hits all alike; chunks rather than
single frames so one runtime's spinning worker threads do not land on the next one's timing): a synthetic-motion
640x480 sequence built from the package photos. Per configuration: median and p95/p99 per-frame latency, FPS
ratio vs MediaPipe, drift vs MediaPipe, vs the same model's FP32 and (student) vs pose_landmark_full FP32 on the same
backend (devtools.pose_metrics.drift), and the self-noise: MediaPipe, and each backend's FP32 pipeline, on the frames
with ±1 grey level of noise, vs itself on the clean frames (what a change the camera cannot see already moves the
landmarks: the floor any `drift_vs_fp32` is read against; `drift_vs_fp32_over_self_noise`).

Two decompositions, untimed or timed aside: `drift_vs_fp32_same_rois` runs each non-FP32 configuration again with
the FP32 pipeline's ROIs replayed frame by frame (PoseTracker.replay_rois), so it is the model's own difference
with smoothing but without the tracking loop's feedback; `landmark_ms_median` is the landmark model's Session.run
alone inside the pipeline, and `landmark_speedup_vs_fp32` / `speedup_vs_fp32` compare it / the whole frame with
the same model's FP32 on the same backend. `roi_gain_scale` / `roi_gain_shift` (devtools.pose_metrics.roi_gain, on
the package photos): the share of a ROI error in size / position the model hands on to the next tracking ROI (0:
corrected in one frame; near 1: errors persist, so the loop is chaotic). `best` = the fastest
configuration whose drift_vs_reference ≤ max(0.01, 1.5 × self-noise), among those this CPU runs as built (QAT INT8
off TFLite not on AVX2-only CPUs, bf16 only with native bf16: edge.backends.auto.runs_as_built). The JSON
records the CPU model, its INT8 / bf16 flags and class.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

BACKENDS = ("onnxruntime", "openvino", "tflite")
PRECISIONS = ("fp32", "int8", "int8_qat", "bf16")
DETECTOR, LANDMARKS, STUDENT = "pose_detection", "pose_landmark_full", "pose_landmark_student"


def media_frame(image, i: int):
    """Frame i of a recorded clip: media time i / FPS drives tracking and smoothing, whatever the processing speed."""
    from devtools.motion import FPS
    from edge.core.frames import Frame

    return Frame(image, i, time.monotonic(), i / FPS, t_media=i / FPS)


def add_arguments(p) -> None:
    p.add_argument("--frames", type=int, default=40, help="frames per clip (3 clips)")
    p.add_argument("--clips", nargs="+", default=None, help="clips of devtools.motion.SEQUENCES")
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    p.add_argument("--precisions", nargs="+", default=list(PRECISIONS), help="fp32 int8 int8_qat bf16 int8_full")
    p.add_argument("--models", nargs="+", default=[LANDMARKS, STUDENT], help="landmark models of the zoo")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--segmentation", action="store_true", help="segmentation on (both sides)")
    p.add_argument("--verify-interval", type=int, default=0, help="[pose] verify_interval of our pipelines (0: "
                   "MediaPipe's tracking, the detector never runs while max_people are tracked)")
    p.add_argument("--warmup", type=int, default=5, help="warm-up frames per candidate")
    p.add_argument("--chunk", type=int, default=10, help="frames per candidate turn")
    p.add_argument("--cache-dir", default="", help="model cache (default: the configured cache)")


@dataclass
class Candidate:
    model: str
    backend: str
    precision: str
    det_precision: str
    pipeline: object
    ms: list = field(default_factory=list)
    poses: list = field(default_factory=list)  # per frame: (33, 5) of the first person, or None
    noisy: object = None  # FP32 only: a second pipeline on the same sessions, fed the ±1-grey-level frames
    noisy_poses: list = field(default_factory=list)
    rois: list = field(default_factory=list)  # FP32 only: per frame, the ROIs the next frame uses
    replay: object = None  # not FP32: a second pipeline on the same sessions, run on the FP32 pipeline's ROIs
    replay_poses: list = field(default_factory=list)
    timed: object = None  # the landmark session of `pipeline`, timing each run

    @property
    def key(self) -> str:
        return f"{self.model}/{self.backend}/{self.precision}"


class TimedSession:
    """A Session that records how long each `run` takes (the landmark model alone, inside the pipeline)."""

    def __init__(self, session):
        self._session, self.ms = session, []

    def run(self, feeds):
        t0 = time.perf_counter()
        out = self._session.run(feeds)
        self.ms.append((time.perf_counter() - t0) * 1e3)
        return out

    def __getattr__(self, name):
        return getattr(self._session, name)


def _pct(xs: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(xs, q)) if xs else float("nan")


def _mean(xs: list) -> float | None:
    xs = [x for x in xs if x is not None]
    return float(sum(xs) / len(xs)) if xs else None


def _open_candidates(args, pose_cfg) -> list[Candidate]:
    from edge.backends import load_session
    from edge.backends.base import BackendError
    from edge.pose.pipeline import PosePipeline, landmark_outputs
    from models.zoo import ModelNotBuilt, ModelZoo

    zoo = ModelZoo(args.cache_dir or None)
    out = []
    for model, b, p in ((m, b, p) for m in args.models for b in args.backends for p in args.precisions):
        if (b, p) not in {(a["backend"], a["precision"]) for a in zoo.manifest(model)["artifacts"]}:
            continue  # not a configuration of this model (e.g. no int8_qat for the student, no TFLite student)
        try:
            lmk_a = zoo.artifact(model, b, p)
        except (ModelNotBuilt, KeyError) as e:
            log.warning("skipping %s/%s/%s: %s", model, b, p, e)
            continue
        try:
            det_a, det_p = zoo.artifact(DETECTOR, b, p), p
        except (ModelNotBuilt, KeyError):
            det_a, det_p = zoo.artifact(DETECTOR, b, "fp32"), "fp32"
        try:
            det = load_session(b, det_a.path, threads=args.threads, precision=det_p)
            # only the outputs the pipeline uses: without segmentation its head is pruned where possible
            lmk = load_session(b, lmk_a.path, threads=args.threads, precision=p,
                               outputs=landmark_outputs(pose_cfg))
        except BackendError as e:
            log.warning("skipping %s/%s/%s: %s", model, b, p, e)
            continue
        noisy = PosePipeline.from_sessions(pose_cfg, det, lmk) if p == "fp32" else None
        replay = PosePipeline.from_sessions(pose_cfg, det, lmk) if p != "fp32" else None
        timed = TimedSession(lmk)
        out.append(Candidate(model, b, p, det_p, PosePipeline.from_sessions(pose_cfg, det, timed), noisy=noisy,
                             replay=replay, timed=timed))
        log.info("candidate %s/%s/%s (detector %s): %s, %s", model, b, p, det_p, det_a.path.name,
                 lmk_a.path.name)
    return out


def _frames(args):
    import numpy as np

    from devtools.motion import SEQUENCES, sequence

    unknown = sorted(set(args.clips or ()) - set(SEQUENCES))
    if unknown:
        raise SystemExit(f"edge bench pose: unknown clip(s) {unknown}; --clips takes {sorted(SEQUENCES)}")
    frames = sequence(args.frames, tuple(args.clips or SEQUENCES))
    rng = np.random.default_rng(0)
    noisy = [np.clip(f.astype(np.int16) + rng.integers(-1, 2, f.shape, dtype=np.int16), 0, 255).astype(np.uint8)
             for f in frames]
    return frames, noisy


def run(args) -> int:
    import numpy as np

    from devtools.pose_metrics import drift
    from edge.backends.auto import runs_as_built
    from edge.pose.config import PoseConfig
    from devtools.motion import FPS
    from devtools.pose_reference import MediaPipeReference

    pose_cfg = PoseConfig(max_people=1, segmentation=args.segmentation, verify_interval=args.verify_interval)
    frames, noisy = _frames(args)
    cands = _open_candidates(args, pose_cfg)
    if not cands:
        log.error("no configuration to benchmark: build the models first (`edge models build`)")
        return 1
    log.info("%d frames x (MediaPipe + %d configurations), interleaved", len(frames), len(cands))

    with MediaPipeReference() as ref:
        # Warm-up: first frames through everyone, then fresh state.
        ref.open("main", segmentation=args.segmentation)
        for i in range(min(args.warmup, len(frames))):
            ref.process(frames[i], "main")
            for c in cands:
                c.pipeline.process(media_frame(frames[i], i))
        ref.open("main", segmentation=args.segmentation)
        ref.open("noisy", segmentation=args.segmentation)
        for c in cands:
            c.pipeline.reset()
            c.timed.ms.clear()
            for extra in (c.noisy, c.replay):
                if extra is not None:
                    extra.reset()

        mp_ms, mp_poses, noisy_poses = [], [], []
        fp32 = {(c.model, c.backend): c for c in cands if c.precision == "fp32"}  # each configuration's baseline
        order = [None, *cands]
        for n, start in enumerate(range(0, len(frames), args.chunk)):
            idx = range(start, min(start + args.chunk, len(frames)))
            k = n % len(order)
            for c in order[k:] + order[:k]:
                for i in idx:
                    if c is None:
                        r = ref.process(frames[i], "main")
                        mp_ms.append(r.ms)
                        mp_poses.append(r.landmarks)
                        continue
                    t0 = time.perf_counter()
                    # media time i / FPS: MediaPipe's solution API stamps frames at 30 fps too
                    res = c.pipeline.process(media_frame(frames[i], i))
                    c.ms.append((time.perf_counter() - t0) * 1e3)
                    c.poses.append(res.people[0].landmarks if res.people else None)
                    if c.precision == "fp32":
                        c.rois.append(c.pipeline.tracker.next_rois())
            for i in idx:  # untimed
                noisy_poses.append(ref.process(noisy[i], "noisy").landmarks)
                for c in cands:
                    if c.noisy is not None:
                        res = c.noisy.process(media_frame(noisy[i], i))
                        c.noisy_poses.append(res.people[0].landmarks if res.people else None)
            for c in cands:  # untimed, after the chunk: the FP32 pipeline's ROIs of these frames are known
                base = fp32.get((c.model, c.backend))
                if c.replay is None or base is None:
                    continue
                for i in idx:
                    res = c.replay.process(media_frame(frames[i], i))
                    c.replay_poses.append(res.people[0].landmarks if res.people else None)
                    c.replay.tracker.replay_rois(base.rois[i])
        versions = ref.versions

    def drifts(refs, tests):
        both = [(a, b) for a, b in zip(refs, tests) if a is not None and b is not None]
        disagree = sum((a is None) != (b is None) for a, b in zip(refs, tests))
        return _mean([drift(a, b) for a, b in both]), len(both), disagree

    self_noise, _, _ = drifts(mp_poses, noisy_poses)
    gains = {c.key: _roi_gains(c) for c in cands}
    mp_med = float(np.median(mp_ms))
    floors = {k: drifts(c.poses, c.noisy_poses)[0] for k, c in fp32.items()}  # each FP32 pipeline vs itself, noisy
    cpu = _cpu_int8()
    configs = []
    for c in cands:
        d_ref, n_both, n_dis = drifts(mp_poses, c.poses)
        base, teacher = fp32.get((c.model, c.backend)), fp32.get((LANDMARKS, c.backend))
        d_fp32 = drifts(base.poses, c.poses)[0] if base is not None else None
        d_same = drifts(base.poses, c.replay_poses)[0] if base is not None and c.replay_poses else None
        lmk_med = float(np.median(c.timed.ms))
        base_lmk = float(np.median(base.timed.ms)) if base is not None else None
        floor = floors.get((c.model, c.backend))
        d_teacher = drifts(teacher.poses, c.poses)[0] if teacher is not None and c.model != LANDMARKS else None
        med = float(np.median(c.ms))
        configs.append({
            "key": c.key, "model": c.model,
            "backend": c.backend, "precision": c.precision, "detector_precision": c.det_precision,
            "ms_median": round(med, 3), "ms_p95": round(_pct(c.ms, 95), 3), "ms_p99": round(_pct(c.ms, 99), 3),
            "fps_ratio_vs_mediapipe": round(mp_med / med, 3),
            "drift_vs_reference": None if d_ref is None else round(d_ref, 5),
            "drift_vs_fp32": None if d_fp32 is None else round(d_fp32, 5),
            "fp32_self_noise": None if floor is None else round(floor, 5),
            "drift_vs_fp32_over_self_noise": None if d_fp32 is None or not floor else round(d_fp32 / floor, 3),
            "drift_vs_fp32_same_rois": 0.0 if c is base else None if d_same is None else round(d_same, 5),
            "speedup_vs_fp32": None if base is None else round(float(np.median(base.ms)) / med, 3),
            "landmark_ms_median": round(lmk_med, 3), "landmark_ms_p95": round(_pct(c.timed.ms, 95), 3),
            "landmark_speedup_vs_fp32": None if base_lmk is None else round(base_lmk / lmk_med, 3),
            **gains[c.key],
            "drift_vs_full_fp32": None if d_teacher is None else round(d_teacher, 5),
            "runs_as_built_on_this_cpu": runs_as_built(c.backend, c.precision)[0],
            "frames_compared": n_both, "presence_disagreements": n_dis,
            "session": c.pipeline.sessions[1].info.to_dict(),
        })
    limit = max(0.01, 1.5 * (self_noise or 0.0))
    ok = [c for c in configs if c["drift_vs_reference"] is not None and c["drift_vs_reference"] <= limit
          and c["runs_as_built_on_this_cpu"]]
    best = min(ok, key=lambda c: c["ms_median"]) if ok else None
    report = {
        "mediapipe_ms_median": round(mp_med, 3), "mediapipe_ms_p95": round(_pct(mp_ms, 95), 3),
        "mediapipe_ms_p99": round(_pct(mp_ms, 99), 3),
        "reference_self_noise": None if self_noise is None else round(self_noise, 5),
        "drift_limit": round(limit, 5),
        "configs": configs,
        "best": None if best is None else {k: best[k] for k in (
            "key", "model", "backend", "precision", "ms_median", "fps_ratio_vs_mediapipe", "drift_vs_reference")},
        "frames": len(frames), "clips": args.clips or "all", "fps_simulated": FPS, "segmentation": args.segmentation,
        "verify_interval": args.verify_interval,
        "threads": args.threads, "mediapipe": versions,
        "reference_frames_with_pose": sum(p is not None for p in mp_poses),
        "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_end": os.getloadavg(), **cpu},
    }
    _log_table(report)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2))
        log.info("wrote %s", args.json)
    return 0


def _roi_gains(c: Candidate) -> dict:
    """devtools.pose_metrics.roi_gain of the configuration's landmark model on the package photos (its own
    tracking ROI after one landmark run), averaged: how much of a ROI error the tracking loop carries forward."""
    import numpy as np

    from calibration.photos import PHOTOS, load_photo
    from devtools.pose_metrics import roi_gain

    pipe = c.noisy if c.noisy is not None else c.replay  # untimed: the timed session only sees the bench frames
    gs = []
    for p in PHOTOS:
        img = load_photo(p.name)
        pipe.reset()
        if pipe.process(media_frame(img, 0)).people:
            gs.append(roi_gain(pipe.landmarks, img, pipe.tracker.next_rois()[0]))
    pipe.reset()
    return {"roi_gain_scale": round(float(np.mean([g[0] for g in gs])), 3) if gs else None,
            "roi_gain_shift": round(float(np.mean([g[1] for g in gs])), 3) if gs else None, "roi_gain_photos": len(gs)}


def _cpu() -> str:
    from edge.backends.auto import cpu_model

    return cpu_model()


def _cpu_int8() -> dict:
    """The INT8 / bf16 CPU flags, the CPU class and whether it runs QAT INT8 and bf16 as built
    (edge.backends.auto)."""
    from edge.backends.auto import (CPU_CLASSES, INT8_CPU_FLAGS, bf16_supported, cpu_class, cpu_flags,
                                    int8_qat_supported)

    flags = cpu_flags()
    cls = cpu_class(flags)
    return {"cpu_flags": {f: f in flags for f in INT8_CPU_FLAGS}, "cpu_class": CPU_CLASSES[cls],
            "int8_qat_supported": int8_qat_supported(cls)[0], "bf16_supported": bf16_supported(flags)[0]}


def _log_table(r: dict) -> None:
    log.info("MediaPipe Pose (tracking): median %.2f ms, p95 %.2f ms; reference self-noise %s; drift limit %.4f",
             r["mediapipe_ms_median"], r["mediapipe_ms_p95"], r["reference_self_noise"], r["drift_limit"])
    log.info("%-22s %-12s %-9s %9s %9s %7s %10s %10s %10s %10s %10s %8s %7s %11s", "model", "backend", "precision",
             "median ms", "p95 ms", "ratio", "drift ref", "drift fp32", "same ROIs", "fp32 noise", "vs full",
             "lmk ms", "lmk x", "ROI gain")
    for c in r["configs"]:
        log.info("%-22s %-12s %-9s %9.2f %9.2f %7.2f %10s %10s %10s %10s %10s %8.2f %7s %5s/%5s", c["model"],
                 c["backend"], c["precision"], c["ms_median"], c["ms_p95"], c["fps_ratio_vs_mediapipe"], c["drift_vs_reference"],
                 c["drift_vs_fp32"], c["drift_vs_fp32_same_rois"], c["fp32_self_noise"], c["drift_vs_full_fp32"],
                 c["landmark_ms_median"], c["landmark_speedup_vs_fp32"], c["roi_gain_scale"], c["roi_gain_shift"])
    log.info("CPU: %s, INT8 class %s", r["machine"]["cpu"], r["machine"]["cpu_class"])
    log.info("best: %s", r["best"])
