"""`edge bench behaviour [--json PATH]`: shopper analytics and staff alerts on the scripted store scene.

The real pipeline (person detections → ByteTrack tracker → zones, door line, queue, loitering, kiosk help, shelf
interaction → alert engine) runs on every frame of devtools.scenario, whose ground truth is known; beside it, in
the same run and on the same detections, a naive tracker (greedy IoU, no confirmation, no grace) feeds the same
analytics, so the difference the tracker makes is visible. With the person detector, BlazePose landmarks run on
the people whose box reaches a shelf (`ShelfPose`), and their wrists reach the detections the way a device's pose
results do (`edge.app.behaviour.attach_keypoints`), so shelf interactions are measured from real wrists. Keys:
`detector`, `footfall_abs_err_pct`, `crossings` (per true door crossing: counted or missed, and the extra
counts), `dwell_mae_s`, `queue_len_mae`, `alert_precision`, `alert_recall` (`alerts_missed`, `alerts_false`: rule
and time of each), `time_to_alert_p95_s`, `false_alerts_per_hour`, `id_switches`, `product_interaction_precision` /
`_recall`, `handovers` / `handovers_right` (zone handovers, and those that kept the same true person;
`handover_list`), `shelf_wrist_err_*` (the estimated wrists against the scene's true ones, of the person's height:
`WristError`), `fps`, `ms_p50`, `ms_p95`, `ms_p99` (per frame: detection + shelf pose + analytics + alerts), the
parts' times (`detect_ms_*`, `pose_ms_per_posed_frame_*`, `analytics_ms_*`), `pose_crops`, the 1-minute load average
at start and end, and `boxes_only` (our tracker without its appearance cue) and `naive` with the same accuracy keys.
`--landmarks NAME ...` picks the device's landmark model; further names (e.g. `pose_landmark_student`) run on the
same boxes and frames, each feeding analytics of its own: `landmarks_compare[name]` has its `model`
(backend/precision), shelf interaction precision / recall, `shelf_wrist_err_*`, `pose_crops`, pose time per posed
frame and `pose_ms_ratio` (the device model's median / its). A further name may be an ONNX file with the
landmark model's inputs and outputs (a training run's export, `<work>/export/pose_landmark_student_fp32.onnx`), so
a candidate is measured before it is installed; it runs in FP32 on the backend the device's model got. The true
wrists are pose_landmark_full's on the full-resolution photos the scene's people were cut from, so the full model's
wrist error is partly agreement with itself at another scale; for another model it is the distance from that
reference.
"""
from __future__ import annotations

import json
import logging
import platform
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# Alert rules of the bench device (ids match the ground-truth rules below).
RULES = {
    "queue_long": {"kind": "queue", "zone": "checkout", "threshold": 4, "for_s": 8.0},
    "kiosk_help": {"kind": "dwell", "zone": "kiosk", "threshold": 30.0},
    "loiter_window": {"kind": "dwell", "zone": "window", "threshold": 30.0},
}
MATCH_BEFORE_S, MATCH_AFTER_S = 5.0, 15.0  # an alert this close to a true onset is the same alert
# ByteTrack thresholds for NanoDet's score range (the detector keeps >= 0.3). Measured on this scene: at 0.4 the
# detector has 0.009 false boxes per frame away from any person, and near (200-330 px) fully visible people
# score 0.35-0.45 on some sprites, so 0.45 / 0.5 never started their tracks. device_configs/shelf-camera.toml has
# the same lost_s / lost_buffer (its pose detections keep the default score thresholds; its comment gives these).
TRACKER = {"high_score": 0.4, "low_score": 0.3, "new_track_score": 0.4, "min_hits": 3, "lost_s": 3.0,
           "lost_buffer": 0.15, "appearance_weight": 1.0, "low_track_hits": 8}
# Cooldowns as in device_configs/shelf-camera.toml and kiosk.toml: one alert per episode for staff.
HANDOVER_ZONES = ("window", "kiosk")  # people stand alone there: a new track where one stood continues its visit
COOLDOWN_S = {"queue_long": 30, "kiosk_help": 30, "loiter_window": 60}
LANDMARKS = "pose_landmark_full"


