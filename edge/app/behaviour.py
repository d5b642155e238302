"""Shopper behaviour for one stream: person detections → tracker + analytics → alert engine.

Application glue: it picks where detections come from (the far-range person detector when one is configured,
else the pose results), feeds the analytics objects on the stream clock, turns their current values into the
alert engine's readings (with evidence: track ids, durations, the models that produced them) and exposes live
counts for the staff page.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from edge.alerts import AlertEngine, Reading
from edge.analytics.composer import Analytics
from edge.analytics.pose_adapter import detections_from_pose
from edge.app.config import alert_state_path
from edge.core.detections import Detections
from edge.core.events import EventSink
from edge.core.frames import Frame

log = logging.getLogger(__name__)

Detector = Callable[[Frame], Detections]


class BehaviourStage:
    """`process(frame, pose_result)` once per frame; `engine` holds the alerts, `live()` the counts."""

    def __init__(self, analytics: Analytics, engine: AlertEngine, *, detector: Detector | None = None,
                 models: dict[str, str] | None = None):
        self.analytics, self.engine, self.detector = analytics, engine, detector
        self.models = dict(models or {})  # model -> version/backend, carried as evidence in every alert
        self._lock = threading.Lock()  # the staff page reads live() from the HTTP threads
        self._last: tuple[float, float, str] | None = None  # the last frame's t, t_wall and clock
        self._warned_blind = False
        engine.on_ack.append(self._facing_acked)

    @classmethod
    def from_config(cls, cfg, sink: EventSink, *, source: str, frame_size: tuple[int, int],
                    detector: Detector | None = None, models: dict[str, str] | None = None,
                    engine: AlertEngine | None = None) -> BehaviourStage:
        """From an EdgeConfig's [analytics] and [alerts] sections (rule keys were checked when it was loaded);
        `engine`: the [alerts] engine already made (the runtime opens it before the models load), else a new one."""
        analytics = Analytics.from_config(cfg.analytics, sink, source=source, frame_size=frame_size)
        return cls(analytics, engine or open_alert_engine(cfg, cfg.alerts, sink), detector=detector, models=models)

    def process(self, frame: Frame, pose_result=None) -> None:
        """Analytics and alerts for one frame: detections from the person detector (with the keypoints of the
        people pose also found, for shelf interactions), else from the pose result; with neither, shelf facings
        still get the frame (with no detections) and keep their references in memory only (nothing masks people)."""
        if self.detector is not None:
            dets = self.detector(frame)
            if pose_result is not None and pose_result.people:
                dets = attach_keypoints(dets, detections_from_pose(pose_result))
            self.update(frame, dets)
        elif pose_result is not None:
            self.update(frame, detections_from_pose(pose_result))
        elif self.analytics.planograms:  # shelf facings still judge the image; motion alone gates shoppers
            if not self._warned_blind:
                log.warning("shelf facings run without a person detector or pose: shoppers in front of a facing are "
                            "only noticed while they move (set [models.person_detector] or enable [pose])")
                for p in self.analytics.planograms.values():  # nobody is masked: nothing may be written
                    p.keep_references_in_memory("no person detector or pose")
                self._warned_blind = True
            self.update(frame, Detections.empty(tracked=True))

    def update(self, frame: Frame, dets: Detections) -> None:
        """Analytics and alerts for one frame's detections (tracked here unless they carry tracker ids)."""
        with self._lock:
            self.analytics.update(dets, frame.t, frame.t_wall, frame_seq=frame.seq, clock=frame.clock,
                                  image=frame.image)
            self._last = (frame.t, frame.t_wall, frame.clock)
            values = self.values(frame.t)
        self.engine.update(values, frame.t, frame.t_wall)

    def values(self, t: float) -> dict:
        """(metric, key) -> Reading for every analytics object an alert rule can name."""
        a, models, out = self.analytics, self.models, {}
        for name, q in a.queues.items():
            ids = tuple(sorted(q.zone.inside))
            out[("queue_length", name)] = Reading(q.length, track_ids=ids, models=models)
            out[("queue_wait", name)] = Reading(q.wait_estimate_s, track_ids=ids, models=models,
                                                detail={"service_rate_per_min": q.service_rate_per_min})
        for name, z in a.zones.items():
            dwell = {tid: round(z.dwell_of(tid, t) or 0.0, 2) for tid in z.inside}
            out[("occupancy", name)] = Reading(z.count, track_ids=tuple(sorted(z.inside)), models=models)
            out[("dwell", name)] = Reading(max(dwell.values(), default=0.0), track_ids=tuple(sorted(dwell)),
                                           durations_s=dwell, models=models)
        for name, lo in a.loitering.items():
            dwell = {tid: round(lo.zone.dwell_of(tid, t) or 0.0, 2) for tid in lo.loiterers}
            out[("loitering", name)] = Reading(lo.count > 0, track_ids=tuple(sorted(lo.loiterers)),
                                               durations_s=dwell, models=models, detail={"zone": lo.zone.name})
        for name, k in a.kiosk_help.items():
            waiting = {tid: round(s, 2) for tid, s in k.waiting(t).items()}
            out[("help_requested", name)] = Reading(k.requested, track_ids=tuple(sorted(waiting)),
                                                    durations_s=waiting, models=models)
        for fid, f in a.facings.items():  # unknown (occluded long, camera moved, no reference) is no data
            out[("facing_empty", fid)] = None if f.needs_action is None else Reading(
                f.needs_action, detail={"sku": f.sku, "state": f.state, "fill": (f.cues or {}).get("fill")})
        for cam, p in a.planograms.items():
            al = p.alignment
            out[("camera_moved", cam)] = Reading(p.camera_moved, detail={
                "reason": al.reason, "shift_px": al.shift_px, "rotation_deg": al.rotation_deg})
        camera = {"camera": a.source}  # which stream saw it: with several cameras, evidence names the camera
        return {k: r if not isinstance(r, Reading) else
                Reading(r.value, track_ids=r.track_ids, durations_s=r.durations_s, models=r.models,
                        detail={**camera, **r.detail}) for k, r in out.items()}

    def retake_reference(self, facing: str | None = None, *, by: str = "", via: str = "page") -> list[str]:
        """Retake the shelf reference of one facing (None: every facing); the staff page's button."""
        return self.analytics.retake_reference(facing, by=by, via=via)

    def _facing_acked(self, alert: dict) -> None:
        """An acknowledged facing_empty alert retakes that facing's reference once it no longer looks empty."""
        if alert.get("metric") == "facing_empty" and alert.get("key") in self.analytics.facings:
            self.analytics.retake_reference(alert["key"], when="restocked", by=alert.get("acked_by") or "",
                                            via="ack")

    def live(self) -> dict:
        """Current counts for the staff page: people per zone, line totals, queue length and wait."""
        with self._lock:
            a = self.analytics
            return {"zones": {n: z.count for n, z in a.zones.items()},
                    "lines": {n: dict(c.counts) for n, c in a.lines.items()},
                    "queues": {n: {"length": q.length, "wait_s": None if q.wait_estimate_s is None
                                   else round(q.wait_estimate_s, 1)} for n, q in a.queues.items()},
                    "tracks": 0 if a.tracked is None else int((a.tracked.tracker_id >= 0).sum()),
                    **({"facings": {fid: f.state for fid, f in a.facings.items()}} if a.facings else {})}

    def close(self) -> None:
        """At shutdown: emit the partial heatmap periods and end the open zone visits (Analytics.flush)."""
        with self._lock:
            if self._last is not None:
                t, t_wall, clock = self._last
                self.analytics.flush(t, t_wall, clock=clock)


