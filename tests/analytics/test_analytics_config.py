"""AnalyticsConfig validation (errors name the key) and the Analytics composer end to end (tracker + objects)."""
from __future__ import annotations

import tomllib

import numpy as np
import pytest
from pydantic import ValidationError

from edge.analytics.composer import Analytics
from edge.analytics.config import AnalyticsConfig
from edge.core.detections import Detections
from edge.core.events import ListSink

SQUARE = [[200, 300], [400, 300], [400, 480], [200, 480]]


def errors(data: dict) -> list[tuple[str, str]]:
    """(dotted key, message) of each validation error."""
    with pytest.raises(ValidationError) as e:
        AnalyticsConfig.model_validate(data)
    return [(".".join(str(p) for p in err["loc"]), err["msg"]) for err in e.value.errors()]


@pytest.mark.parametrize("polygon, message", [
    ([[0, 0], [10, 0]], "at least 3 points"),
    ([[0, 0], [10, 10], [20, 20]], "degenerate"),
    ([[0, 0], [10, 0], [10, 0], [0, 0]], "degenerate"),
    ([[0, 0], [100, 100], [100, 0], [0, 100]], "cross"),  # a bow tie
])
def test_polygon_errors_name_the_key(polygon, message):
    [(key, msg)] = errors({"zones": [{"name": "ok", "polygon": SQUARE}, {"name": "bad", "polygon": polygon}]})
    assert key == "zones.1.polygon" and message in msg


def test_config_errors_name_the_key():
    assert errors({"zones": [{"name": "a", "polygon": SQUARE, "inertia": 3}]})[0][0] == "zones.0.inertia"
    [(key, msg)] = errors({"zones": [{"name": "a", "polygon": SQUARE}, {"name": "a", "polygon": SQUARE}]})
    assert key == "zones" and "zones[1].name 'a'" in msg and "zones[0]" in msg
    [(key, msg)] = errors({"queues": [{"name": "q", "zone": "nope"}]})
    assert "queues[0].zone" in msg and "'nope'" in msg
    [(key, msg)] = errors({"zones": [{"name": "k", "polygon": SQUARE}],
                           "kiosk_help": [{"name": "k1", "zone": "k", "staff_zone": "staff"}]})
    assert "kiosk_help[0].staff_zone" in msg
    [(key, msg)] = errors({"lines": [{"name": "l", "start": [5, 5], "end": [5, 5.5]}]})
    assert key == "lines.0" and "1 px" in msg
    [(key, msg)] = errors({"loitering": [{"name": "x", "zone": "z", "hours": ["25:00-06:00"]}]})
    assert key == "loitering.0.hours" and "HH:MM" in msg
    assert errors({"loitering": [{"name": "x", "zone": "z", "timezone": "Mars/Olympus"}]})[0][0] == \
        "loitering.0.timezone"
    assert errors({"tracker": {"low_score": 0.7, "high_score": 0.5}})[0][0] == "tracker"
    assert errors({"tracker": {"min_hits": 0}})[0][0] == "tracker.min_hits"
    assert errors({"heatmaps": [{"frame_size": [0, 480]}]})[0][0] == "heatmaps.0.frame_size"
    assert errors({"zones": [{"name": "bad name!", "polygon": SQUARE}]})[0][0] == "zones.0.name"


def test_errors_read_well_through_the_device_config_formatter():
    from edge.app.config import format_validation_error

    with pytest.raises(ValidationError) as e:
        AnalyticsConfig.model_validate({"zones": [{"name": "a", "polygon": [[0, 0], [1, 1]]}]})
    text = str(format_validation_error("kiosk.toml", e.value))
    assert text.startswith("kiosk.toml: zones.0.polygon: ") and "at least 3 points" in text


