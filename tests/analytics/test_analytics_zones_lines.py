"""PolygonZone (inertia, exit grace, dwell reset, unconfirmed tracks) and LineCounter (direction, band, segment,
back and forth). Frames at 10 fps; (x, y) is each box's bottom centre."""
from __future__ import annotations

import pytest

from analytics_helpers import tracked
from edge.analytics.lines import LineCounter
from edge.analytics.zones import PolygonZone

SQUARE = [(200, 300), (400, 300), (400, 480), (200, 480)]


def run(obj, xs: list, dt: float = 0.1, tid: int = 1, y: float = 400.0):
    """Feed one track along xs (None: not detected); returns [(frame index, kind, data)]."""
    out = []
    for k, x in enumerate(xs):
        dets = tracked() if x is None else tracked((tid, x, y))
        out += [(k, e.kind, e.data) for e in obj.update(dets, round(k * dt, 6), 1000.0 + k * dt)]
    return out


def test_zone_boundary_jitter_with_inertia_gives_no_flicker():
    jitter = [205, 195] * 5  # around the left edge x = 200: never 3 frames inside in a row
    inside_jitter = [250, 250, 250] + [195, 205] * 4  # then in, then jitter: never 1 s outside
    xs = jitter + inside_jitter + [100] * 12
    ev = run(PolygonZone("door", SQUARE, enter_frames=3, exit_s=1.0), xs)
    assert [(k, kind) for k, kind, _ in ev] == [(12, "zone_entered"), (31, "zone_left")]
    entered, left = ev[0][2], ev[1][2]
    assert entered["enter_t"] == 1.0 and entered["track_id"] == 1 and entered["zone"] == "door"
    assert entered["enter_t_wall"] == pytest.approx(1001.0)
    # last inside at frame 20 (x = 205); outside from frame 21 (t = 2.1); left after 1 s of grace, at frame 31
    assert left["exit_t"] == 2.1 and left["dwell_s"] == pytest.approx(1.1) and left["t"] == 3.1
    assert left["exit_t_wall"] == pytest.approx(1002.1)
    # the same sequence without inertia flickers
    naive = run(PolygonZone("door", SQUARE, enter_frames=1, exit_s=0.0), xs)
    assert [kind for _, kind, _ in naive].count("zone_entered") == 10  # 10 visits instead of 1


def test_dwell_timer_resets_on_exit():
    z = PolygonZone("mirror", SQUARE, enter_frames=1, exit_s=0.0)
    xs = [300] * 50 + [100] * 20 + [300] * 30  # in 5 s, out 2 s, in again
    ev = run(z, xs)
    assert [(k, kind) for k, kind, _ in ev] == [(0, "zone_entered"), (50, "zone_left"), (70, "zone_entered")]
    assert ev[1][2]["dwell_s"] == pytest.approx(5.0)
    assert z.dwell_of(1) == pytest.approx(9.9 - 7.0)  # since the new visit, not since t = 0
    assert z.count == 1 and z.inside == {1}


def test_exit_grace_covers_an_occlusion_and_times_the_real_exit():
    z = PolygonZone("aisle", SQUARE, enter_frames=1, exit_s=1.0)
    xs = [300] * 10 + [None] * 8 + [300] * 5 + [None] * 15  # hidden 0.8 s: same visit; then gone
    ev = run(z, xs)
    assert [kind for _, kind, _ in ev] == ["zone_entered", "zone_left"]
    assert ev[1][2]["exit_t"] == 2.3 and ev[1][2]["dwell_s"] == pytest.approx(2.3)


def test_unconfirmed_tracks_never_count():
    z = PolygonZone("door", SQUARE, enter_frames=1)
    for k in range(20):
        assert z.update(tracked((-1, 300, 400)), k / 10) == []
    assert z.count == 0
    with pytest.raises(ValueError, match="tracker"):
        from edge.core.detections import Detections

        z.update(Detections([[0, 0, 1, 1]], [0.9], [0]), 3.0)


def test_enter_seconds_inertia():
    z = PolygonZone("door", SQUARE, enter_frames=1, enter_s=0.5)
    ev = run(z, [300] * 10)
    assert [(k, kind) for k, kind, _ in ev] == [(5, "zone_entered")] and ev[0][2]["enter_t"] == 0.0