def open_alert_engine(cfg, alerts, sink: EventSink, camera: str | None = None) -> AlertEngine:
    """The alert engine of `alerts` (the main `[alerts]`, or `[[cameras]]` id `camera`'s), restored from its state
    file (alert_state_path)."""
    return AlertEngine(alerts, sink, state_path=alert_state_path(cfg, alerts, camera))


def attach_keypoints(people: Detections, posed: Detections, min_iou: float = 0.3) -> Detections:
    """The person detector's boxes with the keypoints of the pose person each overlaps best (IoU >= min_iou);
    people without a pose match get zero-score keypoints. Boxes and scores stay the detector's."""
    import numpy as np

    from edge.core.detections import box_iou

    if len(people) == 0 or len(posed) == 0 or posed.keypoints is None:
        return people
    kp = np.zeros((len(people), posed.keypoints.shape[1], 3), np.float32)
    iou = box_iou(people.xyxy, posed.xyxy)
    taken: set[int] = set()
    for flat in np.argsort(-iou, axis=None):
        i, j = np.unravel_index(flat, iou.shape)
        if iou[i, j] < min_iou:
            break
        if j in taken or kp[i].any():
            continue
        kp[i] = posed.keypoints[j]
        taken.add(int(j))
    return Detections(people.xyxy, people.score, people.class_id, kp, people.tracker_id, posed.keypoint_names)