def add_arguments(p) -> None:
    p.add_argument("--cycles", type=int, default=3, help="100 s cycles of the scene (every 3rd: near misses)")
    p.add_argument("--detector", choices=("people", "pose"), default="people",
                   help="people: the far-range person detector; pose: BlazePose detections")
    p.add_argument("--backend", default="auto", help="backend of the detector model (auto: fastest that passes)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--detector-precision", default="default",
                   help="precision of the person detector (default: the manifest's for this CPU, as a device gets)")
    p.add_argument("--landmarks", nargs="+", default=[LANDMARKS], metavar="NAME",
                   help="landmark model of the device's pose (e.g. pose_landmark_student); with --detector people, "
                        "further names run beside it on the same boxes and frames, each into analytics of its own "
                        "(`landmarks_compare`: shelf interactions and pose time against the first); a further one "
                        "may be an ONNX file with the landmark model's IO (a training run's export, before install)")
    p.add_argument("--verify-interval", type=int, default=0,
                   help="[pose] verify_interval (--detector pose: the pose tracker's detector check, docs/POSE.md)")


def is_model_file(name: str) -> bool:
    """Whether a --landmarks name is an ONNX file (a candidate) rather than a zoo model."""
    return name.endswith(".onnx")


def check_args(args) -> None:
    """Refuse combinations the bench cannot run, naming the fix."""
    if args.detector == "pose" and len(args.landmarks) > 1:
        raise SystemExit("edge bench behaviour: side-by-side --landmarks need --detector people (with --detector "
                         "pose the landmark model makes the detections); run one bench per model instead")
    if args.detector == "pose" and args.detector_precision != "default":
        raise SystemExit("edge bench behaviour: --detector-precision is the person detector's (--detector people); "
                         "with --detector pose the pose models keep their manifest precision")
    if args.detector == "people" and args.verify_interval:
        raise SystemExit("edge bench behaviour: --verify-interval is the pose tracker's (--detector pose); with "
                         "--detector people the landmarks run on each person box, without tracking")
    if len(set(args.landmarks)) != len(args.landmarks):
        raise SystemExit(f"edge bench behaviour: --landmarks names a model twice: {' '.join(args.landmarks)}")
    files = [n for n in args.landmarks if is_model_file(n)]
    if args.landmarks[0] in files:
        raise SystemExit(f"edge bench behaviour: the first --landmarks is the device's model, a zoo name; give "
                         f"{args.landmarks[0]} after it (e.g. --landmarks {LANDMARKS} {args.landmarks[0]})")
    missing = [n for n in files if not Path(n).is_file()]
    if missing:
        raise SystemExit(f"edge bench behaviour: --landmarks: no such ONNX file: {' '.join(missing)}")


def device_config(detector: str, backend: str = "auto", threads: int = 2, landmarks: str = LANDMARKS,
                  verify_interval: int = 0, precision: str = "default"):
    """The bench device: the scene's geometry as [analytics], the rules as [alerts]."""
    from devtools.scenario import FPS, H, LINE, SHELF, W, ZONES
    from edge.app.config import parse_config

    analytics = {
        "tracker": TRACKER,
        "zones": [{"name": n, "polygon": [list(p) for p in poly], "enter_frames": 3, "exit_s": 2.0,
                   **({"handover_s": 5.0} if n in HANDOVER_ZONES else {})} for n, poly in ZONES.items()],
        "lines": [{"name": "door", "start": list(LINE[0]), "end": list(LINE[1])}],
        "queues": [{"name": "checkout", "zone": "checkout", "min_interval_s": 1.0}],
        "loitering": [{"name": "window", "zone": "window", "after_s": RULES["loiter_window"]["threshold"]}],
        "kiosk_help": [{"name": "kiosk", "zone": "kiosk", "after_s": RULES["kiosk_help"]["threshold"]}],
        "shelves": [{"name": "low_shelf", "polygon": [list(p) for p in SHELF]}],
        "heatmaps": [{"name": "floor", "period_s": 60.0}],
    }
    alerts = {"rules": [
        {"id": "queue_long", "metric": "queue_length", "key": "checkout", "op": ">=", "threshold": 4,
         "for_s": RULES["queue_long"]["for_s"], "clear_threshold": 3, "clear_for_s": 3,
         "cooldown_s": COOLDOWN_S["queue_long"]},
        {"id": "kiosk_help", "metric": "help_requested", "key": "kiosk", "clear_for_s": 3,
         "cooldown_s": COOLDOWN_S["kiosk_help"]},
        {"id": "loiter_window", "metric": "loitering", "key": "window", "clear_for_s": 3,
         "cooldown_s": COOLDOWN_S["loiter_window"]},
    ]}
    models = {"pose_landmarks": {"name": landmarks}}
    if detector == "people":
        models["person_detector"] = {"name": "nanodet_m_416", "backend": backend, "threads": threads,
                                     "precision": precision}
    return parse_config({"device": {"id": "bench-01", "store": "lab", "kind": "shelf-camera"},
                         "source": {"type": "video", "uri": "scenario", "width": W, "height": H, "fps": FPS},
                         "models": models,
                         "pose": {"max_people": 6, "segmentation": False, "verify_interval": verify_interval},
                         "analytics": analytics, "alerts": alerts}, "<bench>")