TOML = """
[tracker]
min_hits = 3
lost_s = 1.0

[[zones]]
name = "mirror"
polygon = [[200, 300], [400, 300], [400, 480], [200, 480]]
enter_frames = 3
exit_s = 0.5

[[zones]]
name = "queue_area"
polygon = [[0, 0], [150, 0], [150, 480], [0, 480]]
events = false

[[lines]]
name = "entrance"
start = [500, 0]
end = [500, 480]

[[queues]]
name = "checkout"
zone = "queue_area"

[[loitering]]
name = "mirror_long"
zone = "mirror"
after_s = 2

[[heatmaps]]
period_s = 5

[[shelves]]
name = "A3"
polygon = [[0, 0], [100, 0], [100, 100], [0, 100]]

[[kiosk_help]]
name = "kiosk"
zone = "mirror"
after_s = 3
"""


def test_composer_end_to_end_from_toml():
    cfg = AnalyticsConfig.model_validate(tomllib.loads(TOML))
    sink = ListSink()
    an = Analytics.from_config(cfg, sink, source="cam0", frame_size=(640, 480))
    assert set(an.zones) == {"mirror", "queue_area"} and set(an.queues) == {"checkout"}
    fps = 10
    for k in range(80):  # 8 s: a shopper walks into the mirror zone, stays 4 s, leaves across the line
        t = k / fps
        x = 100 + 100 * t if t < 2 else 300 if t < 6 else 300 + 150 * (t - 6)
        boxes = [[x - 30, 300, x + 30, 420]]
        scores = [0.9]
        if k == 30:  # a one-frame false positive inside the mirror zone: never confirmed, never counted
            boxes.append([330, 250, 390, 400])
            scores.append(0.95)
        an.update(Detections(np.array(boxes), scores, np.zeros(len(boxes))), t, 1_700_000_000 + t,
                  frame_seq=k, clock="media")
    an.flush(8.0, 1_700_000_008.0)
    kinds = [e.kind for e in sink.events]
    assert kinds.count("zone_entered") == 1 and kinds.count("zone_left") == 1
    assert kinds.count("line_crossed") == 1 and kinds.count("loitering") == 1
    assert kinds.count("help_requested") == 1 and kinds.count("help_resolved") == 1
    assert kinds.count("occupancy_heatmap") == 2  # period 0-5 at t = 5, the rest at the flush
    # the queue lane (x < 150) holds the shopper from frame 4 (confirmed at 2, 3 frames of inertia) to x = 150 at
    # t = 0.5, + 1 s of grace: length 1 at t = 0.4, back to 0 reported 5 s later (min_interval_s)
    assert [(e.data["t"], e.data["length"]) for e in sink.events if e.kind == "queue_changed"] == [(0.4, 1), (5.4, 0)]
    left = next(e for e in sink.events if e.kind == "zone_left")
    assert left.data["enter_t"] == 1.0 and left.data["exit_t"] == 6.7 and left.data["dwell_s"] == pytest.approx(5.7)
    entered = next(e for e in sink.events if e.kind == "zone_entered")
    assert entered.data["track_id"] == 1 and entered.data["source"] == "cam0"
    assert entered.data["frame_seq"] is not None and entered.data["clock"] == "media"
    crossed = next(e for e in sink.events if e.kind == "line_crossed")
    assert crossed.data["direction"] == "out"  # start (500, 0) -> end (500, 480) points down: left-to-right is out
    assert {e.data["track_id"] for e in sink.events if "track_id" in e.data} == {1}
    assert an.zones["mirror"].count == 0 and an.lines["entrance"].counts == {"in": 0, "out": 1}
    assert sum(sum(r) for e in sink.events if e.kind == "occupancy_heatmap" for r in e.data["counts"]) == 78


def test_composer_without_tracker_uses_given_ids():
    cfg = AnalyticsConfig.model_validate({"tracker": {"enabled": False},
                                          "zones": [{"name": "z", "polygon": SQUARE, "enter_frames": 1}]})
    an = Analytics.from_config(cfg, ListSink())
    d = Detections([[280, 300, 320, 400]], [0.9], [0], tracker_id=[42])
    assert [e.data["track_id"] for e in an.update(d, 0.0, 1.0)] == [42]
    with pytest.raises(ValueError, match="tracker"):
        an.update(Detections([[280, 300, 320, 400]], [0.9], [0]), 0.1)
