"""Pipeline circuit breakers with their fallbacks visibly in effect: the real mirror pipeline (renderer, compositor)
on a scripted confidence drop shows the plain camera with the "step into view" hint, then the garment again; the
analytics breaker marks events degraded and holds people-based alerts of a real behaviour stage."""
from __future__ import annotations

import dataclasses
import os
import time

import numpy as np
import pytest

from edge.core import decisions
from edge.core.breaker import CLOSED, OPEN, BreakerBoard, BreakerConfig
from edge.core.events import ListSink

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


@pytest.fixture()
def decision_log(tmp_path):
    log = decisions.DecisionLog(tmp_path / "decisions").open()
    decisions.set_default(log)
    yield log
    decisions.set_default(None)
    log.close()


def wait_for(pipe, pred, timeout=15.0, after=-1):
    """The first composited frame after seq `after` for which pred(frame) holds, or None."""
    end = time.monotonic() + timeout
    seq = after
    while time.monotonic() < end:
        f = pipe.wait_frame(seq, timeout=1.0)
        if f is None:
            continue
        seq = f.seq
        if pred(f):
            return f
    return None


def test_mirror_shows_the_hint_instead_of_a_garment_while_confidence_is_low(tmp_path, monkeypatch, decision_log):
    monkeypatch.setenv("STOREFRONT_EDGE_CACHE", str(tmp_path / "cache"))  # garments and shaders, isolated
    from devtools.mannequin import MannequinSource, TruthPose
    from edge.tryon.config import TryOnConfig
    from edge.tryon.garments import Catalog
    from edge.tryon.pipeline import TORSO, TryOnPipeline

    class ScriptedPose(TruthPose):
        """The mannequin's exact pose; while `low`, the torso landmarks' visibility drops to 0.2."""

        low = False

        def process(self, frame):
            pr = super().process(frame)
            if self.low and pr.people:
                people = []
                for p in pr.people:
                    lm = p.landmarks.copy()
                    lm[list(TORSO), 3] = 0.2
                    people.append(dataclasses.replace(p, landmarks=lm))
                pr = dataclasses.replace(pr, people=people)
            return pr

    sink = ListSink()
    board = BreakerBoard(BreakerConfig(window_s=0.6, min_samples=5, open_s=0.5, probe_samples=5), sink=sink)
    breaker = board.get("pipeline", "mirror")
    pose = ScriptedPose()
    pipe = TryOnPipeline(TryOnConfig(), MannequinSource(320, 240, fps=30, n_cycle=4), pose, sink,
                         catalog=Catalog(cache_dir=tmp_path / "cache" / "garments"), breaker=breaker,
                         hint="Step into view").start()
    try:
        f = wait_for(pipe, lambda f: f.meta["tryon"]["rendered"])
        assert f is not None and "hint" not in f.meta["tryon"] and breaker.state == CLOSED
        pose.low = True
        f = wait_for(pipe, lambda f: "hint" in f.meta["tryon"], after=f.seq)
        assert f is not None, "the breaker never opened"
        assert f.meta["tryon"]["hint"] == "Step into view" and f.meta["tryon"]["rendered"] is False
        assert breaker.state == OPEN and pipe.state()["hint"] == "Step into view"
        band = f.image[-40:]  # the hint banner: white text on a darkened strip at the bottom
        assert (band > 200).all(axis=2).sum() > 50
        plain = wait_for(pipe, lambda f: True, after=f.seq)
        assert plain.meta["tryon"]["rendered"] is False  # stays plain while open
        pose.low = False  # the shopper steps back into view: half-open probes close the breaker
        f = wait_for(pipe, lambda f: f.meta["tryon"]["rendered"], after=plain.seq)
        assert f is not None and "hint" not in f.meta["tryon"]  # half-open: the probe frames are dressed
        f = wait_for(pipe, lambda f: breaker.state == CLOSED, after=f.seq)
        assert f is not None and pipe.state()["hint"] is None and pipe.state()["circuit"] == CLOSED
        f = wait_for(pipe, lambda f: True, after=f.seq)
        assert f.meta["tryon"]["rendered"] and "hint" not in f.meta["tryon"]
    finally:
        pipe.stop()
    trans = [(e.data["from"], e.data["to"], e.data["reason"]) for e in sink.events if e.kind == "circuit_transition"]
    assert trans[0] == ("closed", "open", "low_confidence") and trans[-1] == ("half_open", "closed", "probes_ok")
    decision_log.flush()
    recs = [r for r in decisions.read_decisions(decision_log.folder) if r["kind"] == "circuit"]
    assert recs[0]["subject"] == "pipeline/mirror" and recs[0]["data"]["inputs"]["signals"]["visibility"]["mean"] < 0.5


