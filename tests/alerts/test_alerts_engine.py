"""Alert lifecycle on a fed clock: for-duration, hysteresis, auto-resolve, cooldown, dedup, hours / quiet hours,
escalation, staff ack / resolve, and the event schema of every transition."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edge.alerts import AlertEngine, AlertsConfig, InvalidTransition, Reading, UnknownAlert
from edge.core.events import ListSink

from alerts_helpers import FakeWall, kinds, make_engine, wall

Q = ("queue_length", "checkout")
QUEUE = {"id": "checkout-queue", "title": "Long queue at checkout", "metric": "queue_length", "key": "checkout",
         "op": ">=", "threshold": 4, "for_s": 60, "clear_threshold": 2, "clear_for_s": 10, "cooldown_s": 120}
NOON = wall(12)


def feed(engine: AlertEngine, values: dict, t0: float, t1: float, step: float = 1.0, wall0: float = NOON) -> list:
    """Feed the same values every `step` seconds of stream time from t0 to t1 (inclusive); returns the events."""
    out, t = [], t0
    while t <= t1 + 1e-9:
        out += engine.update(values, t, wall0 + t)
        t += step
    return out


def test_opens_only_after_the_condition_held_for_s():
    engine, sink = make_engine(QUEUE)
    assert feed(engine, {Q: 5}, 0, 59) == []  # held 59 s of the 60 required
    assert feed(engine, {Q: 3}, 60, 60) == []  # dipped: the timer restarts
    assert feed(engine, {Q: 6}, 61, 120) == []
    (ev,) = feed(engine, {Q: 6}, 121, 121)
    assert ev.kind == "alert_opened" and ev.stream == "alerts"
    assert ev.data["state"] == "open" and ev.data["held_s"] == 60.0 and ev.data["opened_t"] == 121
    assert ev.data["value"] == 6 and ev.ts == NOON + 121
    assert [a["alert_id"] for a in engine.active()] == [ev.data["alert_id"]]
    assert feed(engine, {Q: 7}, 122, 200) == []  # still the same alert: nothing new
    assert engine.active()[0]["peak_value"] == 7 and engine.active()[0]["current_value"] == 7


def test_hysteresis_and_auto_resolve():
    engine, sink = make_engine(QUEUE)
    feed(engine, {Q: 5}, 0, 60)
    assert kinds(sink) == ["alert_opened"]
    # 3 is below the threshold (4) but above the clear threshold (2): the alert stays open
    assert feed(engine, {Q: 3}, 61, 300) == []
    # 2 still holds (the alert clears once queue_length >= 2 stops holding); 1 clears, but only after
    # clear_for_s (10 s), and a bounce back to 3 restarts the clear timer
    assert feed(engine, {Q: 2}, 301, 330) == []
    assert feed(engine, {Q: 1}, 331, 339) == []
    assert feed(engine, {Q: 3}, 340, 340) == []
    assert feed(engine, {Q: 1}, 341, 350) == []
    (ev,) = feed(engine, {Q: 1}, 351, 351)
    assert ev.kind == "alert_resolved" and ev.data["state"] == "resolved" and ev.data["resolution"] == "cleared"
    assert ev.data["resolve_via"] == "engine" and ev.data["resolved_t"] == 351 and ev.data["current_value"] == 1
    assert ev.data["value"] == 5 and ev.data["peak_value"] == 5  # the value that fired it stays in the record
    assert engine.active() == [] and engine.recent_resolved()[0]["alert_id"] == ev.data["alert_id"]


def test_missing_or_nan_values_neither_open_nor_clear():
    engine, sink = make_engine(QUEUE)
    feed(engine, {Q: 5}, 0, 30)
    feed(engine, {}, 31, 40)  # no data: the pending timer restarts
    assert feed(engine, {Q: 5}, 41, 100) == []
    assert kinds(feed(engine, {Q: 5}, 101, 101)) == ["alert_opened"]
    assert feed(engine, {Q: float("nan")}, 102, 500) == []  # an open alert is not resolved by missing data
    assert feed(engine, {Q: None}, 501, 600) == []
    assert engine.active()[0]["state"] == "open"
    # clear for 5 s, then a minute without data (e.g. the detector's breaker holds the metric): the gap does not
    # count towards clear_for_s (10 s); the clear timer starts over on the first fresh reading
    assert feed(engine, {Q: 1}, 601, 605) == []
    assert feed(engine, {Q: None}, 606, 665) == []
    assert feed(engine, {Q: 1}, 666, 675) == []
    assert kinds(feed(engine, {Q: 1}, 676, 676)) == ["alert_resolved"]


def test_numpy_values_and_evidence_become_plain_json():
    engine, sink = make_engine({**QUEUE, "for_s": 0}, {"id": "l", "metric": "loitering", "key": "door"})
    ids = np.array([3, 9])
    r = Reading(np.int64(5), track_ids=tuple(ids), durations_s={int(ids[0]): np.float32(12.5), 9: float("nan")},
                detail={"score": np.float32(0.75), "bad": float("inf"), "name": "NaN-aisle"})
    evs = engine.update({Q: r, ("loitering", "door"): np.bool_(True)}, 0.0, NOON)
    assert kinds(evs) == ["alert_opened", "alert_opened"]
    q = evs[0].data
    assert q["value"] == 5 and type(q["value"]) is int and evs[1].data["value"] is True
    assert q["evidence"] == {"track_ids": [3, 9], "durations_s": {"3": 12.5},
                             "detail": {"score": 0.75, "bad": None, "name": "NaN-aisle"}, "queue": "checkout"}
    json.dumps([e.to_dict() for e in evs], allow_nan=False)  # what the outbox accepts


def test_cooldown_after_resolve():
    engine, sink = make_engine(QUEUE)
    feed(engine, {Q: 5}, 0, 60)
    feed(engine, {Q: 0}, 61, 71)
    assert kinds(sink) == ["alert_opened", "alert_resolved"]  # resolved at t = 71: cooldown until 191
    assert feed(engine, {Q: 5}, 72, 190) == []  # held > 60 s, but inside the cooldown
    (ev,) = feed(engine, {Q: 5}, 191, 191)
    assert ev.kind == "alert_opened" and ev.data["held_s"] == 119.0


def test_dedup_key_shares_one_alert():
    dwell = {"id": "checkout-dwell", "metric": "dwell", "key": "checkout", "op": ">=", "threshold": 90,
             "dedup_key": "checkout-busy", "cooldown_s": 0, "clear_for_s": 0}
    queue = {**QUEUE, "for_s": 0, "dedup_key": "checkout-busy", "cooldown_s": 0, "clear_for_s": 0}
    engine, sink = make_engine(queue, dwell)
    both = {Q: 5, ("dwell", "checkout"): Reading(120.0, track_ids=(7,), durations_s={7: 120.0})}
    feed(engine, both, 0, 30)
    (alert,) = engine.active()
    assert kinds(sink) == ["alert_opened"] and alert["rule"] == "checkout-queue"
    assert alert["dedup_key"] == "checkout-busy" and alert["duplicates"] == ["checkout-dwell"]
    # the queue clears: its alert resolves, and the dwell rule (still firing, no cooldown) opens its own
    evs = feed(engine, {Q: 0, ("dwell", "checkout"): Reading(130.0, track_ids=(7,))}, 31, 31)
    assert kinds(evs) == ["alert_resolved", "alert_opened"]
    assert evs[1].data["rule"] == "checkout-dwell" and evs[1].data["evidence"]["track_ids"] == [7]
    assert evs[1].data["held_s"] == 31.0


def test_active_hours_and_quiet_hours_use_wall_time_of_day():
    loiter = {"id": "night-loiter", "metric": "loitering", "key": "entrance", "hours": "22:00-06:00", "for_s": 5}
    lunch = {"id": "kiosk-help", "metric": "help_requested", "key": "kiosk", "quiet_hours": "12:00-13:00",
             "severity": "info"}
    engine, sink = make_engine(loiter, lunch)
    flags = {("loitering", "entrance"): True, ("help_requested", "kiosk"): True}
    # 12:00-12:59: loitering is outside its hours, kiosk help inside its quiet hours: nothing opens
    for i in range(60):
        assert engine.update(flags, i * 60.0, wall(12, i)) == []
    # 13:00: quiet hours are over and help is still requested: it opens now
    assert [e.data["rule"] for e in engine.update(flags, 3600.0, wall(13, 0))] == ["kiosk-help"]
    # nobody loiters in the afternoon; at 23:10 someone does: after for_s (5 s) inside 22:00-06:00 it opens
    assert engine.update({**flags, ("loitering", "entrance"): False}, 3700.0, wall(13, 1)) == []
    assert engine.update(flags, 40000.0, wall(23, 10)) == []
    evs = engine.update(flags, 40005.0, wall(23, 10) + 5)
    assert [e.data["rule"] for e in evs] == ["night-loiter"] and evs[0].data["severity"] == "warning"


def test_escalation_raises_severity_when_not_acknowledged():
    help_rule = {"id": "kiosk-help", "metric": "help_requested", "key": "kiosk", "severity": "warning",
                 "escalate_after_s": 120}
    engine, sink = make_engine(help_rule, {**QUEUE, "escalate_after_s": 120, "for_s": 0})
    values = {("help_requested", "kiosk"): True, Q: 5}
    feed(engine, values, 0, 0)
    queue_alert = next(a for a in engine.active() if a["rule"] == "checkout-queue")
    engine.ack(queue_alert["alert_id"], by="sam")  # acknowledged in time: never escalates
    assert feed(engine, values, 1, 119) == []
    (ev,) = feed(engine, values, 120, 120)
    assert ev.kind == "alert_escalated" and ev.data["rule"] == "kiosk-help"
    assert ev.data["severity"] == "critical" and ev.data["rule_severity"] == "warning" and ev.data["escalated"]
    assert ev.data["state"] == "open" and ev.data["escalated_t"] == 120
    assert feed(engine, values, 121, 1000) == []  # one escalation per alert
    assert engine.active()[0]["severity"] == "critical"  # critical (escalated) sorts first


def test_ack_and_resolve_through_the_engine_api():
    clock = FakeWall(wall(12, 5))
    engine, sink = make_engine({**QUEUE, "for_s": 0}, wall_clock=clock)
    (opened,) = feed(engine, {Q: Reading(5, track_ids=(3, 4))}, 0, 0)
    alert_id = opened.data["alert_id"]
    with pytest.raises(UnknownAlert):
        engine.ack("nope")
    # by the event id of its `opened` event (what the cloud saw) as well as by the alert id
    out = engine.ack(opened.event_id, by="sam", note="on my way")
    assert out.changed and out.alert["state"] == "acked" and out.alert["alert_id"] == alert_id
    assert out.alert["acked_by"] == "sam" and out.alert["ack_note"] == "on my way" and out.alert["acked_at"] == clock.t
    again = engine.ack(alert_id, by="alex")
    assert not again.changed and again.alert["acked_by"] == "sam"  # one transition, whichever path comes first
    assert kinds(sink) == ["alert_opened", "alert_acked"]
    acked = sink.events[-1]
    assert acked.ts == clock.t and acked.data["transition"] == "acked" and acked.data["t"] == 0
    # an acked alert still resolves by itself when its condition clears
    evs = feed(engine, {Q: 0}, 1, 11)
    assert kinds(evs) == ["alert_resolved"] and evs[0].data["acked_by"] == "sam"
    with pytest.raises(InvalidTransition):
        engine.ack(alert_id)
    assert not engine.resolve(alert_id).changed  # already resolved: nothing changes
    assert kinds(sink) == ["alert_opened", "alert_acked", "alert_resolved"]


def test_staff_resolve_restarts_for_s_and_cooldown():
    engine, sink = make_engine({**QUEUE, "cooldown_s": 30, "for_s": 60})
    feed(engine, {Q: 5}, 0, 60)
    alert_id = engine.active()[0]["alert_id"]
    out = engine.resolve(alert_id, by="sam", note="opened till 2")
    assert out.changed and out.alert["resolution"] == "staff" and out.alert["resolved_by"] == "sam"
    assert out.alert["resolve_note"] == "opened till 2" and out.alert["resolved_t"] == 60
    # the queue is still there: a new alert needs 60 s of it again (and the 30 s cooldown)
    assert feed(engine, {Q: 5}, 61, 119) == []
    evs = feed(engine, {Q: 5}, 120, 120)
    assert kinds(evs) == ["alert_opened"] and evs[0].data["alert_id"] != alert_id


def test_stream_time_going_back_pauses_timers():
    engine, sink = make_engine(QUEUE)
    feed(engine, {Q: 5}, 100, 130)
    assert feed(engine, {Q: 5}, 0, 29) == []  # the recording looped: 30 + 29 s held, not more
    assert kinds(feed(engine, {Q: 5}, 30, 30)) == ["alert_opened"]


def test_disabled_rules_and_disabled_section_do_nothing():
    engine, sink = make_engine({**QUEUE, "enabled": False, "for_s": 0})
    feed(engine, {Q: 9}, 0, 10)
    engine2, sink2 = make_engine({**QUEUE, "for_s": 0}, enabled=False)
    feed(engine2, {Q: 9}, 0, 10)
    assert sink.events == [] and sink2.events == []


def test_event_schema_is_complete_and_json():
    engine, sink = make_engine({**QUEUE, "for_s": 0, "escalate_after_s": 5})
    r = Reading(5, track_ids=(11, 12), durations_s={11: 75.5, 12: 40.0},
                models={"pose_landmark_full": "0.10.21-int8"}, detail={"camera": "cam-1"})
    feed(engine, {Q: r}, 0, 5)
    engine.ack(engine.active()[0]["alert_id"], by="sam")
    engine.resolve(engine.active()[0]["alert_id"], by="sam")
    assert kinds(sink) == ["alert_opened", "alert_escalated", "alert_acked", "alert_resolved"]
    documented = {"v", "transition", "t", "alert_id", "rule", "title", "condition", "metric", "key", "key_kind", "unit",
                  "op", "threshold", "clear_threshold", "state", "severity", "rule_severity", "escalated", "value",
                  "current_value", "peak_value", "held_s", "evidence", "dedup_key", "duplicates", "opened_t",
                  "opened_at", "escalated_t", "escalated_at", "acked_t", "acked_at", "acked_by", "ack_note",
                  "ack_via", "resolved_t", "resolved_at", "resolved_by", "resolve_note", "resolve_via", "resolution"}
    for ev in sink.events:
        assert set(ev.data) == documented, set(ev.data) ^ documented
        assert json.loads(json.dumps(ev.to_dict())) == ev.to_dict()
    ev = sink.events[0].data
    assert ev["evidence"] == {"track_ids": [11, 12], "durations_s": {"11": 75.5, "12": 40.0},
                              "models": {"pose_landmark_full": "0.10.21-int8"}, "detail": {"camera": "cam-1"},
                              "queue": "checkout"}
    assert ev["condition"] == "queue_length(checkout) >= 4" and ev["title"] == "Long queue at checkout"
    assert len({e.data["alert_id"] for e in sink.events}) == 1 and len({e.event_id for e in sink.events}) == 4
    # the documented example in docs/ALERTS.md has exactly these fields
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "ALERTS.md").read_text()
    example = json.loads(doc.split("<!-- event-example -->")[1].split("```json")[1].split("```")[0])
    assert set(example["data"]) == documented


def test_sink_failure_does_not_lose_the_transition():
    class Broken(ListSink):
        def emit(self, event):
            raise OSError("disk full")

    engine = AlertEngine(AlertsConfig.model_validate({"rules": [{**QUEUE, "for_s": 0}]}), Broken())
    evs = engine.update({Q: 5}, 0.0, NOON)
    assert [e.kind for e in evs] == ["alert_opened"] and engine.active()[0]["state"] == "open"


def test_infinite_values_are_no_data_and_events_stay_strict_json():
    engine, sink = make_engine({**QUEUE, "for_s": 0, "clear_for_s": 0})
    # e.g. a wait estimate divided by a zero rate: no alert, and nothing the outbox would refuse
    assert feed(engine, {Q: float("inf")}, 0, 5) == []
    assert feed(engine, {Q: np.float32("-inf")}, 6, 8) == []
    (opened,) = feed(engine, {Q: 5}, 9, 9)
    # an open alert is neither cleared nor given an infinite current / peak value
    assert feed(engine, {Q: float("-inf")}, 10, 20) == [] and feed(engine, {Q: float("inf")}, 21, 30) == []
    a = engine.get(opened.data["alert_id"])
    assert a["state"] == "open" and a["current_value"] == 5 and a["peak_value"] == 5
    json.dumps([e.to_dict() for e in sink.events] + engine.active(), allow_nan=False)


def test_a_gap_in_updates_restarts_for_s_and_clear_for_s():
    engine, sink = make_engine(QUEUE)  # for_s 60, clear_for_s 10, cooldown 120; max_gap_s 30 by default
    feed(engine, {Q: 5}, 0, 2)
    # the camera was lost for 10 minutes: one frame before and one after do not make 60 s of a long queue
    assert feed(engine, {Q: 5}, 600, 658) == []
    (opened,) = feed(engine, {Q: 5}, 660, 660)
    assert opened.data["held_s"] == 60.0
    # one clear frame before a 5-minute gap is not 5 minutes clear: clear_for_s (10 s) counts from fresh data
    feed(engine, {Q: 0}, 661, 661)
    assert feed(engine, {Q: 0}, 961, 970) == []
    assert kinds(feed(engine, {Q: 0}, 971, 971)) == ["alert_resolved"]
    # steps up to max_gap_s are not gaps (a slow source)
    engine2, _ = make_engine({**QUEUE, "clear_for_s": 0}, max_gap_s=45)
    assert feed(engine2, {Q: 5}, 0, 45, step=15) == []
    assert kinds(feed(engine2, {Q: 5}, 60, 60)) == ["alert_opened"]
    # escalation still counts the gap: nobody acknowledged the alert meanwhile
    engine3, _ = make_engine({**QUEUE, "for_s": 0, "escalate_after_s": 120})
    feed(engine3, {Q: 5}, 0, 1)
    assert kinds(feed(engine3, {Q: 5}, 300, 300)) == ["alert_escalated"]


def test_forgotten_resolved_alerts_leave_no_event_ids_behind():
    engine, sink = make_engine({**QUEUE, "for_s": 0, "clear_for_s": 0, "cooldown_s": 0}, keep_resolved=1)
    for i in range(5):  # five alerts open and clear; only the last is kept
        feed(engine, {Q: 5}, 2 * i, 2 * i)
        feed(engine, {Q: 0}, 2 * i + 1, 2 * i + 1)
    assert kinds(sink) == ["alert_opened", "alert_resolved"] * 5
    last = engine.recent_resolved()[0]["alert_id"]
    assert [a["alert_id"] for a in engine.recent_resolved(10)] == [last]
    assert engine.get(sink.events[-1].event_id)["alert_id"] == last  # by its `resolved` event id
    with pytest.raises(UnknownAlert):
        engine.get(sink.events[-3].event_id)  # the `resolved` event of a forgotten alert
    assert set(engine._by_event.values()) == {last}  # the lookup table does not grow with every alert
    engine0, sink0 = make_engine({**QUEUE, "for_s": 0, "clear_for_s": 0}, keep_resolved=0)
    feed(engine0, {Q: 5}, 0, 0)
    feed(engine0, {Q: 0}, 1, 1)
    assert kinds(sink0) == ["alert_opened", "alert_resolved"] and engine0._by_event == {}
