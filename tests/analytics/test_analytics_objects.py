"""Queue, Loitering, ShelfInteraction, Heatmap and KioskHelp on scripted, hand-checked sequences."""
from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from analytics_helpers import tracked, with_wrists
from edge.analytics.heatmap import Heatmap
from edge.analytics.kiosk import KioskHelp
from edge.analytics.loitering import Loitering, parse_hours, within_hours
from edge.analytics.queue import Queue
from edge.analytics.shelf import ShelfInteraction
from edge.analytics.zones import PolygonZone
from edge.core.detections import Detections

LANE = [(0, 0), (200, 0), (200, 480), (0, 480)]


def zone(poly=LANE, name="z") -> PolygonZone:
    return PolygonZone(name, poly, enter_frames=1, exit_s=0.0)


def test_queue_length_service_rate_and_wait_estimate():
    """One frame per second. Head of the queue at the top (y = 0); people stand at y = 100, 200, 300."""
    q = Queue(zone(name="checkout"), head=(100, 0), min_services=2, min_interval_s=5, rate_window_s=600)
    script = {}  # t -> [(track, y)]
    for t in range(0, 30):
        script[t] = [(1, 100), (2, 200), (3, 300)]
    for t in range(30, 60):  # 1 served at t = 30; 2 and 3 move up
        script[t] = [(2, 100), (3, 200)]
    script[60] = [(3, 100)]  # 2 served at t = 60
    for t in range(61, 70):  # 4 joins at the back
        script[t] = [(3, 100), (4, 300)]
    for t in range(70, 75):  # 4 gives up (leaves from the back): not a service
        script[t] = [(3, 100)]
    events = []
    for t, people in script.items():
        events += [(t, e.data) for e in q.update(tracked(*((tid, 100, y) for tid, y in people)), float(t), None)]
        if t == 29:
            assert q.length == 3 and q.service_rate_per_min is None and q.wait_estimate_s is None
    got = [(t, d["length"], d["previous_length"], d["service_rate_per_min"], d["wait_estimate_s"]) for t, d in events]
    assert got == [
        (0, 3, 0, None, None),
        (30, 2, 3, None, None),  # one service: below min_services
        (60, 1, 2, 2.0, 30.0),  # 2 served in 60 busy seconds: 2 / min; 1 waiting: 30 s
        (65, 2, 1, pytest.approx(60 * 2 / 65, abs=0.01), 65.0),  # 4 joined at 61: reported 5 s after the last
        (70, 1, 2, pytest.approx(60 * 2 / 70, abs=0.01), 35.0),
    ]
    assert q.served_total == 2  # the one who left from the back was not served


def test_queue_head_outside_the_zone_still_serves_the_front():
    """The till 200 px beyond a 150 px deep queue zone (allowed: a head just out of view): the person at the front
    who leaves is served (before: "within half the distance to the farthest corner" lay outside the zone, so
    nobody was ever served and the wait estimate stayed None); one leaving from the back is not."""
    q = Queue(zone([[100, 100], [400, 100], [400, 250], [100, 250]]), head=(250, -100), min_services=1,
              min_interval_s=0)
    q.update(tracked((1, 250, 110), (2, 250, 240)), 0.0)  # front (y 110, nearest the till) and back
    q.update(tracked((2, 250, 240)), 10.0)  # the front one is served
    assert q.served_total == 1 and q.wait_estimate_s == pytest.approx(10.0)
    q.update(tracked(), 20.0)  # the last one leaves from the back, far from the till: not served
    assert q.served_total == 1


def test_queue_without_head_counts_every_departure():
    q = Queue(zone(), min_services=1, min_interval_s=0)
    q.update(tracked((1, 100, 300), (2, 100, 100)), 0.0)
    q.update(tracked((2, 100, 100)), 10.0)
    assert q.served_total == 1 and q.service_rate_per_min == pytest.approx(6.0)  # 1 in 10 busy seconds
    assert q.wait_estimate_s == pytest.approx(10.0)


def test_parse_hours():
    assert parse_hours("22:00-06:00") == (1320, 360)
    assert parse_hours("09:30-24:00") == (570, 1440)
    for bad in ("25:00-06:00", "22-06", "10:00-10:00"):
        with pytest.raises(ValueError):
            parse_hours(bad)
    night = [parse_hours("22:00-06:00")]
    ts = lambda h, m=0: datetime(2026, 11, 29, h, m, tzinfo=timezone.utc).timestamp()  # noqa: E731
    utc = ZoneInfo("UTC")
    assert within_hours(ts(23), night, utc) and within_hours(ts(5, 59), night, utc)
    assert not within_hours(ts(6), night, utc) and not within_hours(ts(12), night, utc)
    assert not within_hours(ts(21, 30), night, utc)
    assert within_hours(ts(21, 30), night, ZoneInfo("Europe/Berlin"))  # 22:30 local time (CET)


