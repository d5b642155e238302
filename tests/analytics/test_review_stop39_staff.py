"""Staff tagging ([analytics] staff_zones): staff are left out of the shopper analytics (queues, loitering, kiosk
customers, zones, lines, heatmaps), on scripted tracked detections through the composer."""
from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from edge.analytics.composer import Analytics
from edge.analytics.config import AnalyticsConfig
from edge.analytics.staff import StaffTagger
from edge.analytics.zones import PolygonZone
from edge.core.detections import Detections
from edge.core.events import ListSink


def rect(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


CONFIG = {
    "tracker": {"enabled": False},
    "zones": [{"name": "counter", "polygon": rect(0, 0, 200, 150), "enter_frames": 1, "exit_s": 0.0},
              {"name": "checkout", "polygon": rect(0, 150, 200, 480), "enter_frames": 1, "exit_s": 0.0},
              {"name": "floor", "polygon": rect(200, 0, 480, 480), "enter_frames": 1, "exit_s": 0.0},
              {"name": "kiosk", "polygon": rect(480, 0, 640, 480), "enter_frames": 1, "exit_s": 0.0}],
    "queues": [{"name": "till", "zone": "checkout", "head": [100, 150], "min_interval_s": 0}],
    "loitering": [{"name": "floor", "zone": "floor", "after_s": 5}],
    "kiosk_help": [{"name": "kiosk", "zone": "kiosk", "after_s": 3}],
    "lines": [{"name": "aisle", "start": [300, 0], "end": [300, 480]}],
    "staff_zones": ["counter"],
}


def frame(people: dict[int, tuple[float, float]]) -> Detections:
    """Tracked detections: track id -> bottom-centre point (x, y) of its box."""
    ids = sorted(people)
    boxes = [[people[i][0] - 20, people[i][1] - 80, people[i][0] + 20, people[i][1]] for i in ids]
    return Detections(np.array(boxes, np.float64).reshape(-1, 4), np.full(len(ids), 0.9), np.zeros(len(ids)),
                      tracker_id=np.array(ids, np.int64))


def run(an: Analytics, script, t0: float = 0.0) -> list:
    """script: list of {track id: (x, y)}, one frame per second."""
    events = []
    for k, people in enumerate(script):
        t = t0 + k
        events += an.update(frame(people), t, 1_790_000_000.0 + t)
    return events


def test_staff_behind_the_counter_are_no_queue_no_loiterer_and_no_footfall():
    """The cashier (7) steps out from behind the counter into the queue lane, then walks the floor across the aisle
    line and stands there 10 s; a customer (1) waits in the lane, another (2) stands on the floor. The queue is 1
    long (not 2), only the customer loiters, only the customer's crossing is counted. Before staff zones the
    cashier made every long-queue and loitering alert a false one."""
    an = Analytics.from_config(AnalyticsConfig.model_validate(CONFIG), ListSink())
    script = [{7: (100, 100), 1: (100, 300)}] * 2  # cashier behind the counter, customer in the lane
    script += [{7: (120, 250), 1: (100, 300)}] * 5  # cashier in the lane
    ev = run(an, script)
    assert an.staff_ids == {7} and an.queues["till"].length == 1
    assert [e.data["length"] for e in ev if e.kind == "queue_changed"] == [1]
    script = [{7: (250, 300), 2: (250, 200)}] + [{7: (350, 300), 2: (250, 200)}] * 10
    ev = run(an, script, t0=7)
    assert [e.data["track_id"] for e in ev if e.kind == "loitering"] == [2]
    assert [e.data["track_id"] for e in ev if e.kind == "line_crossed"] == []
    assert {e.data["track_id"] for e in ev if e.kind in ("zone_entered", "zone_left")} <= {1, 2}


def test_staff_are_no_kiosk_customers_and_their_arrival_resolves_help():
    """A customer (3) waits at the kiosk; after 3 s help is requested. The cashier (7, from behind the counter)
    walks up to the kiosk: that is staff arriving (help_resolved staff_arrived), and the cashier standing at the
    kiosk never asks for help."""
    an = Analytics.from_config(AnalyticsConfig.model_validate(CONFIG), ListSink())
    ev = run(an, [{7: (100, 100), 3: (560, 300)}] * 5 + [{7: (400, 300), 3: (560, 300)}])
    assert [(e.kind, e.data["track_id"]) for e in ev if e.kind.startswith("help")] == [("help_requested", 3)]
    ev = run(an, [{7: (540, 300), 3: (560, 300)}] * 2 + [{7: (540, 300)}] * 10, t0=6)
    assert [(e.kind, e.data["track_id"], e.data.get("reason")) for e in ev if e.kind.startswith("help")] == [
        ("help_resolved", 3, "staff_arrived")]


def test_the_staff_zone_itself_and_the_shelf_facings_still_see_staff():
    an = Analytics.from_config(AnalyticsConfig.model_validate({**CONFIG, "staff_zones": ["counter"]}), ListSink())
    ev = run(an, [{7: (100, 100)}] * 3)
    assert [(e.kind, e.data["track_id"]) for e in ev if e.kind == "zone_entered"] == [("zone_entered", 7)]
    assert an.zones["counter"].count == 1


def test_a_staff_track_is_forgotten_a_while_after_it_was_last_seen():
    tagger = StaffTagger([PolygonZone("counter", rect(0, 0, 200, 150), enter_frames=1, exit_s=0.0)], forget_s=60)
    assert tagger.update(frame({7: (100, 100)}), 0.0) == {7}
    assert tagger.update(frame({7: (300, 300)}), 30.0) == {7}  # seen on the floor: still staff
    assert tagger.update(frame({}), 89.0) == {7}
    assert tagger.update(frame({}), 91.0) == frozenset()  # unseen for over 60 s
    assert tagger.update(frame({8: (100, 100)}), 92.0) == {8}
    assert tagger.update(frame({8: (300, 300)}), 5.0) == {8}  # stream time went back: ages restart, not lost


@pytest.mark.parametrize("staff, match", [
    (["checkout"], "zone of queues 'till'"),
    (["floor"], "zone of loitering 'floor'"),
    (["nowhere"], "no zone named 'nowhere'"),
])
def test_a_staff_zone_that_shoppers_use_is_a_config_error(staff, match):
    with pytest.raises(ValidationError, match=match):
        AnalyticsConfig.model_validate({**CONFIG, "staff_zones": staff})
