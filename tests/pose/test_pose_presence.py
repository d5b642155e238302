"""Person entered/left events (frame presence) with track ids, stream times and dwell; the old `[[pose.zones]]`
config moves to `[[analytics.zones]]`."""
from __future__ import annotations

import numpy as np
import pytest

from edge.app.config import parse_config
from edge.core.events import ListSink
from edge.pose.events import PresenceTracker
from edge.pose.types import PersonPose, PoseResult, Roi


def person(tid: int, feet_x: float, feet_y: float = 400.0) -> PersonPose:
    """A standing person 300 px tall whose lowest visible landmark is at (feet_x, feet_y)."""
    lm = np.zeros((33, 5))
    lm[:, 0] = feet_x + np.linspace(-20, 20, 33)
    lm[:, 1] = np.linspace(feet_y - 300, feet_y, 33)
    lm[:, 3:] = 1.0
    return PersonPose(tid, lm, np.zeros((33, 3)), 0.99, Roi(feet_x, feet_y - 150, 400, 0.0))


def result(seq: int, people: list[PersonPose]) -> PoseResult:
    return PoseResult(seq, seq / 30.0, (480, 640), people, clock="media")


def test_presence_events_with_dwell_on_the_stream_clock():
    sink = ListSink()
    pt = PresenceTracker(sink, source="cam0")
    t0 = 1_700_000_000.0
    pt.update(result(0, [person(3, 100)]), t0)
    pt.update(result(1, [person(3, 300), person(4, 500)]), t0 + 1 / 30)
    pt.update(result(2, [person(4, 500)]), t0 + 2 / 30)
    kinds = [(e.kind, e.data["track_id"]) for e in sink.events]
    assert kinds == [("person_entered", 3), ("person_entered", 4), ("person_left", 3)]
    left = sink.events[-1]
    assert left.ts == t0 + 2 / 30 and left.data["scope"] == "frame" and left.data["source"] == "cam0"
    assert left.data["dwell_s"] == pytest.approx(2 / 30, abs=1e-3) and left.data["entered_t_wall"] == t0
    assert left.data["clock"] == "media" and left.data["t"] == pytest.approx(2 / 30, abs=1e-4)
    assert all("image" not in e.data for e in sink.events)  # events never carry frames
    assert all(isinstance(e.to_dict()["data"]["track_id"], int) for e in sink.events)


def test_old_pose_zones_move_to_analytics_with_a_note():
    cfg = parse_config({"device": {"id": "d", "store": "s", "kind": "kiosk"}, "source": {"fps": 15},
                        "pose": {"zones": [{"name": "mirror", "polygon": [[200, 300], [400, 300], [400, 480]],
                                            "anchor": "hips", "inertia": 3}]}}, "old.toml")
    (z,) = cfg.analytics.zones
    assert (z.name, z.anchor, z.enter_frames, z.exit_s) == ("mirror", "center", 3, 0.2)
    (note,) = cfg.migrations
    assert note.startswith("pose.zones: moved to [[analytics.zones]]") and "fix:" in note


def test_migrated_zones_are_still_validated():
    from edge.app.config import ConfigError

    with pytest.raises(ConfigError, match=r"analytics\.zones\.0\.polygon"):
        parse_config({"device": {"id": "d", "store": "s", "kind": "kiosk"},
                      "pose": {"zones": [{"name": "a", "polygon": [[0, 0], [1, 0]]}]}}, "old.toml")
