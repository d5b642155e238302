"""The runtime's monitoring glue: input statistics and model metrics per frame, per-camera frame counts and the
system collector on /metrics (edge.core.monitoring does the measuring; this module knows the Runtime)."""
from __future__ import annotations

import logging
from pathlib import Path

from prometheus_client import REGISTRY

from edge.core.monitoring import (BaselineStore, InputMonitor, SystemCollector, instrument_session, observe_pose,
                                  observe_scores, stream_frames_family)

log = logging.getLogger(__name__)

MAIN = "main"  # stream label of the [source] camera; [[cameras]] use their id


def baseline_path(cfg) -> Path:
    """The input baseline lives beside the device's outbox (device state, not cache)."""
    return cfg.sync.resolved_outbox_path(cfg.device.id).parent / f"input-baseline-{cfg.device.id}.json"


class RuntimeMonitor:
    """Created by Runtime.run(); `observe_pose` (main camera, every frame) and `observe_detections` (the shared
    person detector, every camera) feed the model level; `collect()` serves the per-camera frame counts."""

    sample_every = 5  # input statistics of every 5th frame (~0.25 ms each at 640x480)
    baseline_samples = 300  # samples per stream in the install baseline (~50 s of a 30 FPS camera)

    def __init__(self, runtime):
        self.rt = runtime
        cfg = runtime.cfg
        self.models = (cfg.models.pose_detector.name, cfg.models.pose_landmarks.name)
        self.detector_name = cfg.models.person_detector.name if cfg.models.person_detector is not None else None
        self.baselines = BaselineStore(baseline_path(cfg))
        self.inputs: dict[str, InputMonitor] = {}
        self.sources: dict[str, str] = {}  # frame.source name -> stream label
        self.system = SystemCollector(disk_path=baseline_path(cfg).parent)
        self._registered = False

    def start(self, main_source: str | None = None) -> RuntimeMonitor:
        """Register the collectors and time the models already open (before their first run)."""
        if main_source:
            self.sources[main_source] = MAIN
        stage = self.rt.stage
        if stage is not None and stage.pose is not None:
            for session, name in zip(stage.pose.sessions, self.models):
                instrument_session(session, name)
        people = getattr(self.rt, "_people", None)  # the shared person detector, when configured
        if people is not None and self.detector_name:
            instrument_session(people.session, self.detector_name)
        if self.rt.streams is not None:
            for s in self.rt.streams.streams:
                self.sources[s.reader.source.name] = s.id
        REGISTRY.register(self)
        self.system.register()
        self._registered = True
        return self

    def close(self) -> None:
        if self._registered:
            REGISTRY.unregister(self)
            self.system.unregister()
            self._registered = False

    def _input(self, stream: str) -> InputMonitor:
        m = self.inputs.get(stream)
        if m is None:
            m = self.inputs[stream] = InputMonitor(stream, self.baselines, every=self.sample_every,
                                                   baseline_samples=self.baseline_samples)
        return m

    # -- per frame (pipeline threads) ---------------------------------------------------------------------------
    def observe_pose(self, frame, result, pose) -> None:
        """Main camera: pose sessions timed (again after a model swap), confidence, input statistics."""
        try:
            if pose is not None:
                for session, name in zip(pose.sessions, self.models):
                    instrument_session(session, name)
            if result is not None:
                observe_pose(result.people, self.models[1])
            self._input(MAIN).observe(frame.image, frame.seq, bool(result is not None and result.people))
        except Exception:  # noqa: BLE001 - monitoring must never stop a pipeline
            log.exception("monitoring failed on a frame")

    def observe_detections(self, frame, detections, session=None) -> None:
        """A person-detector result of any camera: detector latency and scores, that camera's input statistics
        (the main camera's frame counts once: pose observes it too)."""
        try:
            if session is not None and self.detector_name:
                instrument_session(session, self.detector_name)
            if self.detector_name:
                observe_scores(detections.score, self.detector_name)
            stream = self.sources.get(frame.source, frame.source)
            self._input(stream).observe(frame.image, frame.seq, len(detections.score) > 0)
        except Exception:  # noqa: BLE001
            log.exception("monitoring failed on a detection")

    # -- scrape -------------------------------------------------------------------------------------------------
    def frame_counts(self) -> dict[str, tuple[int, int, int]]:
        """{stream: (in, processed, dropped)}: the main camera (reader drops + the mirror's stale-frame drops) and
        each extra camera."""
        rt, out = self.rt, {}
        if rt.reader is not None:
            dropped = rt.reader.dropped
            if getattr(rt, "mirror", None) is not None:
                from edge.tryon.pipeline import DROPPED

                dropped += int(sum(s.value for fam in DROPPED.collect() for s in fam.samples
                                   if s.name.endswith("_total")))
            out[MAIN] = (rt.frames + dropped, rt.frames, dropped)
        if rt.streams is not None:
            for sid, h in rt.streams.health().items():
                out[sid] = (h["processed"] + h["dropped"], h["processed"], h["dropped"])
        return out

    def collect(self):
        yield from stream_frames_family(self.frame_counts())