def _make_detector(cfg, kind: str):
    """(detect(frame) -> Detections, name, models evidence, close)."""
    from models.zoo import ModelZoo

    zoo = ModelZoo(cfg.models.cache_dir or None)
    if kind == "people":
        from edge.people import open_detector

        ref = cfg.models.person_detector
        det = open_detector(zoo, ref, **cfg.people.model_dump())
        info = det.session.info
        return det.frame_detections, f"{ref.name}/{info.backend}/{info.precision}", \
            {ref.name: f"{info.backend}/{info.precision}"}, det.session.close
    from edge.analytics.pose_adapter import detections_from_pose
    from edge.pose.pipeline import PosePipeline

    pose = PosePipeline(cfg, zoo)
    name = f"pose_detection+{cfg.models.pose_landmarks.name}/" + "/".join(s.info.backend for s in pose.sessions)
    return (lambda f: detections_from_pose(pose.process(f)), name,
            {Path(s.info.path).name: s.info.backend for s in pose.sessions}, pose.close)


class ShelfPose:
    """The bench's pose stage for shelf interactions: BlazePose landmarks ([models.pose_landmarks], through the
    backends) on each person box that reaches a shelf polygon (the box grown by `reach` x its height sideways, for
    an outstretched arm; boxes at least `min_height` px tall), one upright square ROI per box of 1.25 x its
    height around its centre (MediaPipe's detector ROI of a standing person). `__call__(frame, dets)` returns the
    pose people as Detections on the same boxes (keypoints x, y, visibility; 0 where the pose flag is below the
    presence threshold, and for the boxes away from the shelves), for `edge.app.behaviour.attach_keypoints`."""

    def __init__(self, cfg, zoo, shelves, *, ref=None, reach: float = 0.25, min_height: float = 60.0):
        """ref: the landmark ModelRef (default: the config's [models.pose_landmarks]); a name ending in .onnx is
        that file."""
        from edge.backends.auto import open_model
        from edge.pose.landmarks import LandmarkModel
        from edge.pose.pipeline import landmark_outputs

        ref = ref or cfg.models.pose_landmarks
        pose_cfg = cfg.pose.model_copy(update={"segmentation": False})
        if is_model_file(ref.name):  # a candidate's file (check_args): FP32 on ref's backend (auto: onnxruntime)
            from edge.backends.registry import load_session

            backend = "onnxruntime" if ref.backend == "auto" else ref.backend
            self.session = load_session(backend, Path(ref.name), threads=ref.threads,
                                        options=ref.backend_options().get(backend), outputs=landmark_outputs(pose_cfg))
        else:
            self.session = open_model(zoo, ref, options=ref.backend_options(), outputs=landmark_outputs(pose_cfg))
        self.model = LandmarkModel(self.session, segmentation=False, heatmap_refine=pose_cfg.heatmap_refine)
        self.presence = pose_cfg.presence_threshold
        self.shelves = [np.asarray(poly, np.float64).reshape(-1, 2) for poly in shelves]
        self.reach, self.min_height = reach, min_height
        self.crops, self.ms = 0, []

    def rows(self, dets) -> np.ndarray:
        """Detection rows whose box, grown sideways by `reach` x its height, overlaps a shelf's bounding box."""
        b = dets.xyxy.astype(np.float64)
        h = b[:, 3] - b[:, 1]
        near = np.zeros(len(b), bool)
        for poly in self.shelves:
            (x0, y0), (x1, y1) = poly.min(0), poly.max(0)
            near |= (b[:, 2] + self.reach * h >= x0) & (b[:, 0] - self.reach * h <= x1) & (b[:, 3] >= y0) & \
                    (b[:, 1] <= y1)
        return np.flatnonzero(near & (h >= self.min_height))

    def __call__(self, frame, dets):
        import cv2

        from edge.core.detections import Detections
        from edge.pose.types import LANDMARK_NAMES, Roi

        kps = np.zeros((len(dets), len(LANDMARK_NAMES), 3), np.float32)  # no pose: zero-score keypoints
        flags = np.zeros(len(dets), np.float32)
        rows = self.rows(dets) if len(dets) else np.zeros(0, np.int64)
        if len(rows):
            t0 = time.perf_counter()
            rois = [Roi(float((x0 + x1) / 2), float((y0 + y1) / 2), 1.25 * float(max(y1 - y0, x1 - x0)), 0.0)
                    for x0, y0, x1, y1 in dets.xyxy[rows].astype(np.float64)]
            for row, o in zip(rows, self.model(cv2.cvtColor(frame.image, cv2.COLOR_BGR2RGB), rois)):
                flags[row] = o.flag
                kps[row] = o.landmarks[:, [0, 1, 3]] * (1.0, 1.0, float(o.flag >= self.presence))
            self.crops += len(rows)
            self.ms.append((time.perf_counter() - t0) * 1e3)
        return Detections(dets.xyxy, flags, np.zeros(len(dets), np.int32), kps, None, LANDMARK_NAMES)

    def close(self) -> None:
        self.session.close()


