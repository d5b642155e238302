"""Second look at zones, lines, queues and loitering: people whose feet are below the frame (boxes clipped at the
frame's edge) in a zone drawn to that edge, visits still open or in their exit grace when the stream ends, and a line
counter's per-track state after stream time goes back."""
from __future__ import annotations

import numpy as np
import pytest

from analytics_helpers import tracked
from edge.analytics.composer import Analytics
from edge.analytics.config import AnalyticsConfig
from edge.analytics.lines import LineCounter
from edge.analytics.zones import PolygonZone
from edge.core.detections import Detections

W, H = 640, 480
FPS = 10
AT_THE_BOTTOM = [[200, 300], [400, 300], [400, H], [200, H]]  # a zone drawn down to the frame's bottom edge


def clipped(*xs: float) -> Detections:
    """Detector output for people standing near the camera, feet below the frame: boxes clipped to the frame's bottom
    edge (as NanoDet's decoder does: y2 = frame height), bottom centre at (x, H)."""
    if not xs:
        return Detections.empty()
    return Detections(np.array([[x - 30, 250, x + 30, H] for x in xs], np.float32), np.full(len(xs), 0.9),
                      np.zeros(len(xs)))


def analytics(polygon, **extra) -> Analytics:
    cfg = {"zones": [{"name": "till", "polygon": polygon, "exit_s": 1.0}], **extra}
    return Analytics.from_config(AnalyticsConfig.model_validate(cfg), None, frame_size=(W, H))


def play(obj, script) -> list:
    out = []
    for t, dets in script:
        out += obj.update(dets, t, 1e9 + t)
    return out


def test_people_with_their_feet_below_the_frame_count_in_a_zone_drawn_to_the_frame_bottom():
    """A checkout zone drawn down to the frame's bottom edge (y = 480 of a 640x480 frame); customers at the till stand
    so near the camera that their feet are out of view, so the detector's boxes end at the frame edge and their
    bottom-centre anchor lies exactly on the zone's bottom edge. They are in the zone: zone_entered, a queue of 2
    (before: the even-odd test put points on the bottom and right edges outside, so the zone and its queue stayed
    empty while the same people, had the zone been drawn one pixel lower, would have counted)."""
    an = analytics(AT_THE_BOTTOM, queues=[{"name": "checkout", "zone": "till", "min_interval_s": 0.0}])
    ev = play(an, [(k / FPS, clipped(260, 340)) for k in range(20)])
    assert [e.kind for e in ev].count("zone_entered") == 2
    assert an.zones["till"].count == 2 and an.queues["checkout"].length == 2
    assert [e.data["length"] for e in ev if e.kind == "queue_changed"] == [2]
    # every edge of the polygon counts alike (before: left and top inside, right and bottom outside)
    z = PolygonZone("sq", AT_THE_BOTTOM)
    on_edges = np.array([[300, 300], [200, 400], [400, 400], [300, H], [200, 300], [400, H]], np.float64)
    assert z.contains(on_edges).tolist() == [True] * 6
    assert z.contains(np.array([[199.9, 400], [300, H + 0.1], [np.nan, 400], [np.inf, 400]])).tolist() == [False] * 4


def test_flush_ends_the_visits_still_open_or_in_their_exit_grace_when_the_stream_ends():
    """The stream ends (clip over, device shut down for an update) with one shopper who walked out 0.5 s before the
    end (in the 1-s exit grace) and one still standing in the zone. `Analytics.flush` reports both visits as left:
    the first at its real exit (the first frame outside), the second at the last frame; a second flush reports nothing
    (before: neither `zone_left` ever came, so their dwell was lost, and after a restart, when the tracker's ids start
    at 1 again, a consumer pairing visits by track id matched the new run's id 1 to the old run's open visit)."""
    an = analytics([[200, 300], [400, 300], [400, 470], [200, 470]])
    script = [(k / FPS, Detections(np.array([[280, 280, 320, 400]] + ([[340, 280, 380, 400]] if k < 45 else
                                                                     [[560, 280, 600, 400]]), np.float32),
                                   np.full(2, 0.9), np.zeros(2))) for k in range(50)]
    ev = play(an, script)
    assert [e.kind for e in ev] == ["zone_entered", "zone_entered"]
    stay, walk = (e.data["track_id"] for e in ev)
    out = an.flush(4.9, 1e9 + 4.9)
    left = {e.data["track_id"]: (e.data["enter_t"], e.data["exit_t"], e.data["dwell_s"], e.data["exit_t_wall"])
            for e in out if e.kind == "zone_left"}
    assert left == {walk: (0.2, 4.5, 4.3, pytest.approx(1e9 + 4.5)),
                    stay: (0.2, 4.9, 4.7, pytest.approx(1e9 + 4.9))}
    assert an.flush(4.9, 1e9 + 4.9) == []
    assert an.zones["till"].count == 0


