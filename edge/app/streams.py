"""Many cameras in one process: each `[[cameras]]` entry is a stream with its own source, analytics and alert
rules; one worker runs the shared person detector for all of them.

Per stream: a latest-frame reader (live sources drop stale frames; a bounded queue of one), a processing rate cap
(`fps`), a latency budget, and motion gating (detection is skipped on frames that barely differ from the last
detected one, at most `detect_every - 1` times in a row; tracks carry on with the last detections). Frames are
served earliest deadline first (capture time + budget), so a slow stream cannot starve the others. A stream whose
source fails reconnects with backoff on its own reader thread and never stops the others. `yield_to()` (e.g. the
try-on mirror falling behind its frame rate) makes the worker pause analytics: the mirror's frames go first.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge.alerts import AlertEngine
from edge.app.behaviour import BehaviourStage
from edge.core.detections import Detections
from edge.core.frames import Frame

log = logging.getLogger(__name__)


@dataclass
class StreamStats:
    processed: int = 0
    detected: int = 0
    gated: int = 0  # frames whose detection motion gating skipped
    errors: int = 0
    latency_ms: deque = field(default_factory=lambda: deque(maxlen=600))
    done_t: deque = field(default_factory=lambda: deque(maxlen=600))  # monotonic times of processed frames

    def fps(self, window_s: float = 5.0) -> float:
        now = time.monotonic()
        recent = [t for t in self.done_t if now - t <= window_s]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)

    def latency_p(self, q: float) -> float | None:
        return round(float(np.percentile(self.latency_ms, q)), 1) if self.latency_ms else None


class Stream:
    """One camera: reader, rate cap, motion gate, behaviour stage."""

    def __init__(self, cam, reader, behaviour: BehaviourStage):
        self.cam, self.id, self.reader, self.behaviour = cam, cam.id, reader, behaviour
        self.stats = StreamStats()
        self.pending: Frame | None = None
        self.next_due = 0.0
        self._gray: np.ndarray | None = None  # small grey image of the last detected frame
        self._since_detect = 0
        self._last: Detections | None = None

    @property
    def period(self) -> float:
        return 1.0 / self.cam.fps

    def deadline(self) -> float:
        return self.pending.t_capture + self.cam.latency_budget_ms / 1e3

    def needs_detection(self, frame: Frame) -> bool:
        """Motion gate: False when the frame barely differs from the last detected one (and the gate allows)."""
        small = cv2.cvtColor(cv2.resize(frame.image, (80, 60), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
        small = cv2.GaussianBlur(small, (3, 3), 0)
        if (not self.cam.motion_gating or self._gray is None or self._last is None
                or self._since_detect + 1 >= self.cam.detect_every):
            self._gray = small
            return True
        moved = float(np.abs(small.astype(np.int16) - self._gray.astype(np.int16)).mean())
        if moved >= self.cam.motion_threshold:
            self._gray = small
            return True
        return False

    def detections(self, frame: Frame, detect: Callable[[Frame], Detections]) -> Detections:
        if self.needs_detection(frame):
            self._last, self._since_detect = detect(frame), 0
            self.stats.detected += 1
        else:
            self._since_detect += 1
            self.stats.gated += 1
        return self._last

    def health(self) -> dict:
        s, r = self.stats, self.reader
        return {"source": self.cam.source.type + ":" + (self.cam.source.uri or "-"),
                "state": "error" if r.error else ("ended" if r.ended else "ok"), "error": r.error,
                "fps": round(s.fps(), 2), "target_fps": self.cam.fps, "processed": s.processed,
                "detected": s.detected, "gated": s.gated, "dropped": r.dropped, "errors": s.errors,
                "latency_ms_p50": s.latency_p(50), "latency_ms_p95": s.latency_p(95)}


class StreamSet:
    """The extra cameras of a device, served by one worker thread over a shared detector."""

    def __init__(self, streams: list[Stream], detect: Callable[[Frame], Detections], *,
                 yield_to: Callable[[], bool] | None = None):
        self.streams, self.detect, self.yield_to = streams, detect, yield_to
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="streams", daemon=True)

    @classmethod
    def from_config(cls, cfg, detect: Callable[[Frame], Detections], sink, *, models: dict[str, str] | None = None,
                    yield_to: Callable[[], bool] | None = None) -> StreamSet:
        """One Stream per `[[cameras]]` entry of an EdgeConfig (readers are created, not started)."""
        from edge.analytics.composer import Analytics
        from edge.sources import LatestFrameReader, make_source

        streams = []
        for cam in cfg.cameras:
            src = make_source(cam.source)
            src.name = cam.id
            live = cam.source.type in ("camera", "rtsp") or cam.source.realtime
            reader = LatestFrameReader(src, cam.source.reconnect_s, drop=live)
            analytics = Analytics.from_config(cam.analytics, sink, source=cam.id,
                                              frame_size=(cam.source.width, cam.source.height))
            streams.append(Stream(cam, reader, BehaviourStage(analytics, AlertEngine(cam.alerts, sink),
                                                              models=models)))
        return cls(streams, detect, yield_to=yield_to)

    @property
    def engines(self) -> list[AlertEngine]:
        return [s.behaviour.engine for s in self.streams]

    def start(self) -> StreamSet:
        for s in self.streams:
            s.reader.start()
        self._thread.start()
        log.info("streams: %s", ", ".join(f"{s.id} ({s.cam.fps:g} FPS)" for s in self.streams))
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for s in self.streams:
            s.reader.stop()
            s.behaviour.close()

    def health(self) -> dict:
        return {s.id: s.health() for s in self.streams}

    def _loop(self) -> None:
        from edge.core.metrics import STAGE_MS, STREAM_FPS, STREAM_LATENCY

        while not self._stop.is_set():
            now = time.monotonic()
            due = []
            for s in self.streams:
                if now < s.next_due:
                    continue  # not due: the reader keeps only its newest frame meanwhile (no stale backlog)
                if s.pending is None:
                    s.pending = s.reader.get(timeout=0)
                if s.pending is not None:
                    due.append(s)
            if not due or (self.yield_to is not None and self.yield_to()):
                self._stop.wait(0.005)
                continue
            s = min(due, key=Stream.deadline)  # earliest deadline first
            frame, s.pending = s.pending, None
            s.next_due = max(s.next_due + s.period, now) if now - s.next_due < s.period else now + s.period
            t0 = time.perf_counter()
            try:
                s.behaviour.update(frame, s.detections(frame, self.detect))
            except Exception:  # noqa: BLE001 - one stream's bad frame must not stop the others
                s.stats.errors += 1
                log.exception("stream %s: frame %d failed", s.id, frame.seq)
                continue
            STAGE_MS.labels("streams").observe((time.perf_counter() - t0) * 1e3)
            lat = (time.monotonic() - frame.t_capture) * 1e3
            s.stats.processed += 1
            s.stats.latency_ms.append(lat)
            s.stats.done_t.append(time.monotonic())
            STREAM_LATENCY.labels(s.id).observe(lat)
            STREAM_FPS.labels(s.id).set(s.stats.fps())


class EngineGroup:
    """Several alert engines (one per camera) behind the one engine interface the staff page and the
    `ack_alert` handler use; an alert id (or event id) is looked up in each."""

    def __init__(self, engines: list[AlertEngine]):
        self.engines = [e for e in engines if e is not None]

    def now_wall(self) -> float:
        return max((e.now_wall() for e in self.engines), default=time.time())

    def active(self) -> list[dict]:
        out = [a for e in self.engines for a in e.active()]
        return sorted(out, key=lambda a: (a["state"] != "open", a.get("opened_at") or 0.0))

    def recent_resolved(self, n: int = 20) -> list[dict]:
        out = [a for e in self.engines for a in e.recent_resolved(n)]
        return sorted(out, key=lambda a: -(a.get("resolved_at") or 0.0))[:n]

    def _owner(self, alert_id: str) -> AlertEngine:
        from edge.alerts import UnknownAlert

        for e in self.engines:
            try:
                e.get(alert_id)
                return e
            except UnknownAlert:
                continue
        raise UnknownAlert(f"no alert {alert_id!r}")

    def get(self, alert_id: str):
        return self._owner(alert_id).get(alert_id)

    def ack(self, alert_id: str, *args, **kw):
        return self._owner(alert_id).ack(alert_id, *args, **kw)

    def resolve(self, alert_id: str, *args, **kw):
        return self._owner(alert_id).resolve(alert_id, *args, **kw)