def _person_of(truth, pred_tracks, fps: float, t: float, track_id: int, window_s: float = 1.0) -> int | None:
    """The true person a track follows around stream time t: in each frame within window_s, the person whose box the
    track's box overlaps most (IoU >= 0.3); the most frequent one (people overlap when they cross)."""
    from collections import Counter

    from edge.core.detections import box_iou

    i0 = int(round(t * fps))
    votes: Counter = Counter()
    for i in range(max(0, i0 - int(window_s * fps)), min(len(pred_tracks), i0 + int(window_s * fps) + 1)):
        boxes, ids = pred_tracks[i]
        people = truth.frames[i].people
        sel = np.flatnonzero(ids == track_id)
        if not len(sel) or not people:
            continue
        iou = box_iou(boxes[sel[:1]], np.array([p.box for p in people], np.float32))[0]
        if iou.max() >= 0.3:
            votes[people[int(iou.argmax())].id] += 1
    return votes.most_common(1)[0][0] if votes else None


def _crossings(truth, sink, pred_tracks, fps: float, window_s: float = 2.0) -> dict:
    """Each true door crossing, counted (a line_crossed event in its direction, within window_s, by a track on that
    person) or missed; and the counts that match no crossing."""
    got = [e for e in sink.events if e.kind == "line_crossed"]
    used, missed = set(), []
    for t, pid, d in truth.crossings:
        cand = [(abs(e.data["t"] - t), k) for k, e in enumerate(got)
                if k not in used and e.data["direction"] == d and abs(e.data["t"] - t) <= window_s
                and _person_of(truth, pred_tracks, fps, e.data["t"], e.data["track_id"]) == pid]
        if cand:
            used.add(min(cand)[1])
        else:
            missed.append({"t": round(t, 1), "person": pid, "direction": d})
    extra = [{"t": round(e.data["t"], 1), "track_id": e.data["track_id"], "direction": e.data["direction"],
              "person": _person_of(truth, pred_tracks, fps, e.data["t"], e.data["track_id"])}
             for k, e in enumerate(got) if k not in used]
    return {"counted": len(used), "true": len(truth.crossings), "missed": missed, "extra": extra}


