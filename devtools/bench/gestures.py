"""`edge bench gestures [--json PATH]`: accuracy of the mirror's gesture recognizer and cost of the hand models.

Hands are real: the package photos' hands found by the real palm detector + hand landmark model
(devtools.hand_scenes: an open hand, a pointing hand, hands holding cards), moved by scripts.

1. Landmark level (`--sequences` per gesture and frame rate, `--fps`): each scripted gesture (swipe left/right, with
   and without a sideways return stroke; pointing at a random swatch; open palm held) drives
   edge.tryon.gestures.GestureRecognizer with the template's real landmarks moved rigidly, landmark jitter
   (`--noise-px`, world 2 mm) and 5% dropped hand frames. Normal movement (`--normal-minutes`: arms at the sides,
   walking in, adjusting clothes, touching the hair, turning, pointing at oneself, talking with the hands) gives
   the false triggers per minute. Keys: gesture_precision, gesture_recall (overall and `per_gesture`),
   latency_ms_p50 / _p95 (gesture end → event: the stroke's end, or the moment the hold has lasted its hold time;
   frame time of the event minus the scripted end, plus the recognizer's own time; negative = the swipe fired
   while the hand was still slowing down), false_triggers_per_min (and `per_normal`).
2. Image level (`--e2e-sequences` per gesture): the cut-out hands pasted into 640x480 frames (the astronaut photo
   behind), the real hand models (`--models`, `--backend`) and the recognizer end to end, three ways to find the
   hand side by side in one run: `pose_roi` (ROIs from pose wrists, scripted from the truth with pose-like noise,
   then landmark tracking; the mirror's default), `palm_fallback` (no pose: palm detector until tracked) and
   `palm_always` (palm detector on every frame, as MediaPipe Hands without tracking). Keys per way under `e2e`:
   hands_ms_p50 / _p95 (per frame), hand_found (frames of a gesture with its hand found), precision, recall,
   latency_ms_p50 / _p95 (plus that frame's hands time);
   hands_ms_p50 / _p95 at the top level are the mirror's default (`pose_roi`).
"""
from __future__ import annotations

import logging
import time

import numpy as np

log = logging.getLogger(__name__)
GESTURES = ("swipe_left", "swipe_right", "point", "palm")


def add_arguments(p) -> None:
    p.add_argument("--sequences", type=int, default=40, help="scripted sequences per gesture and frame rate")
    p.add_argument("--fps", default="30,15", help="hand frame rates (comma list): 15 = hands on every 2nd frame")
    p.add_argument("--normal-minutes", type=float, default=8.0, help="minutes of normal movement per frame rate")
    p.add_argument("--noise-px", type=float, default=1.5, help="landmark jitter (px, at ~60 px palm length)")
    p.add_argument("--e2e-sequences", type=int, default=2, help="image-level sequences per gesture ('0' = skip)")
    p.add_argument("--e2e-normal-s", type=float, default=12.0, help="image-level normal movement seconds")
    p.add_argument("--models", choices=["lite", "full"], default="lite")
    p.add_argument("--backend", default="onnxruntime", choices=["onnxruntime", "openvino", "tflite"])
    p.add_argument("--seed", type=int, default=20261129)
    p.add_argument("--view", default="", help="x0,y0,x1,y1: the part of the picture the mirror page shows (the "
                   "swatches go inside it; e.g. 0.29,0.05,0.71,0.75 for a 1080x1920 portrait screen); '' = all")


def _pct(a, q):
    return None if len(a) == 0 else round(float(np.percentile(a, q)), 1)


class Score:
    """Matches events to truth: same kind (and swatch colour), fired between the start - 0.1 s and end + 1 s."""

    def __init__(self):
        self.tp = {k: 0 for k in GESTURES}
        self.fired = {k: 0 for k in GESTURES}
        self.truths = {k: 0 for k in GESTURES}
        self.latency_ms: list[float] = []
        self.false_normal = 0
        self.normal_s = 0.0

    def add(self, script, events, extra_ms: dict[float, float]) -> None:
        for e in events:
            self.fired[e.kind] += 1
        free = list(events)
        for tr in script.truth:
            self.truths[tr.kind] += 1
            for e in free:
                if e.kind == tr.kind and (tr.value is None or e.value == tr.value) and \
                        tr.t_start - 0.1 <= e.t <= tr.t_end + 1.0:
                    self.tp[tr.kind] += 1
                    self.latency_ms.append((e.t - tr.t_end) * 1e3 + extra_ms.get(e.t, 0.0))
                    free.remove(e)
                    break
        if not script.truth:
            self.false_normal += len(events)
            self.normal_s += script.duration

    def result(self) -> dict:
        per = {}
        for k in GESTURES:
            per[k] = {"n": self.truths[k], "fired": self.fired[k],
                      "precision": round(self.tp[k] / self.fired[k], 3) if self.fired[k] else None,
                      "recall": round(self.tp[k] / self.truths[k], 3) if self.truths[k] else None}
        tp, fired, n = sum(self.tp.values()), sum(self.fired.values()), sum(self.truths.values())
        return {"gesture_precision": round(tp / fired, 3) if fired else None,
                "gesture_recall": round(tp / n, 3) if n else None,
                "latency_ms_p50": _pct(self.latency_ms, 50), "latency_ms_p95": _pct(self.latency_ms, 95),
                "false_triggers_per_min": round(self.false_normal / (self.normal_s / 60), 2) if self.normal_s else None,
                "per_gesture": per}


