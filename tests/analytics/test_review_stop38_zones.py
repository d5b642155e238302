"""Time nobody saw is no presence: zone visits, queue service rates, loitering and kiosk help across a camera outage
(no frame for longer than the tracker's OUTAGE_S) and across a shorter gap in the frames, on media time; and state
kept on the old clock after stream time goes back (queue reports, heatmap periods)."""
from __future__ import annotations

import numpy as np
import pytest

from analytics_helpers import tracked
from edge.analytics.composer import Analytics
from edge.analytics.config import AnalyticsConfig
from edge.analytics.heatmap import Heatmap
from edge.analytics.kiosk import KioskHelp
from edge.analytics.loitering import Loitering
from edge.analytics.queue import Queue
from edge.analytics.tracker import OUTAGE_S
from edge.analytics.zones import PolygonZone
from edge.core.detections import Detections

SQUARE = [(200, 300), (400, 300), (400, 480), (200, 480)]
FPS = 10


def boxes(*xs: float, y: float = 400.0) -> Detections:
    """Untracked person boxes (detector output) with their bottom centre at (x, y)."""
    if not xs:
        return Detections.empty()
    return Detections(np.array([[x - 20, y - 120, x + 20, y] for x in xs], np.float32), np.full(len(xs), 0.9),
                      np.zeros(len(xs)))


def frames(t0: float, t1: float) -> list[float]:
    """Frame times at FPS from t0 up to (not including) t1."""
    return [round(t0 + k / FPS, 6) for k in range(round((t1 - t0) * FPS))]


def play(obj, script) -> list:
    """Feed (t, detections) pairs to obj.update (wall time 1e9 + t); returns the events."""
    out = []
    for t, dets in script:
        out += obj.update(dets, t, 1e9 + t)
    return out


def analytics(**extra) -> Analytics:
    cfg = {"zones": [{"name": "aisle", "polygon": [list(p) for p in SQUARE], "exit_s": 1.0,
                      **extra.pop("zone", {})}], **extra}
    return Analytics.from_config(AnalyticsConfig.model_validate(cfg), None)


def test_a_visit_open_at_an_outage_ends_where_the_person_was_last_seen():
    """Someone stands in the zone 0-10 s; the camera is out 10-30 s (media time jumps); frames resume with them
    still there. Their visit ends at the last frame before the outage (zone_left at once, dwell 9.7 s), and they
    start a new visit under the new id the tracker gives them (before: exit_t 30.0, dwell 29.8 s of which 20 s
    nobody saw)."""
    assert 30.0 - 10.0 > OUTAGE_S
    an = analytics()
    ev = play(an, [(t, boxes(300)) for t in frames(0, 10) + frames(30, 35)])
    visits = [(e.kind, e.data["track_id"], e.data["enter_t"], e.data.get("exit_t"), e.data.get("dwell_s"),
               e.data["t"]) for e in ev]
    (first, second) = sorted({v[1] for v in visits})
    assert visits == [("zone_entered", first, 0.2, None, None, 0.4),
                      ("zone_left", first, 0.2, 9.9, 9.7, 30.0),
                      ("zone_entered", second, 30.2, None, None, 30.4)]
    # nobody back after the outage: the same exit, reported at the first frame after it
    an = analytics()
    ev = play(an, [(t, boxes(300)) for t in frames(0, 10)] + [(t, boxes()) for t in frames(30, 32)])
    assert [(e.kind, e.data.get("exit_t"), e.data.get("dwell_s"), e.data["t"]) for e in ev] == [
        ("zone_entered", None, None, 0.4), ("zone_left", 9.9, 9.7, 30.0)]