def _interactions(truth, sink, pred_tracks, fps: float, window_s: float = 2.0) -> dict:
    """product_interaction events against the true ones: an event matches a true interaction of the person its
    track follows around the event (`_person_of`), starting within `window_s` of it."""
    got = [e for e in sink.events if e.kind == "product_interaction"]
    used, tp = set(), 0
    for e in got:
        pid = _person_of(truth, pred_tracks, fps, e.data["t"], e.data["track_id"])
        cand = [(abs(t - e.data["start_t"]), k) for k, (tid, t) in enumerate(truth.interactions)
                if tid == pid and k not in used and abs(t - e.data["start_t"]) <= window_s]
        if cand:
            used.add(min(cand)[1])
            tp += 1
    n_true = len(truth.interactions)
    return {"product_interactions": len(got), "product_interactions_true": n_true,
            "product_interaction_precision": round(tp / len(got), 3) if got else None,
            "product_interaction_recall": round(tp / n_true, 3) if n_true else None}


def _handovers(truth, sink, pred_tracks, fps: float, window_s: float = 5.0) -> dict:
    """Each zone handover (a `zone_entered` with `continues`) against the truth: the person the new track follows
    when first seen, and the one the old track followed where it came nearest that box within `window_s` before
    (where it stood: its id may have left with someone else since); right when they are the same person."""
    from edge.core.detections import box_iou

    def box_of(i: int, tid: int):
        boxes, ids = pred_tracks[i]
        sel = np.flatnonzero(ids == tid)
        return boxes[sel[0]].astype(np.float32) if len(sel) else None

    out = []
    for e in sink.events:
        if e.kind != "zone_entered" or "continues" not in e.data:
            continue
        old, new, t = e.data["continues"], e.data["track_id"], e.data["t"]
        i = min(int(round(t * fps)), len(pred_tracks) - 1)
        lo = max(0, i - int(window_s * fps))
        first = next((k for k in range(lo, i + 1) if box_of(k, new) is not None), i)  # new id first seen
        nb = box_of(first, new)
        near = [] if nb is None else [(float(box_iou(b[None], nb[None])[0, 0]), k)
                                      for k in range(lo, i + 1) if (b := box_of(k, old)) is not None]
        was = _person_of(truth, pred_tracks, fps, max(near)[1] / fps, old, 0.2) if near else None
        now = _person_of(truth, pred_tracks, fps, first / fps, new, 0.2)
        out.append({"zone": e.data["zone"], "t": round(t, 1), "from": old, "to": new, "person_from": was,
                    "person_to": now, "same_person": was is not None and was == now})
    return {"handovers": len(out), "handovers_right": sum(h["same_person"] for h in out), "handover_list": out}


def _stage(cfg, naive: bool = False, **tracker):
    """(BehaviourStage, sink) of the bench device; naive: no tracker (the detections come with the naive tracker's
    ids); tracker: TrackerConfig fields to change."""
    from edge.alerts import AlertEngine
    from edge.analytics.composer import Analytics
    from edge.app.behaviour import BehaviourStage
    from edge.core.events import ListSink

    sink = ListSink()
    tcfg = cfg.analytics.tracker.model_copy(update={"enabled": not naive, **tracker})
    acfg = cfg.analytics.model_copy(update={"tracker": tcfg})
    stage = BehaviourStage(Analytics.from_config(acfg, sink, source="bench", frame_size=(640, 480)),
                           AlertEngine(cfg.alerts, sink))
    return stage, sink