LINE = ((100, 300), (500, 300))  # pointing right: "in" is downwards on screen (y grows)


def run_line(lc: LineCounter, ys: list, x: float = 300.0, tid: int = 1):
    """Feed one track moving vertically at x; returns [(frame index, direction, data)]."""
    out = []
    for k, y in enumerate(ys):
        out += [(k, e.data["direction"], e.data) for e in lc.update(tracked((tid, x, y)), k / 10, None)]
    return out


def test_line_crossed_back_and_forth():
    lc = LineCounter("entrance", *LINE, min_distance=10, min_frames=2)
    ys = [250, 270, 290,  # approach from above
          295, 305, 296, 304, 298, 306,  # jitter inside the ±10 px band: no side change
          320, 330,  # 2 frames below: "in" counted at frame 10
          340, 330,
          280, 270,  # back up: "out" at frame 14
          320, 280, 275]  # a single frame below then back: min_frames = 2, nothing
    ev = run_line(lc, ys)
    assert [(k, d) for k, d, _ in ev] == [(10, "in"), (14, "out")]
    assert lc.counts == {"in": 1, "out": 1}
    assert ev[0][2]["point"] == [300.0, 300.0] and ev[0][2]["in_count"] == 1 and ev[1][2]["out_count"] == 1


def test_line_crossing_outside_the_segment_is_not_counted():
    lc = LineCounter("entrance", *LINE, min_distance=10, min_frames=1)
    assert run_line(lc, [250, 350], x=600) == []  # beyond the end point
    # ... and the detour does not count later either: the side was updated
    assert run_line(lc, [350, 360], x=300) == []
    assert [(k, d) for k, d, _ in run_line(lc, [360, 250])] == [(1, "out")]  # inside the segment: counted
    assert lc.counts == {"in": 0, "out": 1}


def test_line_first_seen_on_a_side_and_unconfirmed_are_not_crossings():
    lc = LineCounter("entrance", *LINE, min_frames=1)
    assert run_line(lc, [350, 360]) == []  # appeared below: no crossing
    for k, y in enumerate([250, 260, 350, 360]):
        assert lc.update(tracked((-1, 300, y)), 1 + k / 10) == []
    assert lc.counts == {"in": 0, "out": 0}


def play(obj, frames: list, dt: float = 0.1) -> list:
    """Feed frames, each a list of (track_id, x) at y = 400; returns [(frame index, kind, data)]."""
    out = []
    for k, people in enumerate(frames):
        dets = tracked(*[(tid, x, 400.0) for tid, x in people])
        out += [(k, e.kind, e.data) for e in obj.update(dets, round(k * dt, 6), 1000.0 + k * dt)]
    return out


def test_handover_when_a_standing_track_vanishes_and_a_new_id_appears_there():
    """The tracker loses someone standing still and finds them again under a new id: the visit goes on (its
    enter_t), no zone_left for the old id, and the zone counts one person throughout."""
    z = PolygonZone("window", SQUARE, enter_frames=3, exit_s=1.0, handover_s=5)
    frames = [[(1, 300)]] * 40 + [[]] * 5 + [[(2, 302)]] * 30  # stands 4 s, unseen 0.5 s, id 2 at the same spot
    ev = play(z, frames)  # id 2 (first seen at frame 45) is watched for 1 s before it enters: standing, it continues
    assert [(k, kind) for k, kind, _ in ev] == [(2, "zone_entered"), (55, "zone_entered")]
    assert ev[1][2]["track_id"] == 2 and ev[1][2]["continues"] == 1 and ev[1][2]["enter_t"] == 0.0
    assert "continues" not in ev[0][2]
    assert z.inside == {2} and z.dwell_of(2) == pytest.approx(7.4)
    for k in range(10):  # the old id never comes back: no zone_left for it later either
        assert z.update(tracked((2, 302, 400.0)), 7.5 + k * 0.1) == []