def test_no_handover_and_no_loitering_across_an_outage():
    """A window zone with a 10-s handover: the person found on the same spot after a 6-s outage (the tracker gave
    them a new id) does not continue the old visit, so the 12-s loitering rule does not fire on time nobody saw
    (before: the new id took the visit over with enter_t 0.2, and `loitering` came at 17.2 s with dwell_s 17.0, of
    which the person was seen 10.9 s)."""
    an = analytics(zone={"handover_s": 10.0}, loitering=[{"name": "window", "zone": "aisle", "after_s": 12.0}])
    ev = play(an, [(t, boxes(300)) for t in frames(0, 10) + frames(16, 22)])
    assert [e.kind for e in ev if e.kind == "loitering"] == []
    entered = [e.data for e in ev if e.kind == "zone_entered"]
    assert len(entered) == 2 and "continues" not in entered[1] and entered[1]["enter_t"] >= 16.0
    (left,) = [e.data for e in ev if e.kind == "zone_left"]
    assert left["exit_t"] == 9.9 and left["dwell_s"] == 9.7
    # the handover itself still works without an outage (hidden 3.5 s behind someone, frames keep coming)
    an = analytics(zone={"handover_s": 5.0})
    ev = play(an, [(t, boxes(300)) for t in frames(0, 10)] + [(t, boxes()) for t in frames(10, 13.5)]
              + [(t, boxes(302)) for t in frames(13.5, 17)])
    assert [(e.kind, "continues" in e.data) for e in ev] == [("zone_entered", False), ("zone_entered", True)]


def test_loitering_ignores_time_unseen_in_an_outage_with_upstream_ids():
    """Track ids from upstream (tracker off, e.g. the pose tracker's), the same id seen again after a 20-s outage:
    no loitering at 15 s, since the person was seen 9.9 s + 5 s (before: `loitering` at t = 30 with dwell_s 30)."""
    z = PolygonZone("window", SQUARE, enter_frames=1, exit_s=1.0)
    lo = Loitering(z, after_s=15.0)
    assert play(lo, [(t, tracked((1, 300, 400))) for t in frames(0, 10) + frames(30, 35)]) == []
    z = PolygonZone("window", SQUARE, enter_frames=1, exit_s=1.0)
    ev = play(z, [(t, tracked((1, 300, 400))) for t in frames(0, 10) + frames(30, 35)])
    assert [(e.kind, e.data["enter_t"], e.data.get("dwell_s")) for e in ev] == [
        ("zone_entered", 0.0, None), ("zone_left", 0.0, 9.9), ("zone_entered", 30.0, None)]


def test_queue_rate_and_services_leave_out_an_outage():
    """A at the head and B behind from 0 s; A is served at 5 s, B moves up; the camera is out 10-70 s; B is still
    at the head after it (a new id). One service, and the queue was busy 19 s, not 79.5 (before: B's old id counted
    as served when its visit ended after the outage, and the 60 s nobody saw made the queue look slow)."""
    an = analytics(queues=[{"name": "q", "zone": "aisle", "head": [300, 300], "min_services": 1,
                            "min_interval_s": 0.0}])
    script = [(t, boxes(260, 340, y=330) if t < 5 else boxes(340, y=330)) for t in frames(0, 10)]
    script += [(t, boxes(340, y=330)) for t in frames(70, 80)]
    play(an, script)
    q = an.queues["q"]
    assert q.served_total == 1
    assert q.length == 1 and q.service_rate_per_min == pytest.approx(60 / 19.0, abs=0.05)


def test_kiosk_request_ends_at_the_last_frame_before_an_outage():
    """An open help request when the camera goes out (20-60 s): `help_resolved` (customer_left) at the first frame
    after it, its duration ending at the last frame before (before: 51 s later, with 40 s nobody saw)."""
    kh = KioskHelp(PolygonZone("kiosk", SQUARE, enter_frames=1, exit_s=1.0), after_s=10.0)
    ev = play(kh, [(t, tracked((1, 300, 400))) for t in frames(0, 20)] + [(t, tracked()) for t in frames(60, 63)])
    assert [(e.kind, e.data["t"], e.data.get("duration_s")) for e in ev] == [("help_requested", 10.0, None),
                                                                            ("help_resolved", 60.0, 9.9)]


def test_a_gap_shorter_than_an_outage_counts_no_unseen_time_past_the_grace():
    """No frame for 3 s (a stall; the tracker keeps its tracks): someone not seen after it was last seen before it
    (exit_t 4.9, and the live dwell stops there too; before: exit_t 7.9); someone seen again after it, even a frame
    late, keeps the visit."""
    z = PolygonZone("aisle", SQUARE, enter_frames=1, exit_s=1.0)
    ev = play(z, [(t, tracked((1, 300, 400))) for t in frames(0, 5)] + [(7.9, tracked())])
    assert z.dwell_of(1) == pytest.approx(4.9)  # in the exit grace: the last time seen
    ev += play(z, [(t, tracked()) for t in frames(8, 9.5)])
    assert [(e.kind, e.data.get("exit_t"), e.data.get("dwell_s"), e.data["t"]) for e in ev] == [
        ("zone_entered", None, None, 0.0), ("zone_left", 4.9, 4.9, 8.9)]
    z = PolygonZone("aisle", SQUARE, enter_frames=1, exit_s=1.0)
    ev = play(z, [(t, tracked((1, 300, 400))) for t in frames(0, 5)] + [(7.9, tracked())]
              + [(t, tracked((1, 300, 400))) for t in frames(8, 10)])
    assert [e.kind for e in ev] == ["zone_entered"] and z.dwell_of(1) == pytest.approx(9.9)