def _score(truth, sink, queue_len, pred_tracks, duration_s: float) -> dict:
    from devtools.scenario_truth import id_switches

    ev = sink.events
    crossed = [e for e in ev if e.kind == "line_crossed"]
    got = {"in": sum(e.data["direction"] == "in" for e in crossed), "out": sum(e.data["direction"] == "out" for e in crossed)}
    true_total = truth.footfall["in"] + truth.footfall["out"]
    footfall_err = 100.0 * (abs(got["in"] - truth.footfall["in"]) + abs(got["out"] - truth.footfall["out"])) / true_total
    # dwell: each true visit of the kiosk / checkout / window zones matched to the predicted visit that overlaps it
    # most; a missed visit counts its whole dwell as error
    errs = []
    for z, visits in truth.visits.items():
        pred = [(e.data["enter_t"], e.data["exit_t"]) for e in ev if e.kind == "zone_left" and e.data["zone"] == z]
        for _, t0, t1 in visits:
            if t1 - t0 < 2.0:  # walking through a corner of a zone is not a visit worth scoring
                continue
            best = max(pred, key=lambda p: min(p[1], t1) - max(p[0], t0), default=None)
            overlap = 0.0 if best is None else min(best[1], t1) - max(best[0], t0)
            errs.append(abs((best[1] - best[0]) - (t1 - t0)) if overlap > 0 else (t1 - t0))
    opened = [(e.data["rule"], e.data["opened_t"]) for e in ev if e.kind == "alert_opened"]
    matched, delays, used, missed = 0, [], set(), []
    for rid, t_true in truth.alerts:
        cand = [(abs(t - t_true), i) for i, (r, t) in enumerate(opened)
                if r == rid and i not in used and t_true - MATCH_BEFORE_S <= t <= t_true + MATCH_AFTER_S]
        if cand:
            _, i = min(cand)
            used.add(i)
            matched += 1
            delays.append(max(0.0, opened[i][1] - t_true))
        else:
            missed.append({"rule": rid, "t": round(t_true, 1)})
    false = len(opened) - len(used)
    q = np.abs(np.asarray(queue_len) - np.asarray(truth.queue_len[:len(queue_len)]))
    return {"footfall": got, "footfall_true": dict(truth.footfall),
            "footfall_abs_err_pct": round(footfall_err, 2),
            "crossings": _crossings(truth, sink, pred_tracks, truth.fps),
            "dwell_mae_s": round(float(np.mean(errs)), 2) if errs else None, "dwell_visits": len(errs),
            "queue_len_mae": round(float(q.mean()), 3),
            "alerts_true": len(truth.alerts), "alerts_opened": len(opened), "alerts_missed": missed,
            "alerts_false": [{"rule": r, "t": round(t, 1)} for i, (r, t) in enumerate(opened) if i not in used],
            "alert_precision": round(len(used) / len(opened), 3) if opened else 0.0,
            "alert_recall": round(matched / len(truth.alerts), 3) if truth.alerts else None,
            "time_to_alert_p95_s": round(float(np.percentile(delays, 95)), 2) if delays else None,
            "false_alerts_per_hour": round(false / (duration_s / 3600.0), 2),
            "id_switches": id_switches(truth.frames, pred_tracks),
            **_interactions(truth, sink, pred_tracks, truth.fps),
            **_handovers(truth, sink, pred_tracks, truth.fps)}


class WristError:
    """Pose accuracy where it counts for shelf interactions: on each frame, for each true person (at least 90 %
    visible) whose box a posed detection overlaps (IoU >= 0.5), the distance of each estimated wrist to the true one
    (the sprite's, devtools.scenario) in units of the true box height; a posed person under the presence threshold
    counts as `missed`."""

    def __init__(self):
        from edge.pose.types import LANDMARK_NAMES

        self.idx = [LANDMARK_NAMES.index("left_wrist"), LANDMARK_NAMES.index("right_wrist")]
        self.err: list[float] = []
        self.missed = 0

    def add(self, true_frame, posed) -> None:
        from edge.core.detections import box_iou

        people = [p for p in true_frame.people if p.visible >= 0.9]
        sel = np.flatnonzero(posed.score > 0) if len(posed) else np.zeros(0, np.int64)  # the rows ShelfPose posed
        if not people or not len(sel):
            return
        iou = box_iou(np.array([p.box for p in people], np.float32), posed.xyxy[sel])
        for i, p in enumerate(people):
            j = int(iou[i].argmax())
            if iou[i, j] < 0.5:
                continue
            kp = posed.keypoints[sel[j]][self.idx]
            if (kp[:, 2] <= 0).all():
                self.missed += 1
                continue
            h = p.box[3] - p.box[1]
            self.err += [float(np.hypot(*(kp[k, :2] - p.wrists[k])) / h) for k in range(2)]

    def summary(self) -> dict:
        """Median and p95 of the wrist errors (None when no wrist was scored), their count, the missed people."""
        a = np.asarray(self.err)
        return {"shelf_wrist_err_median": round(float(np.median(a)), 4) if len(a) else None,
                "shelf_wrist_err_p95": round(float(np.percentile(a, 95)), 4) if len(a) else None,
                "shelf_wrists": len(self.err), "shelf_pose_missed": self.missed}