def test_handover_when_another_track_takes_the_id_and_walks_off():
    """Someone walks past in front; the tracker moves the standing person's id onto the walker, and the standing
    person comes back under a new id: the new id continues the visit, the walker's id starts afresh."""
    z = PolygonZone("window", SQUARE, enter_frames=3, exit_s=1.0, handover_s=5)
    frames = [[(1, 250)]] * 40  # id 1 stands at x 250 for 4 s
    frames += [[(1, 250 + 10 * k)] for k in range(1, 6)]  # the id drifts off with the walker (10 px a frame)
    frames += [[(1, 300 + 3 * k), (7, 251)] for k in range(30)]  # the person at 250 is found again as id 7
    ev = play(z, frames)
    new = [d for _, kind, d in ev if kind == "zone_entered" and d["track_id"] == 7]
    assert len(new) == 1 and new[0]["continues"] == 1 and new[0]["enter_t"] == 0.0
    assert z.dwell_of(7) == pytest.approx(7.4)
    assert z.dwell_of(1) == pytest.approx(7.4 - 5.5)  # the walker's visit restarted at the handover (t = 5.5:
    # id 7, first seen at 4.5, is watched for 1 s before it enters)


def test_no_handover_to_someone_walking_past_where_a_person_stood():
    """The standing person's id is lost just as a stroller (40 px/s, 0.33 box heights per second) appears on the
    spot under a new id: the stroller's visit is their own, not the one of the person who stood there. A new id on
    the spot that stands still (1 px of jitter) continues the visit."""
    z = PolygonZone("window", SQUARE, enter_frames=3, exit_s=1.0, handover_s=5)
    frames = [[(1, 300)]] * 40 + [[]] * 5 + [[(2, 290 + 4 * k)] for k in range(20)]
    ev = play(z, frames)
    assert [(d["track_id"], d.get("continues")) for _, kind, d in ev if kind == "zone_entered"] == [(1, None),
                                                                                                    (2, None)]
    z = PolygonZone("window", SQUARE, enter_frames=3, exit_s=1.0, handover_s=5)  # the same standing still: taken
    ev = play(z, [[(1, 300)]] * 40 + [[]] * 5 + [[(2, 290 + (k % 2))] for k in range(20)])
    assert [(d["track_id"], d.get("continues")) for _, kind, d in ev if kind == "zone_entered"] == [(1, None),
                                                                                                    (2, 1)]


def test_no_handover_for_passers_by_a_neighbour_or_a_queue_moving_up():
    """A walker followed 1 s later along the same path, a second person stepping up beside one who stays, or the
    next customer walking up to where the last one stood are separate visits; without handover_s (the default) a
    swap is two visits, as before."""
    z = PolygonZone("aisle", SQUARE, enter_frames=3, exit_s=1.0, handover_s=5)
    frames = [[(1, 200 + 8 * k)] + ([(2, 200 + 8 * (k - 10))] if k >= 10 else []) for k in range(26)]
    assert all("continues" not in d for _, kind, d in play(z, frames) if kind == "zone_entered")
    z = PolygonZone("till", SQUARE, enter_frames=3, exit_s=1.0, handover_s=5)
    frames = [[(1, 300), (2, 100)]] * 30 + [[(1, 300 + 20 * k), (2, 100 + 15 * k)] for k in range(1, 14)]
    ev = play(z, frames)  # 1 is served and walks off right; 2, tracked outside all along, steps up to x 295
    assert [(d["track_id"], d.get("continues")) for _, kind, d in ev if kind == "zone_entered"] == [(1, None),
                                                                                                    (2, None)]
    z = PolygonZone("aisle", SQUARE, enter_frames=3, exit_s=1.0, handover_s=5)
    frames = [[(1, 300)]] * 30 + [[(1, 300), (2, 310)]] * 20  # 1 stays, 2 steps up beside it
    ev = play(z, frames)
    assert [d.get("continues") for _, kind, d in ev if kind == "zone_entered"] == [None, None]
    assert z.inside == {1, 2}
    z = PolygonZone("window", SQUARE, enter_frames=3, exit_s=1.0)
    frames = [[(1, 300)]] * 40 + [[]] * 5 + [[(2, 302)]] * 30
    ev = play(z, frames)
    assert [kind for _, kind, _ in ev] == ["zone_entered", "zone_entered", "zone_left"]
    assert ev[1][2]["enter_t"] == 4.5 and "continues" not in ev[1][2]