def test_flushed_events_carry_the_stream_clock_like_every_other_event():
    """At a real run's stop the flushed zone_left came without `clock` (every per-frame event has it): a consumer
    telling media-time from wall-time events could not place them."""
    an = analytics([[200, 300], [400, 300], [400, 470], [200, 470]])
    for k in range(10):
        an.update(Detections(np.array([[280, 280, 320, 400]], np.float32), np.full(1, 0.9), np.zeros(1)), k / FPS,
                  1e9 + k / FPS, frame_seq=k, clock="media")
    [left] = an.flush(0.9, 1e9 + 0.9, clock="media")
    assert left.kind == "zone_left" and left.data["clock"] == "media"


def test_flush_still_reports_a_held_visit_once_and_a_zone_without_events_nothing():
    """With handover on, a visit that ended and is held as a donor is reported once by flush, beside the one still
    open; a zone with `events = false` (it only feeds a queue) reports nothing."""
    z = PolygonZone("window", AT_THE_BOTTOM, enter_frames=1, exit_s=1.0, handover_s=5.0)
    play(z, [(k / FPS, tracked((1, 300, 400), *([(2, 250, 400)] if k < 20 else []))) for k in range(40)])
    assert z.held(2)
    out = z.flush(3.9, 1e9 + 3.9)
    assert [(e.data["track_id"], e.data["exit_t"], e.data["dwell_s"]) for e in out] == [(1, 3.9, 3.9),
                                                                                         (2, 2.0, 2.0)]
    assert z.flush(3.9) == []
    quiet = PolygonZone("q", AT_THE_BOTTOM, enter_frames=1, events=False)
    play(quiet, [(k / FPS, tracked((1, 300, 400))) for k in range(5)])
    assert quiet.flush(0.4) == []


def test_a_line_forgets_its_tracks_when_stream_time_goes_back():
    """Upstream track ids (tracker off, e.g. the pose tracker's) on a line: the first recording ends with id 1 above
    the door line; the next starts its clock at 0 and its id 1 is someone else, first seen below the line. No crossing
    (before: the old recording's side of id 1 carried over, and a person who never crossed counted as "in"; its
    entries, timed on the old clock, were also never forgotten until the new clock passed them). A real crossing on
    the new clock still counts."""
    lc = LineCounter("door", (100, 300), (500, 300), min_frames=2)
    assert play(lc, [(100 + k / FPS, tracked((1, 300, 250), (2, 200, 250))) for k in range(10)]) == []
    assert play(lc, [(k / FPS, tracked((1, 300, 350))) for k in range(10)]) == []
    assert lc.counts == {"in": 0, "out": 0}
    ev = play(lc, [(1 + k / FPS, tracked((1, 300, y))) for k, y in enumerate([350, 340, 260, 250, 240])])
    assert [e.data["direction"] for e in ev] == ["out"] and lc.counts == {"in": 0, "out": 1}
    assert set(lc._tracks) == {1}  # id 2 of the old clock is gone, not kept until the new clock reaches 110 s


def test_flush_reports_a_queue_length_change_held_back_by_the_min_interval():
    """A third person joins the checkout queue 2 s before the stream ends, inside the queue's 5-s `min_interval_s`
    after the last report: the change was held back and, with no later frame, never reported, so the cloud kept a
    queue of 2 for good (or until the next run). `Analytics.flush` reports it at the last frame, once."""
    an = analytics(AT_THE_BOTTOM, queues=[{"name": "checkout", "zone": "till", "min_interval_s": 5.0}])
    script = [(k / FPS, clipped(*([260, 300] + ([340] if k >= 30 else [])))) for k in range(50)]
    ev = play(an, script)
    assert [e.data["length"] for e in ev if e.kind == "queue_changed"] == [2]
    out = [e for e in an.flush(4.9, 1e9 + 4.9) if e.kind == "queue_changed"]
    assert [(e.data["length"], e.data["previous_length"], e.data["t"]) for e in out] == [(3, 2, pytest.approx(4.9))]
    assert [e for e in an.flush(4.9, 1e9 + 4.9) if e.kind == "queue_changed"] == []