def _compare(truth, sink, pred_tracks, alt: ShelfPose, main: ShelfPose, wrists: WristError) -> dict:
    """A landmark model run beside the device's on the same boxes: its shelf interactions, and its pose time per
    posed frame against the device model's on the same frames (`pose_ms_ratio` = the device model's median / its)."""
    info = alt.session.info
    ratio = float(np.median(main.ms) / np.median(alt.ms)) if alt.ms and main.ms else None
    return {"model": f"{info.backend}/{info.precision}", **_interactions(truth, sink, pred_tracks, truth.fps),
            "pose_crops": alt.crops, **wrists.summary(), **_pct(alt.ms, "pose_ms_per_posed_frame"),
            "pose_ms_ratio": None if ratio is None else round(ratio, 2)}


def _pct(ms: list[float], prefix: str) -> dict:
    a = np.asarray(ms or [0.0])
    return {f"{prefix}_p{q}": round(float(np.percentile(a, q)), 2) for q in (50, 95, 99)}


def run(args) -> int:
    import os

    from devtools import scenario, scenario_truth
    from devtools.naive_tracker import NaiveTracker
    from edge.app.behaviour import attach_keypoints
    from edge.core.frames import Frame
    from models.zoo import ModelZoo

    check_args(args)
    cfg = device_config(args.detector, args.backend, args.threads, args.landmarks[0], args.verify_interval,
                        args.detector_precision)
    sc = scenario.build(cycles=args.cycles)
    log.info("scene: %d frames (%.0f s at %.0f FPS), %d actors", sc.n_frames, sc.duration_s, sc.fps, len(sc.actors))
    truth = scenario_truth.compute(sc, RULES)
    detect, det_name, models, close = _make_detector(cfg, args.detector)
    # the person detector's boxes carry no keypoints: pose on the people at the shelves (pose detections have them)
    zoo, shelves = ModelZoo(cfg.models.cache_dir or None), [s.polygon for s in cfg.analytics.shelves]
    pose = ShelfPose(cfg, zoo, shelves) if args.detector == "people" else None
    # other landmark models beside the device's, on the same boxes: their own shelf pose and analytics
    # a candidate's file runs on the backend the device's model got, so their times compare
    same = {"backend": pose.session.info.backend} if pose is not None else {}
    alts = {n: ShelfPose(cfg, zoo, shelves, ref=cfg.models.pose_landmarks.model_copy(
        update={"name": n, **(same if is_model_file(n) else {})})) for n in args.landmarks[1:]}
    alt_stages = {n: _stage(cfg) for n in alts}
    alt_tracks: dict[str, list] = {n: [] for n in alts}
    wrists = {n: WristError() for n in [None, *alts]}
    if pose is not None:
        info = pose.session.info
        models[cfg.models.pose_landmarks.name] = f"{info.backend}/{info.precision}"
        det_name += f" + {cfg.models.pose_landmarks.name}/{info.backend}/{info.precision} on shelf crops"
    # side by side on the same detections: ours, ours on boxes only (no appearance cue), the naive tracker
    stages = {"ours": _stage(cfg), "boxes_only": _stage(cfg, appearance_weight=0.0), "naive": _stage(cfg, True)}
    for st, _ in stages.values():
        st.models = models
    naive_tracker = NaiveTracker()
    start_wall = 1_790_000_000.0
    ms, det_ms, queue = [], [], {k: [] for k in stages}
    stage_ms: dict[str, list[float]] = {k: [] for k in stages}
    tracks: dict[str, list] = {k: [] for k in stages}
    load0 = os.getloadavg()
    t_run = time.perf_counter()
    try:
        for img, tf in sc.frames():
            frame = Frame(img, tf.index + 1, time.monotonic(), start_wall + tf.t, "scenario", t_media=tf.t)
            t0 = time.perf_counter()
            dets = detect(frame)
            det_ms.append((time.perf_counter() - t0) * 1e3)
            alt_s = 0.0  # time spent on the compared models and their analytics: not the device's frame
            if pose is not None:
                # the device's model and the compared ones on the same boxes, in alternating order (fair timing)
                order = [None, *alts] if tf.index % 2 == 0 else [*alts, None]
                posed = {}
                for n in order:
                    t1 = time.perf_counter()
                    posed[n] = (pose if n is None else alts[n])(frame, dets)
                    alt_s += 0.0 if n is None else time.perf_counter() - t1
                t1 = time.perf_counter()
                for n, w in wrists.items():
                    w.add(tf, posed[n])
                for n, (st, _) in alt_stages.items():
                    st.update(frame, attach_keypoints(dets, posed[n]))
                    tk = st.analytics.tracked
                    alt_tracks[n].append((tk.xyxy.copy(), tk.tracker_id.copy()))
                alt_s += time.perf_counter() - t1
                dets = attach_keypoints(dets, posed[None])
            for name, (st, _) in stages.items():  # the same order every frame: ours first
                t1 = time.perf_counter()
                st.update(frame, naive_tracker.update(dets, frame.t) if name == "naive" else dets)
                stage_ms[name].append((time.perf_counter() - t1) * 1e3)
                queue[name].append(st.analytics.queues["checkout"].length)
                tk = st.analytics.tracked
                tracks[name].append((tk.xyxy.copy(), tk.tracker_id.copy()))
            # the device's frame: detection, shelf pose, our analytics and alerts
            ms.append((time.perf_counter() - t0 - alt_s) * 1e3 - stage_ms["boxes_only"][-1] - stage_ms["naive"][-1])
    finally:
        close()
        for p in ([pose] if pose is not None else []) + list(alts.values()):
            p.close()
    wall = time.perf_counter() - t_run
    res = {k: _score(truth, sink, queue[k], tracks[k], sc.duration_s) for k, (_, sink) in stages.items()}
    a = np.asarray(ms)
    out = {"bench": "behaviour", "detector": det_name, "frames": len(ms), "scene_s": sc.duration_s,
           "scene_fps": sc.fps, "cycles": args.cycles, "tracker": TRACKER,
           **res["ours"],
           "fps": round(len(ms) / (a.sum() / 1e3), 2), **_pct(ms, "ms"), **_pct(det_ms, "detect_ms"),
           "pose_crops": pose.crops if pose is not None else 0, "pose_frames": len(pose.ms) if pose else 0,
           **_pct(pose.ms if pose else [], "pose_ms_per_posed_frame"),
           **_pct(stage_ms["ours"], "analytics_ms"), **_pct(stage_ms["boxes_only"], "boxes_only_analytics_ms"),
           "boxes_only": res["boxes_only"], "naive": res["naive"],
           **(wrists[None].summary() if pose is not None else {}),
           "landmarks_compare": {n: _compare(truth, alt_stages[n][1], alt_tracks[n], sp, pose, wrists[n])
                                 for n, sp in alts.items()},
           "targets": {"alert_precision": ">= 0.95", "alert_recall": ">= 0.95", "footfall_abs_err_pct": "<= 5",
                       "time_to_alert_p95_s": "<= 5", "fps": ">= 10"},
           "wall_s": round(wall, 1), "load_avg_1m": {"start": round(load0[0], 2), "end": round(os.getloadavg()[0], 2)},
           "cpu_count": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
           "command": f"edge bench behaviour --cycles {args.cycles} --detector {args.detector}"
                      + (f" --landmarks {' '.join(args.landmarks)}" if args.landmarks != [LANDMARKS] else "")
                      + (f" --verify-interval {args.verify_interval}" if args.verify_interval else "")
                      + (f" --detector-precision {args.detector_precision}"
                         if args.detector_precision != "default" else "")}
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0
