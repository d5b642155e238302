"""Threaded mirror pipeline: overlapping stages, motion-to-photon in Frame.meta and metrics, session events."""
from __future__ import annotations

import json
import time

import numpy as np
from prometheus_client import REGISTRY

from edge.core.events import ListSink
from edge.tryon.config import TryOnConfig
from devtools.mannequin import MannequinSource, TruthPose
from edge.tryon.pipeline import TryOnPipeline
from edge.tryon.session import SessionTracker


def test_pipeline_composites_with_latency_metadata_and_events(catalog):
    sink = ListSink()
    before = REGISTRY.get_sample_value("edge_tryon_motion_to_photon_seconds_count") or 0.0
    src = MannequinSource(480, 360, fps=30, n_cycle=4)
    pipe = TryOnPipeline(TryOnConfig(), src, TruthPose(), sink, catalog=catalog).start()
    try:
        f = pipe.wait_frame(-1, timeout=20)
        assert f is not None
        time.sleep(1.5)
        pipe.select("JKT-002", "black")
        time.sleep(1.5)
        pipe.select("JKT-002", "tan")
        time.sleep(1.2)
        f = pipe.wait_frame(f.seq, timeout=5)
    finally:
        pipe.stop()
    assert f.image.shape == (360, 480, 3)
    m = f.meta
    assert f.t_capture < m["t_pose_done"] <= m["t_render_done"] <= m["t_composite_done"]
    assert m["m2p_ms"] == (m["t_composite_done"] - f.t_capture) * 1000
    assert m["tryon"] == {"sku": "JKT-002", "colour": "tan", "rendered": True}
    assert "pose_truth" not in m
    after = REGISTRY.get_sample_value("edge_tryon_motion_to_photon_seconds_count")
    assert after - before >= 60
    st = pipe.state()
    assert st["renderer"] == "ok" and st["m2p_p95_ms"] is not None and st["size_suggestion"] == "M"
    kinds = [(e.kind, e.data["sku"]) for e in sink.events]
    assert kinds == [("tryon_session", "TEE-001"), ("tryon_session", "JKT-002")]
    jk = sink.events[1].data
    assert jk["colour_changes"] == 1 and jk["colours"] == ["black", "tan"] and jk["size_suggested"] == "M"
    assert sink.events[0].data["end_reason"] == "garment_changed"
    for e in sink.events:  # small JSON records, never frames
        s = json.dumps(e.to_dict())
        assert len(s) < 1000 and not any(isinstance(v, np.ndarray) for v in e.data.values())


def test_stages_overlap(catalog, tryon_cache):
    """Pose (30 ms) and render (+30 ms) run concurrently: throughput is ~1/30 ms, not 1/60 ms."""
    from edge.tryon.renderer import GarmentRenderer

    spans: dict[str, list[tuple[float, float]]] = {"pose": [], "render": []}

    class SlowPose(TruthPose):
        def process(self, frame):
            t0 = time.monotonic()
            time.sleep(0.03)
            out = super().process(frame)
            spans["pose"].append((t0, time.monotonic()))
            return out

    class SlowRenderer(GarmentRenderer):
        def render(self, poses):
            t0 = time.monotonic()
            time.sleep(0.03)
            out = super().render(poses)
            spans["render"].append((t0, time.monotonic()))
            return out

    src = MannequinSource(320, 240, fps=100, n_cycle=2)
    pipe = TryOnPipeline(TryOnConfig(), src, SlowPose(), catalog=catalog,
                         renderer_factory=lambda intr: SlowRenderer(intr, shader_cache_dir=tryon_cache / "s")).start()
    try:
        pipe.wait_frame(-1, timeout=20)
        deadline = time.monotonic() + 20
        while pipe.frames_out < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        pipe.stop()
    # pose of a later frame runs while an earlier frame renders: the stages overlap on their own threads
    overlaps = sum(1 for a0, a1 in spans["pose"] for b0, b1 in spans["render"] if a0 < b1 and b0 < a1)
    assert pipe.frames_out >= 20 and overlaps >= 5, (pipe.frames_out, overlaps)


def test_session_ends_after_absence():
    sink = ListSink()
    s = SessionTracker(sink, absence_timeout_s=2.0, min_duration_s=1.0)
    for i in range(40):
        s.update(i * 0.1, True, "TEE-001", "navy" if i < 20 else "red", "L" if i > 30 else None)
    s.update(5.0, False, "TEE-001", "red")
    assert sink.events == []  # absence shorter than the timeout
    s.update(6.5, False, "TEE-001", "red")
    (ev,) = sink.events
    assert ev.data == {"sku": "TEE-001", "duration_s": 3.9, "colours": ["navy", "red"], "final_colour": "red",
                       "colour_changes": 1, "size_suggested": "L", "end_reason": "absent", "clock": "capture"}
    s.update(7.0, True, "TEE-001", "red")
    s.close(7.2)  # too short to report
    assert len(sink.events) == 1


def test_session_times_follow_the_stream_clock():
    """Recorded media: duration on the media clock, event time = recording start + media time."""
    sink = ListSink()
    s = SessionTracker(sink, absence_timeout_s=2.0, min_duration_s=1.0)
    start = 1_800_000_000.0
    for i in range(50):  # 5 s of media, however fast it is processed
        s.update(i * 0.1, True, "TEE-001", "navy", t_wall=start + i * 0.1, clock="media")
    s.close()
    (ev,) = sink.events
    assert ev.data["duration_s"] == 4.9 and ev.data["clock"] == "media"
    assert ev.data["start_t_wall"] == start and abs(ev.ts - (start + 4.9)) < 1e-6