def drive(script, rec, rng, noise_px: float, drop: float = 0.05) -> tuple[list, dict[float, float]]:
    """Landmark level: the script's hands (jittered, some frames dropped) into the recognizer."""
    from devtools.hand_scenes import H, W

    rec.reset()  # also forgets the cooldown
    events, ms = [], {}
    for t, poses, body in script.frames:
        hands = [p.template.hand(p, rng, noise_px, 0.002) for p in poses if rng.random() >= drop]
        t0 = time.perf_counter()
        ev = rec.update(t, hands, (H, W), body)
        dt = (time.perf_counter() - t0) * 1e3
        for e in ev:
            ms[e.t] = dt
        events += ev
    return events, ms


def _view(args):
    from edge.tryon.server import parse_view

    return parse_view(args.view) if args.view else None


def landmark_level(args, tpls, cfg) -> dict:
    from devtools.hand_scenes import NORMAL, gesture_script, normal_script
    from edge.tryon.gestures import GestureRecognizer

    out = {}
    rec = GestureRecognizer(cfg, mirror=True)
    rec.set_view(_view(args))
    rects = rec.swatch_rects()
    for fps in [float(f) for f in args.fps.split(",") if f]:
        rng = np.random.default_rng(args.seed)
        score = Score()
        per_normal = {}
        for kind in GESTURES:
            for i in range(args.sequences):
                s = gesture_script(kind, tpls, cfg, rng, fps, variant=i, rects=rects)
                score.add(s, *drive(s, rec, rng, args.noise_px))
        for kind in NORMAL:
            s = normal_script(kind, tpls, rng, fps, seconds=args.normal_minutes * 60 / len(NORMAL))
            ev, ms = drive(s, rec, rng, args.noise_px)
            score.add(s, ev, ms)
            per_normal[kind] = {"minutes": round(s.duration / 60, 2), "events": [e.kind for e in ev]}
        r = score.result()
        r["per_normal"] = per_normal
        out[f"{fps:g}fps"] = r
        log.info("landmark level %g fps: precision %s recall %s latency p50 %s p95 %s ms, %s false/min", fps,
                 r["gesture_precision"], r["gesture_recall"], r["latency_ms_p50"], r["latency_ms_p95"],
                 r["false_triggers_per_min"])
    return out