def test_loitering_only_within_hours_and_once_per_visit():
    utc = ZoneInfo("UTC")

    def visit(start_wall: float, seconds: int, lo: Loitering, tid: int = 1, t0: float = 0.0):
        out = []
        for s in range(seconds + 1):
            out += [e.data for e in lo.update(tracked((tid, 100, 300)), t0 + s, start_wall + s)]
        return out

    noon = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc).timestamp()
    lo = Loitering(zone(name="entrance"), after_s=60, hours=["22:00-06:00"], tz=utc)
    assert visit(noon, 120, lo) == []  # 2 minutes at noon: outside the hours
    late = datetime(2026, 11, 29, 23, 0, tzinfo=timezone.utc).timestamp()
    lo = Loitering(zone(name="entrance"), after_s=60, hours=["22:00-06:00"], tz=utc)
    ev = visit(late, 180, lo)
    assert len(ev) == 1 and ev[0]["dwell_s"] == 60.0 and ev[0]["t_wall"] == late + 60  # one per visit
    assert ev[0]["zone"] == "entrance" and lo.loiterers == {1}
    lo.update(tracked(), 181.0, late + 181)  # leaves
    assert lo.loiterers == frozenset()
    assert len(visit(late + 200, 70, lo, t0=200.0)) == 1  # a new visit is a new event
    # entered at 21:58: due at 21:59 but outside the hours; reported at 22:00 with the full dwell
    before = datetime(2026, 11, 29, 21, 58, tzinfo=timezone.utc).timestamp()
    lo = Loitering(zone(), after_s=60, hours=["22:00-06:00"], tz=utc)
    ev = visit(before, 180, lo)
    assert len(ev) == 1 and ev[0]["dwell_s"] == 120.0 and ev[0]["t_wall"] == before + 120


def test_loitering_needs_wall_time_for_hours():
    lo = Loitering(zone(), after_s=1, hours=["00:00-24:00"])
    assert all(lo.update(tracked((1, 100, 300)), float(s), None) == [] for s in range(5))
    anytime = Loitering(zone(), after_s=1)
    assert sum(len(anytime.update(tracked((1, 100, 300)), float(s), None)) for s in range(5)) == 1


SHELF = [(0, 0), (200, 0), (200, 200), (0, 200)]


def test_wrist_entering_a_shelf_polygon():
    sh = ShelfInteraction("shelf-A3", SHELF, min_frames=3, release_frames=3)
    inside, outside = (100, 100), (300, 300)
    script = ([(outside, None)] * 2 + [(inside, None)] * 2 + [(outside, None)]  # a 2-frame touch: nothing
              + [(None, inside)] * 5  # the right wrist in for 5 frames: one interaction at the 3rd
              + [(outside, outside), (outside, outside), (inside, None)]  # 2 frames out: same reach
              + [(outside, None)] * 3 + [(inside, None)] * 3)  # released, then a new reach
    events = []
    for k, (left, right) in enumerate(script):
        events += [(k, e.data) for e in sh.update(with_wrists((7, left, right)), k / 10, None)]
    assert [(k, d["hand"], d["track_id"], d["shelf"]) for k, d in events] == [
        (7, "right_wrist", 7, "shelf-A3"), (18, "left_wrist", 7, "shelf-A3")]
    assert events[0][1]["start_t"] == 0.5
    assert sh.interactions == 2 and sh.active == {7}
    # unconfirmed tracks and detections without keypoints never interact
    sh2 = ShelfInteraction("s", SHELF, min_frames=1)
    assert sh2.update(with_wrists((-1, (100, 100), None)), 0.0) == []
    assert sh2.update(tracked((1, 100, 100)), 0.1) == []


