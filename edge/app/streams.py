"""Many cameras in one process: each `[[cameras]]` entry is a stream with its own source, analytics and alert
rules; one worker runs the shared person detector for all of them.

Per stream: a latest-frame reader (live sources drop stale frames; a bounded queue of one), a processing rate cap
(`fps`), a latency budget, and motion gating (detection is skipped on frames that barely differ from the last
detected one, at most `detect_every - 1` times in a row; tracks carry on with the last detections). A stream whose
source fails reconnects with backoff on its own reader thread and never stops the others.

Scheduling (one worker): due frames are served critical streams first, then earliest deadline first (capture time
+ latency budget), so a slow stream cannot starve the others. Frames of different streams that need detection at
the same time run as one batch (`detect_batch`, up to `max_batch` frames): the batch grows with the backlog (under
load more frames are due at once, and once the worker is busy 80 % of the time the streams' due times are put on
a shared grid so that they fall due together) but only while its estimated finish time (learned per batch size)
stays within the deadline of every frame in it that can still make it; the others wait for the next batch.

Mixed criticality: a critical stream (`Stream(critical=True)`) is served first and never throttled; a batch
without a critical frame must end before the next critical frame is due. When a critical pipeline falls below its
frame rate (a critical stream of the set: its fps, or what its source delivers where that is less; or
`yield_to()`: e.g. the try-on mirror of the main pipeline on its own thread), the analytics are throttled: the
share of time the worker may spend on them (`throttle`, 1 = no limit) halves every `control_s` while the critical
one is behind (down to `throttle_floor`) and, once it has kept up for 2 s, grows back by 0.05 per `control_s`.
While throttled, the worker rests after each analytics frame so that its work stays within that share, runs
analytics frames one at a time (short bursts) and does not start one that would still run when a critical frame
falls due. The analytics streams then run below their `fps` (their measured `fps` and `throttle` are in /healthz);
the mirror keeps its rate.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge.alerts import AlertEngine
from edge.alerts.engine import alert_order
from edge.app.behaviour import BehaviourStage, open_alert_engine
from edge.core.detections import Detections
from edge.core.frames import Frame, frame_rate

log = logging.getLogger(__name__)

# busy share of the worker from which due times are aligned for batching: below it frames are served as they come
# (lowest latency); near saturation batches buy throughput (edge bench streams: docs/BENCHMARKS.md)
ALIGN_LOAD = 0.8
STOP_S = 5.0  # StreamSet.stop(): the worker and every reader are joined against this one deadline


@dataclass
class StreamStats:
    processed: int = 0
    detected: int = 0
    gated: int = 0  # frames whose detection motion gating skipped
    errors: int = 0
    late: int = 0  # frames finished after their deadline (capture + latency budget)
    batched: int = 0  # frames detected in a batch of more than one frame
    latency_ms: deque = field(default_factory=lambda: deque(maxlen=600))
    done_t: deque = field(default_factory=lambda: deque(maxlen=600))  # monotonic times of processed frames

    def fps(self, window_s: float = 5.0) -> float:
        """Processed frames per second over the last `window_s` s; safe from any thread (/healthz, the supervisor):
        the deque the worker appends to is copied first (list() copies it at once; iterating it would raise if an
        append came in between)."""
        return frame_rate(list(self.done_t), window_s, time.monotonic())

    def latency_p(self, q: float) -> float | None:
        return round(float(np.percentile(self.latency_ms, q)), 1) if self.latency_ms else None

    def reset(self) -> None:
        """Forget the counters and samples (e.g. after a warm-up)."""
        self.processed = self.detected = self.gated = self.errors = self.late = self.batched = 0
        self.latency_ms.clear()
        self.done_t.clear()


class Stream:
    """One camera: reader, rate cap, motion gate, behaviour stage. critical: served first, never throttled."""

    def __init__(self, cam, reader, behaviour: BehaviourStage, *, critical: bool = False):
        self.cam, self.id, self.reader, self.behaviour = cam, cam.id, reader, behaviour
        self.critical = critical
        self.stats = StreamStats()
        self.pending: Frame | None = None
        self.pending_detect = True  # the motion gate's verdict on `pending` (taken once, when it is fetched)
        self.next_due = 0.0
        self.started = 0.0  # monotonic time the worker first saw this stream
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

    def detected_with(self, dets: Detections) -> None:
        self._last, self._since_detect = dets, 0
        self.stats.detected += 1

    def gated_frame(self) -> Detections | None:
        self._since_detect += 1
        self.stats.gated += 1
        return self._last

    def health(self, throttle: float = 1.0) -> dict:
        s, r = self.stats, self.reader
        throttle = 1.0 if self.critical else throttle
        return {"source": self.cam.source.type + ":" + (self.cam.source.uri or "-"),
                "state": "error" if r.error else ("ended" if r.ended else "ok"), "error": r.error,
                "critical": self.critical, "fps": round(s.fps(), 2), "target_fps": self.cam.fps,
                "throttle": round(throttle, 3),
                "processed": s.processed, "detected": s.detected, "gated": s.gated, "batched": s.batched,
                "late": s.late, "dropped": r.dropped, "errors": s.errors, "latency_ms_p50": s.latency_p(50),
                "latency_ms_p95": s.latency_p(95), "latency_ms_p99": s.latency_p(99)}


class BatchCost:
    """Learned time (s) from a batch's start to its last frame done, per batch size (EWMA). An unseen size is
    estimated 3 % cheaper per frame than the best smaller size seen, so that it gets tried once."""

    def __init__(self, alpha: float = 0.2):
        self.alpha, self.s = alpha, {}

    def observe(self, n: int, seconds: float) -> None:
        self.s[n] = seconds if n not in self.s else (1 - self.alpha) * self.s[n] + self.alpha * seconds

    def estimate(self, n: int) -> float | None:
        if n in self.s:
            return self.s[n]
        below = [self.s[k] / k for k in self.s if k < n]
        return 0.97 * n * min(below) if below else None


def delivered_rate(fps: float, reader) -> float:
    """The frame rate a critical pipeline can keep: its `fps`, or what its camera delivers where that is less (a
    camera slower at night: throttling others does not make it faster); a reader without drops (a file played as
    fast as it is consumed) delivers what is taken, so there it is `fps`."""
    if reader is not None and reader.drop:
        return min(fps, reader.fps(window_s=2.0))
    return fps


class StreamSet:
    """The extra cameras of a device, served by one worker thread over a shared detector (see the module doc).

    detect(frame) -> Detections; detect_batch(frames) -> [Detections] (None: no batching); max_batch: frames per
    batch (1: no batching); yield_to() -> True while a critical pipeline outside the set is below its frame rate;
    align_load: busy share from which due times are aligned for batching (0: always)."""

    def __init__(self, streams: list[Stream], detect: Callable[[Frame], Detections], *,
                 detect_batch: Callable[[list[Frame]], list[Detections]] | None = None, max_batch: int = 8,
                 yield_to: Callable[[], bool] | None = None, throttle_floor: float = 0.05, control_s: float = 0.5,
                 align_load: float = ALIGN_LOAD):
        if not 0 < throttle_floor <= 1:
            raise ValueError(f"throttle_floor {throttle_floor}: must be in (0, 1] (throttled analytics still run)")
        self.streams, self.detect, self.yield_to = streams, detect, yield_to
        self.detect_batch = detect_batch
        self.max_batch = max(1, int(max_batch)) if detect_batch is not None else 1
        self.throttle_floor, self.control_s, self.align_load = throttle_floor, control_s, align_load
        self.duty = 1.0  # share of the worker's time analytics may use (mixed criticality; 1 = no limit)
        self.min_duty = 1.0
        self.throttled_s = 0.0  # time spent throttled (duty < 1)
        self._idle_until = 0.0  # while throttled: no analytics work before this time
        self._ok_since = 0.0  # since when no critical pipeline has been behind
        self.load = 0.0  # busy share of the worker (EWMA over control periods)
        self._busy_mark = 0.0
        self.batch_sizes: Counter = Counter()  # detection batches by size (frames)
        self.cost = BatchCost()
        self.busy_s = 0.0  # worker time spent processing frames
        self._next_control = self._last_control = 0.0
        self._epoch = time.monotonic()  # origin of the due-time grid (batching)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="streams", daemon=True)
        self._reading: list = []  # readers started (stopped by stop())

    @classmethod
    def from_config(cls, cfg, detect: Callable[[Frame], Detections], sink, *, models: dict[str, str] | None = None,
                    yield_to: Callable[[], bool] | None = None,
                    detect_batch: Callable[[list[Frame]], list[Detections]] | None = None,
                    max_batch: int = 8, engines: dict[str, AlertEngine] | None = None) -> StreamSet:
        """One Stream per `[[cameras]]` entry of an EdgeConfig (readers are created, not started); `engines`:
        camera id -> its alert engine already made (the runtime opens them before the models load)."""
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
            engine = (engines or {}).get(cam.id) or open_alert_engine(cfg, cam.alerts, sink, cam.id)
            streams.append(Stream(cam, reader, BehaviourStage(analytics, engine, models=models),
                                  critical=cam.critical))
        return cls(streams, detect, yield_to=yield_to, detect_batch=detect_batch, max_batch=max_batch)

    @property
    def engines(self) -> list[AlertEngine]:
        return [s.behaviour.engine for s in self.streams]

    def start(self) -> StreamSet:
        for s in self.streams:
            s.reader.start()
            self._reading.append(s.reader)
        self._epoch = time.monotonic()
        self._thread.start()
        log.info("streams: %s; batches of up to %d frames", ", ".join(
            f"{s.id} ({s.cam.fps:g} FPS{', critical' if s.critical else ''})" for s in self.streams), self.max_batch)
        return self

    def stop(self) -> None:
        """Stop the worker and the readers that were started (a start that failed after the set was built never
        started them), then close each stream's analytics. Every reader is asked to stop first, then all are joined
        against one deadline (STOP_S), so hung cameras do not add up."""
        self._stop.set()
        for r in self._reading:
            r.request_stop()
        deadline = time.monotonic() + STOP_S
        if self._thread.ident is not None:
            self._thread.join(timeout=max(0.0, deadline - time.monotonic()))
        for r in self._reading:
            r.join(deadline)
        self._reading.clear()
        for s in self.streams:
            s.behaviour.close()

    def health(self) -> dict:
        return {s.id: s.health(self.duty) for s in self.streams}

    def progress(self) -> dict[str, float | None]:
        """For the watchdog: stream -> monotonic time of its last processed frame (None: none yet); streams whose
        source ended are left out."""
        return {s.id: s.stats.done_t[-1] if s.stats.done_t else None for s in self.streams if not s.reader.ended}

    def lost(self) -> dict[str, str]:
        """For the watchdog: stream -> its reader's error, for the streams whose reader knows it lost its source and
        reconnects (not a hang)."""
        return {s.id: e for s in self.streams if (e := s.reader.lost())}

    def scheduler_stats(self) -> dict:
        """Batch sizes used (histogram), throttling and the learned batch cost, for benches and logs."""
        return {"max_batch": self.max_batch, "batch_sizes": {int(k): v for k, v in sorted(self.batch_sizes.items())},
                "throttle": round(self.duty, 3), "min_throttle": round(self.min_duty, 3),
                "throttled_s": round(self.throttled_s, 2), "busy_s": round(self.busy_s, 2), "load": round(self.load, 2),
                "batch_cost_ms": {int(k): round(v * 1e3, 1) for k, v in sorted(self.cost.s.items())}}

    def reset_stats(self) -> None:
        """Forget the per-stream and scheduler counters (the learned batch cost and throttle stay)."""
        now = time.monotonic()
        for s in self.streams:
            s.stats.reset()
            s.started = now if s.started else 0.0  # a critical stream gets its 2 s grace again
        self.batch_sizes.clear()
        self.busy_s = self.throttled_s = self._busy_mark = 0.0
        self.min_duty = self.duty

    # -- scheduling ----------------------------------------------------------------------------
    def _critical_behind(self, now: float) -> bool:
        """A critical pipeline is below 95 % of its frame rate (after 2 s of running, source healthy). A critical
        stream's rate is its fps, or what its source delivers where that is less (a camera slower at night, a stream
        that lowered its rate: throttling the analytics does not make it faster); a reader without drops (a file
        played as fast as it is consumed) delivers what is taken, so there it is the fps."""
        try:
            if self.yield_to is not None and self.yield_to():
                return True
        except Exception:  # noqa: BLE001 - a broken probe must not stop the worker: analytics stay unthrottled
            log.exception("streams: yield_to failed")
        for s in self.streams:
            if (s.critical and s.started and now - s.started >= 2.0 and not s.reader.error and not s.reader.ended
                    and s.stats.fps(window_s=2.0) < 0.95 * delivered_rate(s.cam.fps, s.reader)):
                return True
        return False

    def _control(self, now: float) -> None:
        """Mixed criticality: multiplicative decrease of the analytics' share of the worker while a critical
        pipeline is behind, slow additive increase once it has kept up for 2 s. Also refreshes each stream's
        edge_stream_fps, so a camera that stops delivering falls to 0 instead of keeping its last rate."""
        if now < self._next_control:
            return
        from edge.core.metrics import SOURCE_UP, STREAM_FPS

        for s in self.streams:
            STREAM_FPS.labels(s.id).set(s.stats.fps())
            SOURCE_UP.labels(s.id).set(0 if s.reader.error else 1)
        if self._last_control:
            self.throttled_s += now - self._last_control if self.duty < 1.0 else 0.0
            self.load = 0.5 * self.load + 0.5 * min(1.0, (self.busy_s - self._busy_mark) / (now - self._last_control))
        self._busy_mark = self.busy_s
        self._last_control, self._next_control = now, now + self.control_s
        old = self.duty
        if self._critical_behind(now):
            self.duty = max(self.throttle_floor, self.duty * 0.5)
            self._ok_since = 0.0
        elif not self._ok_since:
            self._ok_since = now
        elif now - self._ok_since >= 2.0:  # kept up for 2 s: give back a little at a time
            self.duty = min(1.0, round(self.duty + 0.05, 6))
        self.min_duty = min(self.min_duty, self.duty)
        if (old == 1.0) != (self.duty == 1.0):
            log.info("streams: %s", f"analytics throttled to {self.duty:.2f} of the worker: a critical pipeline is "
                     "behind" if self.duty < 1.0 else "analytics no longer throttled")

    def _due(self, now: float) -> list[Stream]:
        """Streams with a frame to process now: critical first, then earliest deadline first."""
        due = []
        for s in self.streams:
            if not s.started:
                s.started = now
            if now < s.next_due:
                continue  # not due: the reader keeps only its newest frame meanwhile (no stale backlog)
            if s.pending is None:
                s.pending = s.reader.get(timeout=0)
                if s.pending is not None:
                    try:
                        s.pending_detect = s.needs_detection(s.pending)
                    except Exception:  # noqa: BLE001 - one stream's bad frame must not stop the others
                        s.stats.errors += 1
                        log.exception("stream %s: frame %d skipped (motion gate failed)", s.id, s.pending.seq)
                        s.pending = None
            if s.pending is not None:
                due.append(s)
        due.sort(key=lambda s: (not s.critical, s.deadline()))
        return due

    def _take(self, s: Stream, now: float) -> Frame:
        """Take the stream's pending frame; its next frame is due one period later. With batching and a worker
        busy at least ALIGN_LOAD of the time, the due times sit on a grid of the period shared by every stream
        (multiples of it since the worker started): streams of the same rate fall due together and batch (less
        loaded, frames are served as they come, for the lowest latency). The rate cap holds either way."""
        frame, s.pending = s.pending, None
        period = s.period
        if self.max_batch > 1 and self.load >= self.align_load:
            s.next_due = self._epoch + (math.floor((now - self._epoch) / period) + 1) * period
        else:
            s.next_due = max(s.next_due + period, now) if now - s.next_due < period else now + period
        return frame

    def _reserved(self, now: float, due: list[Stream]) -> bool:
        """A critical stream's next frame is due (or expected: up to one period late) before a one-frame detection
        started now would end."""
        one = self.cost.estimate(1) or 0.0
        return any(c.critical and c not in due and now + one > c.next_due and now < c.next_due + c.period
                   for c in self.streams)

    def _batch(self, due: list[Stream], now: float) -> list[Stream]:
        """The head stream (it needs detection) and as many more due streams of its kind needing detection as fit
        (critical frames batch only with critical frames: an analytics frame riding along would delay the mirror):
        the batch's estimated finish stays within the deadline of every member that could still make it (a frame
        late even alone does not hold the others back: under overload, bigger batches clear the backlog) and, for
        an analytics batch, before the next critical frame is due (a batch is not pre-empted; a critical camera more
        than one period overdue is not expecting a frame: lost or ended)."""
        want = [s for s in due if s.pending_detect and s.critical == due[0].critical][:self.max_batch]
        one = self.cost.estimate(1)
        if one is None:
            return want[:1]

        def bound(s: Stream) -> float:
            return s.deadline() if now + one <= s.deadline() else math.inf

        tight = bound(want[0])
        if not want[0].critical:
            # critical frames still expected (at most a period overdue, as in _reserved): a critical camera unplugged
            # or ended keeps its old due time, which must not bound the other cameras' batches for as long as it is gone
            waiting = set(due)
            tight = min([tight] + [s.next_due for s in self.streams
                                   if s.critical and s not in waiting and now < s.next_due + s.period])
        fits = [1]
        for m in range(2, len(want) + 1):
            tight = min(tight, bound(want[m - 1]))
            if now + self.cost.estimate(m) > tight:
                break
            fits.append(m)
        # of the sizes that fit, the cheapest per frame (within 2 %, the smallest: a batch must pay for the wait it
        # puts on its first frames); uneven splits over the backend's infer streams (3 = 2 + 1) can cost more per
        # frame than a smaller even batch, and where batching does not pay at all, frames go one at a time
        per = {m: self.cost.estimate(m) / m for m in fits}
        return want[:min(m for m in fits if per[m] <= 1.02 * min(per.values()))]

    def _loop(self) -> None:
        from edge.core.metrics import STAGE_MS

        while not self._stop.is_set():
            now = time.monotonic()
            self._control(now)
            due = self._due(now)
            if not due:
                self._stop.wait(0.005)
                continue
            head = due[0]
            throttled = self.duty < 1.0 and not head.critical
            if throttled and (now < self._idle_until or (head.pending_detect and self._reserved(now, due))):
                self._stop.wait(0.002)  # resting within the analytics' share, or keeping room for a critical frame
                continue
            if not head.pending_detect:  # motion-gated: tracker only, cheap; serve it alone
                t0 = time.perf_counter()
                self._finish(head, self._take(head, now), head.gated_frame())
                self._rest(throttled, time.perf_counter() - t0)
                continue
            batch = self._batch(due, now) if self.max_batch > 1 and not throttled else [head]
            frames = [self._take(s, now) for s in batch]
            t0 = time.perf_counter()
            try:
                if len(frames) == 1:
                    dets = [self.detect(frames[0])]
                else:
                    dets = self.detect_batch(frames)
            except Exception:  # noqa: BLE001 - a failed detector call loses these frames, not the worker
                for s, f in zip(batch, frames):
                    s.stats.errors += 1
                log.exception("streams: detection of %d frame(s) failed (%s)", len(frames),
                              ", ".join(s.id for s in batch))
                self._rest(throttled, time.perf_counter() - t0)
                continue
            self.batch_sizes[len(frames)] += 1
            for s, f, d in zip(batch, frames, dets):
                s.detected_with(d)
                s.stats.batched += len(frames) > 1
                self._finish(s, f, d)
            took = time.perf_counter() - t0
            self.cost.observe(len(frames), took)
            self._rest(throttled, took)
            STAGE_MS.labels("streams").observe(took * 1e3 / len(frames))

    def _rest(self, throttled: bool, took: float) -> None:
        """Count the work; while throttled, no analytics work for long enough to keep it within `duty`."""
        self.busy_s += took
        if throttled:
            self._idle_until = time.monotonic() + took * (1.0 - self.duty) / self.duty

    def _finish(self, s: Stream, frame: Frame, dets: Detections | None) -> None:
        """Analytics and alerts of one frame, then its stream's counters."""
        from edge.core.metrics import STREAM_FPS, STREAM_LATENCY

        try:
            s.behaviour.update(frame, dets)
        except Exception:  # noqa: BLE001 - one stream's bad frame must not stop the others
            s.stats.errors += 1
            log.exception("stream %s: frame %d failed", s.id, frame.seq)
            return
        done = time.monotonic()
        lat = (done - frame.t_capture) * 1e3
        s.stats.processed += 1
        s.stats.late += lat > s.cam.latency_budget_ms
        s.stats.latency_ms.append(lat)
        s.stats.done_t.append(done)
        STREAM_LATENCY.labels(s.id).observe(lat)
        STREAM_FPS.labels(s.id).set(s.stats.fps())


class EngineGroup:
    """Several alert engines (one per camera) behind the one engine interface the staff page and the
    `ack_alert` handler use; an alert id (or event id) is looked up in each."""

    def __init__(self, engines: list[AlertEngine], config=None):
        """`config`: the device's main [alerts] (its timezone is the store's, for the staff page); default: the
        first engine's."""
        self.engines = [e for e in engines if e is not None]
        self.config = config if config is not None else self.engines[0].config if self.engines else None

    def now_wall(self) -> float:
        return max((e.now_wall() for e in self.engines), default=time.time())

    def active(self) -> list[dict]:
        """Open and acked alerts of every camera, in AlertEngine.active()'s order."""
        return sorted((a for e in self.engines for a in e.active()), key=alert_order)

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
        raise UnknownAlert(f"no alert {alert_id!r} on this device")

    def get(self, alert_id: str):
        return self._owner(alert_id).get(alert_id)

    def ack(self, alert_id: str, *args, **kw):
        return self._owner(alert_id).ack(alert_id, *args, **kw)

    def resolve(self, alert_id: str, *args, **kw):
        return self._owner(alert_id).resolve(alert_id, *args, **kw)