def e2e(args, tpls, cfg, sessions) -> dict:
    """Image level: pasted real hands, the real hand models, three ROI strategies side by side."""
    import cv2

    from calibration.photos import load_photo
    from devtools.hand_scenes import H, W, gesture_script, normal_script, pose_landmarks
    from devtools.motion import window_view
    from edge.hands.config import HandsConfig
    from edge.hands.pipeline import HandsStage
    from edge.tryon.gestures import GestureRecognizer

    bg = window_view(load_photo("astronaut"), 256, 300, 560)
    rng = np.random.default_rng(args.seed + 1)
    rec = GestureRecognizer(cfg, mirror=True)
    rec.set_view(_view(args))
    scripts = [gesture_script(k, tpls, cfg, rng, 30.0, variant=i, rects=rec.swatch_rects()) for k in GESTURES
               for i in range(args.e2e_sequences)]
    scripts += [normal_script(k, tpls, rng, 30.0, seconds=args.e2e_normal_s / 2)
                for k in ("adjust_clothes", "talking")]
    frames = []  # rendered once, shared by the three ways
    for s in scripts:
        imgs = []
        for t, poses, body in s.frames:
            f = bg.copy()
            for p in poses:
                p.template.paste(f, p)
            imgs.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
        frames.append(imgs)
    ways = {"pose_roi": (HandsConfig(palm_detection="fallback"), True),
            "palm_fallback": (HandsConfig(palm_detection="fallback"), False),
            "palm_always": (HandsConfig(palm_detection="always"), False)}
    stages = {w: HandsStage(c, *sessions) for w, (c, _) in ways.items()}
    scores = {w: Score() for w in ways}
    hands_ms = {w: [] for w in ways}
    found = {w: [0, 0] for w in ways}
    for s, imgs in zip(scripts, frames):
        for w, (c, use_pose) in ways.items():  # interleaved per script: load drift hits every way alike
            stage = stages[w]
            stage.reset()
            rec.reset()
            prng = np.random.default_rng(args.seed + 2)
            events, extra = [], {}
            for (t, poses, body), rgb in zip(s.frames, imgs):
                pose = pose_landmarks(poses, body, prng) if use_pose else None
                res = stage.process(rgb, pose, 0, t)
                ms = res.timings_ms["hands"]
                hands_ms[w].append(ms)
                if any(tr.t_start - 0.3 <= t <= tr.t_end for tr in s.truth):  # the hand is up, gesturing
                    found[w][0] += len(poses)
                    found[w][1] += min(len(poses), len(res.hands))
                t0 = time.perf_counter()
                ev = rec.update(t, res.hands, (H, W), body)
                for e in ev:
                    extra[e.t] = ms + (time.perf_counter() - t0) * 1e3
                events += ev
            scores[w].add(s, events, extra)
    out = {}
    for w in ways:
        r = scores[w].result()
        out[w] = {"hands_ms_p50": _pct(hands_ms[w], 50), "hands_ms_p95": _pct(hands_ms[w], 95),
                  "hand_found": round(found[w][1] / max(found[w][0], 1), 3),
                  "precision": r["gesture_precision"], "recall": r["gesture_recall"],
                  "latency_ms_p50": r["latency_ms_p50"], "latency_ms_p95": r["latency_ms_p95"],
                  "false_triggers": scores[w].false_normal, "per_gesture": r["per_gesture"]}
        log.info("e2e %s: hands %s/%s ms, found %.2f, precision %s recall %s", w, out[w]["hands_ms_p50"],
                 out[w]["hands_ms_p95"], out[w]["hand_found"], out[w]["precision"], out[w]["recall"])
    out["sequences"] = {"gestures": len(scripts) - 2, "normal_s": round(sum(s.duration for s in scripts[-2:]), 1),
                        "frames": sum(len(f) for f in frames)}
    return out


def run(args) -> int:
    import json
    import platform

    from devtools.hand_scenes import find_templates
    from edge.backends import load_session
    from edge.tryon.config import GesturesSection
    from models.zoo import ModelZoo

    zoo = ModelZoo()
    ref = lambda n, b="onnxruntime": load_session(b, zoo.artifact(n, b, "fp32").path, threads=2)  # noqa: E731
    tpls = find_templates(ref("palm_detection_full"), ref("hand_landmark_full"))
    log.info("hand templates: %s", {k: [t.source for t in v] for k, v in tpls.items()})
    cfg = GesturesSection(enabled=True)
    res = {"bench": "gestures", "host": platform.node(), "config": cfg.model_dump(mode="json", exclude={"hands"}),
           "view": list(_view(args) or (0.0, 0.0, 1.0, 1.0)),
           "templates": {k: [t.source for t in v] for k, v in tpls.items()},
           "args": {k: v for k, v in vars(args).items() if not k.startswith("_") and k != "json"}}
    t0 = time.monotonic()
    lm = landmark_level(args, tpls, cfg)
    res["landmark_level"] = lm
    main = lm[next(iter(lm))]
    for k in ("gesture_precision", "gesture_recall", "latency_ms_p50", "latency_ms_p95", "false_triggers_per_min",
              "per_gesture"):
        res[k] = main[k]
    if args.e2e_sequences > 0:
        names = (f"palm_detection_{args.models}", f"hand_landmark_{args.models}")
        sessions = (ref(names[0], args.backend), ref(names[1], args.backend))
        res["e2e"] = e2e(args, tpls, cfg, sessions)
        res["e2e"]["models"] = f"{names[0]} + {names[1]} on {args.backend}/fp32"
        res["hands_ms_p50"] = res["e2e"]["pose_roi"]["hands_ms_p50"]
        res["hands_ms_p95"] = res["e2e"]["pose_roi"]["hands_ms_p95"]
    res["seconds"] = round(time.monotonic() - t0, 1)
    text = json.dumps(res, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(json.dumps({k: v for k, v in res.items() if k in ("gesture_precision", "gesture_recall", "latency_ms_p50",
                                                            "latency_ms_p95", "false_triggers_per_min",
                                                            "hands_ms_p50", "hands_ms_p95")}, indent=1))
    return 0