def test_analytics_breaker_marks_events_degraded_and_holds_people_alerts(tmp_path, decision_log):
    from edge.app.behaviour import BehaviourStage
    from edge.app.config import parse_config
    from edge.app.operations import Operations
    from edge.core.detections import Detections
    from edge.core.frames import Frame

    cfg = parse_config({
        "device": {"id": "k1", "store": "s1", "kind": "kiosk"},
        "sync": {"outbox_path": str(tmp_path / "outbox.sqlite")},
        "decisions": {"path": str(tmp_path / "decisions")},
        "breaker": {"window_s": 1.0, "min_samples": 5, "open_s": 0.5, "probe_samples": 5},
        "analytics": {"zones": [{"name": "door", "polygon": [[0, 0], [640, 0], [640, 480], [0, 480]]}]},
        "alerts": {"rules": [{"id": "busy", "metric": "occupancy", "key": "door", "op": ">=", "threshold": 1,
                              "for_s": 1.5}]}})
    sink = ListSink()
    clock = [0.0]
    ops = Operations(cfg, sink, clock=lambda: clock[0])  # breaker windows on the scripted 10 fps stream
    stage = BehaviourStage.from_config(cfg, ops.analytics_sink(sink), source="main", frame_size=(640, 480))
    observe = ops.watch_behaviour(stage)
    breaker = ops.board.get("pipeline", "analytics")

    def step(i, score):
        t = clock[0] = i / 10
        frame = Frame(np.zeros((480, 640, 3), np.uint8), i, time.monotonic(), 1.7e9 + t, t_media=t)
        dets = Detections(np.array([[100, 100, 200, 400]] if score else np.zeros((0, 4)), np.float32),
                          np.array([score] if score else [], np.float32), np.zeros(1 if score else 0))
        stage.update(frame, dets)
        observe(frame)

    # a person detected confidently, then only weakly (ByteTrack keeps the track on low-score detections)
    for i in range(5):
        step(i, 0.9)
    i = 5
    while breaker.state == CLOSED and i < 40:
        step(i, 0.12)
        i += 1
    assert breaker.state == OPEN and breaker.last.reason == "low_confidence"
    assert stage.engine.held()["breaker:analytics"]["metrics"][0] == "dwell"
    for j in range(i, i + 30):  # 3 s of occupancy: "busy" would open after 1.5 s, but it is held
        step(j, 0.2)
    assert not [e for e in sink.events if e.stream == "alerts"]
    for j in range(i + 30, i + 60):  # the person leaves while the breaker is open: that event is marked
        step(j, None)
    (entered,), (left,) = ([e for e in sink.events if e.kind == k] for k in ("zone_entered", "zone_left"))
    assert "degraded" not in entered.data  # before the breaker opened
    assert left.data["degraded"] is True and "detector_score" in left.data["degraded_reason"]
    j = i + 60
    while breaker.state != CLOSED and j < i + 90:  # confident again: after open_s, 5 good probes close it
        step(j, 0.9)
        j += 1
    assert breaker.state == CLOSED and stage.engine.held() == {}
    for k in range(j, j + 20):
        step(k, 0.9)
    opened = [e for e in sink.events if e.kind == "alert_opened"]
    assert [e.data["rule"] for e in opened] == ["busy"]