def test_handover_when_the_old_id_walks_out_with_a_passer_by():
    """The standing person's id jumps onto a walker heading out of the zone (outside, within its exit grace) and
    the person is found again as a new id: the new id continues the visit and the old id's visit ends unreported,
    not with a `zone_left` whose exit comes before its (reset) entry."""
    z = PolygonZone("window", SQUARE, enter_frames=3, exit_s=1.0, handover_s=5)
    frames = [[(1, 300)]] * 40  # id 1 stands at x 300 for 4 s
    frames += [[(1, 380 + 40 * k)] + ([(2, 300)] if k >= 3 else []) for k in range(40)]  # id 1 leaves at x > 400
    ev = play(z, frames)
    assert [(kind, d["track_id"], d.get("continues")) for _, kind, d in ev] == [("zone_entered", 1, None),
                                                                                ("zone_entered", 2, 1)]
    assert z.inside == {2} and z.dwell_of(2) == pytest.approx(7.9)


def test_a_visit_that_ends_is_held_while_a_new_id_may_take_it_over():
    """Hidden for 3.5 s (longer than exit_s) and found again under a new id: one visit, no `zone_left` between;
    a visit nobody takes over is reported as left handover_s later, with its true exit time."""
    z = PolygonZone("window", SQUARE, enter_frames=3, exit_s=1.0, handover_s=5)
    ev = play(z, [[(1, 300)]] * 40 + [[]] * 35 + [[(2, 302)]] * 30)
    assert [(kind, d["track_id"], d.get("continues")) for _, kind, d in ev] == [("zone_entered", 1, None),
                                                                                ("zone_entered", 2, 1)]
    assert not z.held(1)
    z = PolygonZone("window", SQUARE, enter_frames=3, exit_s=1.0, handover_s=5)
    ev = play(z, [[(1, 300)]] * 40 + [[]] * 80)
    assert [(k, kind) for k, kind, _ in ev] == [(2, "zone_entered"), (101, "zone_left")]  # ended 5.0, held 5 s
    assert ev[1][2]["exit_t"] == 4.0 and ev[1][2]["dwell_s"] == 4.0
    z = PolygonZone("window", SQUARE, enter_frames=3, exit_s=1.0, handover_s=5)  # the same id back: reported first
    ev = play(z, [[(1, 300)]] * 40 + [[]] * 20 + [[(1, 300)]] * 5)
    assert [(k, kind) for k, kind, _ in ev] == [(2, "zone_entered"), (60, "zone_left"), (62, "zone_entered")]


def test_stream_time_going_back_ends_the_visits_at_the_old_clock():
    """Another recording, or a clock reset: every visit ends where the old clock stopped (a `zone_left` with its
    true dwell, never a negative one), and nothing carries over to the new clock."""
    z = PolygonZone("window", SQUARE, enter_frames=3, exit_s=1.0, handover_s=5)
    ev = play(z, [[(1, 300)]] * 40)
    assert [kind for _, kind, _ in ev] == ["zone_entered"]
    (e,) = z.update(tracked((2, 300, 400.0)), 0.0)
    assert e.kind == "zone_left" and e.data["track_id"] == 1 and e.data["exit_t"] == 3.9 and e.data["dwell_s"] == 3.9
    assert z.inside == set() and not z.held(1)


def test_a_held_visit_is_reported_when_the_stream_ends():
    """The stream ends while a visit that ended is still held as a handover donor: `flush` reports it (its true exit
    time), so the last visitor's `zone_left` is not lost at shutdown."""
    z = PolygonZone("window", SQUARE, enter_frames=3, exit_s=1.0, handover_s=5)
    ev = play(z, [[(1, 300)]] * 40 + [[]] * 20)
    assert [kind for _, kind, _ in ev] == ["zone_entered"] and z.held(1)
    (e,) = z.flush(6.0)
    assert e.kind == "zone_left" and e.data["exit_t"] == 4.0 and e.data["dwell_s"] == 4.0
    assert z.flush(6.1) == [] and not z.held(1)
