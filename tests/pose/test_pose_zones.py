"""Zone membership with inertia and person entered/left events (frame and zone), with track ids and timestamps."""
from __future__ import annotations

import numpy as np
import pytest

from edge.core.events import ListSink
from edge.pose.config import PoseConfig, ZoneConfig
from edge.pose.events import PresenceTracker
from edge.pose.types import PersonPose, PoseResult, Roi
from edge.pose.zones import PolygonZone, anchor_point


def person(tid: int, feet_x: float, feet_y: float = 400.0) -> PersonPose:
    """A standing person 300 px tall whose lowest visible landmark is at (feet_x, feet_y)."""
    lm = np.zeros((33, 5))
    lm[:, 0] = feet_x + np.linspace(-20, 20, 33)
    lm[:, 1] = np.linspace(feet_y - 300, feet_y, 33)
    lm[:, 3:] = 1.0
    return PersonPose(tid, lm, np.zeros((33, 3)), 0.99, Roi(feet_x, feet_y - 150, 400, 0.0))


def result(seq: int, people: list[PersonPose]) -> PoseResult:
    return PoseResult(seq, seq / 30.0, (480, 640), people)


def test_anchor_points():
    p = person(1, 100)
    assert anchor_point(p, "bottom_center") == pytest.approx([100, 400])
    assert anchor_point(p, "center") == pytest.approx([100, 250])
    p.landmarks[:, 3] = 0.0
    assert anchor_point(p, "bottom_center") is None


def test_zone_inertia():
    z = PolygonZone("door", [(200, 300), (400, 300), (400, 480), (200, 480)], inertia=2)
    assert z.update([person(1, 100)]) == ([], [])
    assert z.update([person(1, 300)]) == ([], [])  # 1 frame inside: not yet
    assert z.update([person(1, 300)]) == ([1], [])
    assert z.update([person(1, 100)]) == ([], [])  # 1 frame outside: still inside
    assert z.update([person(1, 300)]) == ([], [])  # back: the streak resets
    assert z.update([person(1, 100)]) == ([], [])
    assert z.update([person(1, 100)]) == ([], [1])
    assert z.inside == set()


def test_zone_track_lost_leaves_at_once():
    z = PolygonZone("door", [(200, 300), (400, 300), (400, 480), (200, 480)], inertia=1)
    assert z.update([person(7, 300)]) == ([7], [])
    assert z.update([]) == ([], [7])


def test_presence_events_frame_and_zone():
    cfg = PoseConfig(zones=[ZoneConfig(name="mirror", polygon=[(200, 300), (400, 300), (400, 480), (200, 480)],
                                       inertia=1)])
    sink = ListSink()
    pt = PresenceTracker.from_config(cfg, sink, source="cam0")
    t0 = 1_700_000_000.0
    pt.update(result(0, [person(3, 100)]), t0)
    pt.update(result(1, [person(3, 300)]), t0 + 1 / 30)
    pt.update(result(2, []), t0 + 2 / 30)
    kinds = [(e.kind, e.data["track_id"], e.data["zone"]) for e in sink.events]
    assert kinds == [("person_entered", 3, None), ("person_entered", 3, "mirror"),
                     ("person_left", 3, "mirror"), ("person_left", 3, None)]
    left = sink.events[-1]
    assert left.ts == t0 + 2 / 30 and left.data["scope"] == "frame" and left.data["source"] == "cam0"
    assert left.data["dwell_s"] == pytest.approx(2 / 30, abs=1e-3) and left.data["entered_t_wall"] == t0
    assert all("image" not in e.data for e in sink.events)  # events never carry frames
    assert all(isinstance(e.to_dict()["data"]["track_id"], int) for e in sink.events)


def test_zone_config_validation():
    with pytest.raises(ValueError):
        PoseConfig(zones=[ZoneConfig(name="a", polygon=[(0, 0), (1, 0), (1, 1)]),
                          ZoneConfig(name="a", polygon=[(0, 0), (1, 0), (1, 1)])])
    with pytest.raises(ValueError):
        ZoneConfig(name="a", polygon=[(0, 0), (1, 0)])