def test_queue_reports_at_once_after_stream_time_goes_back():
    """The next recording starts at t = 0 after a report at 48 s: the queue emptied by the cut is reported in its
    first frame (before: nothing until the new clock passed 53 s)."""
    q = Queue(PolygonZone("q", SQUARE, enter_frames=1, exit_s=1.0), min_interval_s=5.0)
    script = [(float(t), tracked((1, 300, 400), *([(2, 350, 400)] if t >= 48 else []))) for t in range(50)]
    ev = play(q, script)
    assert [(e.data["t"], e.data["length"]) for e in ev] == [(0.0, 1), (48.0, 2)]
    ev = play(q, [(0.0, tracked()), (1.0, tracked())])
    assert [(e.data["t"], e.data["length"], e.data["previous_length"]) for e in ev] == [(0.0, 0, 2)]


def test_heatmap_period_ends_when_stream_time_goes_back():
    """A 300-s period started at 900 s on the old clock: when time goes back to 0 it is reported (ending at the old
    clock's last frame, 1000 s) and a new period starts at 0 (before: the new recording's first 1200 s all went
    into the old period)."""
    hm = Heatmap((640, 480), period_s=300.0)
    ev = play(hm, [(float(t), tracked((1, 300, 400))) for t in range(0, 1001, 10)])
    assert [e.data["period_start_t"] for e in ev] == [0.0, 300.0, 600.0]
    ev = play(hm, [(float(t), tracked((1, 300, 400))) for t in range(0, 301, 10)])
    assert [(e.data["period_start_t"], e.data["period_end_t"], e.data["frames"]) for e in ev] == [
        (900.0, 1000.0, 11), (0.0, 300.0, 30)]


def test_a_visit_that_ended_is_reported_before_the_same_ids_next_one():
    """The same id back in a frame that both reports its last visit as over and starts its next one (a held
    handover donor; stream time going back with upstream ids): `zone_left` comes first, so a consumer pairing
    visits by track id closes the old one, not the new one (before: zone_entered, then zone_left, for id 1)."""
    z = PolygonZone("window", SQUARE, enter_frames=1, exit_s=1.0, handover_s=5)
    ev = play(z, [(t, tracked((1, 300, 400))) for t in frames(0, 4)] + [(t, tracked()) for t in frames(4, 6)]
              + [(6.0, tracked((1, 300, 400)))])
    assert [(e.kind, e.data["t"]) for e in ev] == [("zone_entered", 0.0), ("zone_left", 6.0),
                                                   ("zone_entered", 6.0)]
    z = PolygonZone("window", SQUARE, enter_frames=1, exit_s=1.0)
    ev = play(z, [(t, tracked((1, 300, 400))) for t in frames(0, 4)] + [(0.0, tracked((1, 300, 400)))])
    assert [(e.kind, e.data["enter_t"], e.data.get("exit_t")) for e in ev] == [
        ("zone_entered", 0.0, None), ("zone_left", 0.0, 3.9), ("zone_entered", 0.0, None)]


def test_a_queue_in_a_handover_zone_counts_the_service_once_the_held_visit_is_reported():
    """A checkout zone with handover on: the customer at the head for 10 s leaves; their visit is held 5 s as a
    handover donor, then reported as left: one service at their exit time, as without handover (before: the
    at-head mark was dropped while the visit was held, so no queue with handover ever counted a service)."""
    for handover_s in (0.0, 5.0):
        q = Queue(PolygonZone("q", SQUARE, enter_frames=1, exit_s=1.0, handover_s=handover_s), head=(300, 300),
                  min_services=1)
        play(q, [(t, tracked((1, 300, 330))) for t in frames(0, 10)] + [(t, tracked()) for t in frames(10, 20)])
        assert q.served_total == 1 and q.service_rate_per_min == pytest.approx(60 / 11.0)