def test_heatmap_sums_and_periods():
    hm = Heatmap((640, 480), grid=(16, 12), period_s=10)  # 40 x 40 px cells
    frame = tracked((1, 20, 20), (2, 639, 480))  # cells (0, 0) and (11, 15): y = 480 clips to the last row
    assert hm.update(frame, 0.0) == [] and hm.update(frame, 1.0) == [] and hm.update(frame, 2.0) == []
    assert hm.update(tracked((-1, 300, 300)), 3.0) == []  # unconfirmed: not counted, but a frame
    assert hm.counts[0, 0] == 3 and hm.counts[11, 15] == 3 and hm.counts.sum() == 6
    ev = hm.update(tracked((1, 100, 100)), 10.0)
    assert len(ev) == 1
    d = ev[0].data
    counts = np.array(d["counts"])
    assert counts.shape == (12, 16) and counts.dtype.kind == "i" and d["total"] == 6 and d["frames"] == 4
    assert counts[0, 0] == 3 and counts[11, 15] == 3
    assert d["period_start_t"] == 0.0 and d["period_end_t"] == 10.0 and d["unit"] == "person_frames"
    ev = hm.update(tracked(), 35.0)  # period 10-20 had one frame; 20-30 none (skipped); now in 30-40
    assert len(ev) == 1 and ev[0].data["total"] == 1 and ev[0].data["counts"][2][2] == 1
    assert ev[0].data["period_start_t"] == 10.0
    assert hm.flush(36.0)[0].data["period_start_t"] == 30.0 and hm.flush(37.0) == []


def test_heatmap_period_start_wall_time_matches_its_stream_time():
    """After periods with no frame (a camera outage), the next period starts on the period grid: its
    period_start_t_wall is the wall time of period_start_t, not of the frame that opened it."""
    hm = Heatmap((640, 480), period_s=10)
    hm.update(tracked((1, 20, 20)), 0.0, 1000.0)
    hm.update(tracked((1, 20, 20)), 0.1, 1000.1)
    (ev,) = hm.update(tracked((1, 20, 20)), 37.5, 1037.5)  # no frame 0.1-37.5: the next period is 30-40
    assert ev.data["period_start_t_wall"] == 1000.0
    (ev,) = hm.flush(38.0, 1038.0)
    assert ev.data["period_start_t"] == 30.0 and ev.data["period_start_t_wall"] == 1030.0


def test_kiosk_help_waits_for_staff_absence():
    kiosk = [(0, 0), (200, 0), (200, 480), (0, 480)]
    staff = [(400, 0), (640, 0), (640, 480), (400, 480)]
    kh = KioskHelp(zone(kiosk, "kiosk"), zone(staff, "staff"), name="kiosk-1", after_s=30)
    events = []
    for t in range(0, 90):
        people = [(1, 100, 300)] if t < 85 else []  # the customer, until t = 85
        if t <= 10 or t == 50:
            people.append((9, 500, 300))  # staff behind the counter until t = 10, and again at t = 50
        events += [(t, e.kind, e.data) for e in kh.update(tracked(*people), float(t), None)]
        if t == 39:
            assert not kh.requested and kh.waiting_s == pytest.approx(29)
    got = [(t, kind, d["track_id"], d.get("waited_s"), d.get("reason")) for t, kind, d in events]
    assert got == [(40, "help_requested", 1, 30.0, None),  # unattended since the staff left (t = 10)
                   (50, "help_resolved", 1, None, "staff_arrived"),
                   (80, "help_requested", 1, 30.0, None),  # staff last seen at t = 50
                   (85, "help_resolved", 1, None, "customer_left")]
    assert events[1][2]["duration_s"] == 10.0 and not kh.requested


def test_kiosk_help_after_stream_time_went_back():
    """Another recording or a clock reset: an open request ends at the old clock's last frame (customer_left, a
    true duration, never a negative one), and staff seen on the old clock do not hold off the next request."""
    kiosk = [(0, 0), (200, 0), (200, 480), (0, 480)]
    staff = [(400, 0), (640, 0), (640, 480), (400, 480)]
    kh = KioskHelp(zone(kiosk, "kiosk"), zone(staff, "staff"), after_s=30)
    out = []
    for t in range(0, 101):  # old clock: customer 1 all along, staff until t = 5 (request at 35)
        out += kh.update(tracked((1, 100, 300), *([(9, 500, 300)] if t <= 5 else [])), float(t))
    assert [(e.kind, e.data["t"]) for e in out] == [("help_requested", 35.0)]
    (e,) = kh.update(tracked((5, 100, 300)), 0.0)  # new clock: customer 5 (the tracker's ids keep counting)
    assert (e.kind, e.data["reason"], e.data["duration_s"]) == ("help_resolved", "customer_left", 65.0)
    kh2 = KioskHelp(zone(kiosk, "kiosk"), zone(staff, "staff"), after_s=30)
    for t in range(0, 96):  # old clock: staff until t = 95, nobody at the kiosk
        kh2.update(tracked((9, 500, 300)), float(t))
    ev = [(t, e.kind) for t in range(0, 60) for e in kh2.update(tracked((5, 100, 300)), float(t))]
    assert ev == [(30, "help_requested")]  # unattended since it came (t = 0 on the new clock)


def test_kiosk_help_in_a_handover_zone_ends_when_stream_time_goes_back():
    """A request whose customer is held for a handover when the clock goes back ends at the old clock's last frame,
    not later with a duration mixing both clocks (negative)."""
    kh = KioskHelp(PolygonZone("kiosk", [(0, 0), (200, 0), (200, 480), (0, 480)], enter_frames=1, exit_s=0.0,
                               handover_s=5), after_s=30)
    for t in range(0, 41):
        kh.update(tracked((1, 100, 300)), float(t))
    kh.update(tracked(), 41.0)  # the customer vanished: held for a handover
    out = [e for t in (0.0, 1.0, 10.0) for e in kh.update(tracked(), t)]  # new clock
    assert [(e.kind, e.data["reason"], e.data["duration_s"]) for e in out] == [("help_resolved", "customer_left",
                                                                                 11.0)]


def test_kiosk_help_without_staff_zone():
    kh = KioskHelp(zone(name="kiosk"), after_s=5)
    ev = [e for t in range(10) for e in kh.update(tracked((3, 100, 300)), float(t), None)]
    assert [(e.kind, e.data["waited_s"]) for e in ev] == [("help_requested", 5.0)]


def test_events_are_json_and_carry_no_pixels():
    import json

    hm = Heatmap((640, 480), period_s=1)
    hm.update(tracked((1, 20, 20)), 0.0, 1000.0)
    ev = hm.update(tracked((1, 20, 20)), 1.0, 1001.0)
    d = ev[0].to_dict()
    assert json.loads(json.dumps(d)) == d and ev[0].stream == "events" and ev[0].ts == 1001.0
    assert isinstance(Detections.empty(), Detections)


def test_loitering_survives_a_tracker_id_swap():
    """A loiterer whose id changes half way (lost for 0.5 s, found as a new id) is reported once, on time, under
    the new id; swapped after the report, they are not reported again."""
    from analytics_helpers import tracked

    def feed(lo, swap_at: float, until: float) -> list:
        out, t = [], 0.0
        while t < until:
            tid = 1 if t < swap_at else 2
            dets = tracked() if swap_at <= t < swap_at + 0.5 else tracked((tid, 300.0, 400.0))
            out += [(round(t, 1), e.data) for e in lo.update(dets, round(t, 1))]
            t += 0.1
        return out

    sq = [(200, 300), (400, 300), (400, 480), (200, 480)]
    lo = Loitering(PolygonZone("window", sq, handover_s=5), after_s=30)
    ev = feed(lo, swap_at=20.0, until=45.0)
    assert [(t, d["track_id"], d["dwell_s"]) for t, d in ev] == [(30.0, 2, 30.0)]
    lo = Loitering(PolygonZone("window", sq, handover_s=5), after_s=30)
    ev = feed(lo, swap_at=35.0, until=70.0)
    assert [(t, d["track_id"]) for t, d in ev] == [(30.0, 1)]
    assert lo.loiterers == {2}
    lo = Loitering(PolygonZone("window", sq), after_s=30)  # without handover (the default): late, as before
    ev = feed(lo, swap_at=20.0, until=55.0)
    assert [(t, d["track_id"]) for t, d in ev] == [(50.5, 2)]


def test_a_help_request_and_a_loiterer_survive_a_hide_longer_than_the_exit_grace():
    """Hidden for 3.5 s behind someone (exit_s 1 s) and found again under a new id: the kiosk request stands (no
    `help_resolved`, so the staff alert neither clears nor waits out a cooldown to come back) and the loiterer is
    not reported twice."""
    from analytics_helpers import tracked

    sq = [(200, 300), (400, 300), (400, 480), (200, 480)]
    kh = KioskHelp(PolygonZone("kiosk", sq, exit_s=1.0, handover_s=5), after_s=30)
    lo = Loitering(PolygonZone("window", sq, exit_s=1.0, handover_s=5), after_s=30)
    out = []
    for k in range(700):
        t = round(k * 0.1, 1)
        dets = tracked((1, 300.0, 400.0)) if t < 40 else tracked() if t < 43.5 else tracked((2, 301.0, 400.0))
        out += [(t, e.kind, e.data["track_id"]) for e in kh.update(dets, t) + lo.update(dets, t)]
    assert out == [(30.0, "help_requested", 1), (30.0, "loitering", 1)]
    assert kh.requester == 2 and lo.loiterers == {2}
