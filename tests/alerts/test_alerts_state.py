"""Open and acked alerts survive a restart: a real engine restarted from its state file continues the same alerts
(ack / resolve, auto-resolve after clear_for_s of fresh data, no duplicate), counts the time it was down for
escalation and cooldown, resolves alerts whose rule is gone, and survives a damaged or unwritable state file."""
from __future__ import annotations

import json
import logging

from edge.alerts import AlertEngine, AlertsConfig, Reading
from edge.app.behaviour import alert_state_path
from edge.core.events import ListSink

from alerts_helpers import FakeWall, kinds, wall
from payload_schemas import check_event

Q, H, S = ("queue_length", "checkout"), ("help_requested", "kiosk"), ("facing_empty", "A3")
QUEUE = {"id": "checkout-queue", "title": "Long queue at checkout", "metric": "queue_length", "key": "checkout",
         "op": ">=", "threshold": 4, "for_s": 60, "clear_threshold": 2, "clear_for_s": 10, "cooldown_s": 120}
HELP = {"id": "kiosk-help", "metric": "help_requested", "key": "kiosk", "severity": "warning", "clear_for_s": 3}
SHELF = {"id": "facing-a3", "metric": "facing_empty", "key": "A3", "severity": "info"}
NOON = wall(12)


def engine_at(path, *rules, clock: FakeWall | None = None, **alerts) -> tuple[AlertEngine, ListSink]:
    """A real engine on the state file `path` (a restart is a new engine on the same file)."""
    cfg = AlertsConfig.model_validate({"timezone": "UTC", **alerts, "rules": list(rules)})
    sink = ListSink()
    return AlertEngine(cfg, sink, wall_clock=clock or FakeWall(NOON), state_path=path), sink


def feed(engine: AlertEngine, values: dict, t0: float, t1: float, wall0: float = NOON) -> list:
    out, t = [], t0
    while t <= t1:
        out += engine.update(values, t, wall0 + t)
        t += 1.0
    return out


def checked(sink: ListSink) -> list:
    for ev in sink.events:
        check_event(ev.to_dict())
    return sink.events


def test_open_and_acked_alerts_continue_after_a_restart(tmp_path):
    path = tmp_path / "alert-state.json"
    a, sink_a = engine_at(path, QUEUE, HELP)
    feed(a, {Q: Reading(5, track_ids=(17, 21)), H: True}, 0, 60)
    queue_id = next(x["alert_id"] for x in a.active() if x["rule"] == "checkout-queue")
    help_id = next(x["alert_id"] for x in a.active() if x["rule"] == "kiosk-help")
    a.ack(help_id, by="sam", note="on my way", via="page")
    before = a.active()
    opened_queue = next(e for e in sink_a.events if e.kind == "alert_opened" and e.data["alert_id"] == queue_id)

    b, sink_b = engine_at(path, QUEUE, HELP)  # the restart: a new engine on the same file
    assert b.active() == before and sink_b.events == []  # same ids, states, ack, evidence; nothing re-sent
    assert b.get(opened_queue.event_id)["alert_id"] == queue_id  # the id the cloud has still works

    # the condition still holds long past for_s: the same alert goes on, no duplicate opens
    assert feed(b, {Q: 6, H: True}, 5000, 5200) == []
    out = b.ack(opened_queue.event_id, by="hq-ops", via="mqtt")
    assert out.changed and out.alert["alert_id"] == queue_id and out.alert["ack_via"] == "mqtt"
    # auto-resolve: after clear_for_s (3 s, 10 s) of fresh clear data
    assert feed(b, {Q: 1, H: False}, 5201, 5203) == []
    resolved = feed(b, {Q: 1, H: False}, 5204, 5204)
    assert feed(b, {Q: 1, H: False}, 5205, 5210) == []
    resolved += feed(b, {Q: 1, H: False}, 5211, 5211)
    assert [(e.kind, e.data["alert_id"], e.data["resolution"]) for e in resolved] == [
        ("alert_resolved", help_id, "cleared"), ("alert_resolved", queue_id, "cleared")]
    assert resolved[0].data["acked_by"] == "sam"  # the ack of before the restart is part of the alert
    assert b.active() == [] and kinds(checked(sink_b)) == ["alert_acked", "alert_resolved", "alert_resolved"]
    checked(sink_a)

    c, sink_c = engine_at(path, QUEUE, HELP)  # nothing left to continue
    assert c.active() == [] and sink_c.events == []


def test_clear_for_s_counts_only_data_seen_after_the_restart(tmp_path):
    path = tmp_path / "alert-state.json"
    a, _ = engine_at(path, QUEUE)
    feed(a, {Q: 5}, 0, 60)
    assert feed(a, {Q: 0}, 61, 69) == []  # 9 s of the 10 s clear_for_s
    b, sink = engine_at(path, QUEUE)
    assert feed(b, {Q: 0}, 0, 9) == []  # the 9 s before the restart do not count
    (ev,) = feed(b, {Q: 0}, 10, 10)
    assert ev.kind == "alert_resolved" and ev.data["alert_id"] == a.active()[0]["alert_id"]
    # and no data at all (the analytics not ready yet) neither clears nor resolves it
    c, _ = engine_at(tmp_path / "other.json", QUEUE)
    feed(c, {Q: 5}, 0, 60)
    d, _ = engine_at(tmp_path / "other.json", QUEUE)
    assert feed(d, {}, 0, 100) == [] and d.active()[0]["state"] == "open"


def test_escalation_and_cooldown_count_the_time_the_device_was_down(tmp_path):
    rule = {**QUEUE, "for_s": 0, "escalate_after_s": 300}
    clock = FakeWall(NOON)
    a, _ = engine_at(tmp_path / "s.json", rule, clock=clock)
    feed(a, {Q: 5}, 0, 100)  # open since t=0 (saved then: open 0 s at wall NOON)
    clock.t = NOON + 250  # restarted 250 s later; stream time starts over at 7
    b, sink = engine_at(tmp_path / "s.json", rule, clock=clock)
    assert feed(b, {Q: 5}, 7, 56) == []  # 250 + 49 s open
    (ev,) = feed(b, {Q: 5}, 57, 57)
    assert ev.kind == "alert_escalated" and ev.data["severity"] == "critical"
    assert ev.data["alert_id"] == a.active()[0]["alert_id"]
    assert feed(b, {Q: 5}, 58, 400) == []  # once
    c, _ = engine_at(tmp_path / "s.json", rule, clock=clock)  # the escalation is kept too
    assert c.active()[0]["escalated"] and feed(c, {Q: 5}, 0, 400) == []

    # cooldown: resolved at wall NOON + 250, restarted 100 s later: 20 of its 120 s left
    c.resolve(c.active()[0]["alert_id"], by="sam")
    clock.t = NOON + 350
    d, _ = engine_at(tmp_path / "s.json", rule, clock=clock)
    assert feed(d, {Q: 5}, 0, 19) == []
    assert kinds(feed(d, {Q: 5}, 20, 20)) == ["alert_opened"]
    # a wall clock that went back counts as no time down (never as negative)
    clock.t = NOON
    e, _ = engine_at(tmp_path / "s.json", rule, clock=clock)
    assert feed(e, {Q: 5}, 0, 299) == [] and e.active()[0]["alert_id"] == d.active()[0]["alert_id"]
    assert kinds(feed(e, {Q: 5}, 300, 300)) == ["alert_escalated"]


def test_a_clock_that_was_not_set_counts_no_downtime(tmp_path):
    """Saved before the clock was set (no RTC, before NTP: 1970), restarted with the real time: decades "down" would
    escalate every alert at once; the downtime is unknown and counts as none."""
    rule = {**QUEUE, "for_s": 0, "escalate_after_s": 300}
    clock = FakeWall(1000.0)
    a, _ = engine_at(tmp_path / "s.json", rule, clock=clock)
    feed(a, {Q: 5}, 0, 10, wall0=1000.0)
    clock.t = NOON
    b, _ = engine_at(tmp_path / "s.json", rule, clock=clock)
    assert feed(b, {Q: 5}, 0, 280) == [] and b.active()[0]["alert_id"] == a.active()[0]["alert_id"]
    assert kinds(feed(b, {Q: 5}, 281, 300)) == ["alert_escalated"]  # escalate_after_s into the new run, no more


def test_alerts_of_removed_disabled_or_changed_rules_are_resolved_at_start(tmp_path):
    path = tmp_path / "s.json"
    a, _ = engine_at(path, {**QUEUE, "for_s": 0}, HELP, SHELF)
    feed(a, {Q: 5, H: True, S: True}, 0, 0)
    ids = {x["rule"]: x["alert_id"] for x in a.active()}
    a.ack(ids["kiosk-help"], by="sam")

    # kiosk-help disabled, facing-a3 gone, checkout-queue now about the wait
    b, sink = engine_at(path, {**QUEUE, "metric": "queue_wait", "threshold": 300, "clear_threshold": None},
                        {**HELP, "enabled": False})
    assert b.active() == []
    closed = {e.data["rule"]: e for e in checked(sink)}
    assert kinds(sink) == ["alert_resolved"] * 3 and set(closed) == set(ids)
    for rule, ev in closed.items():
        assert ev.data["alert_id"] == ids[rule] and ev.data["resolution"] == "rule_removed"
        assert ev.data["resolve_via"] == "engine" and ev.data["state"] == "resolved" and ev.ts == NOON
    assert closed["kiosk-help"].data["resolve_note"] == "rule 'kiosk-help' is disabled"
    assert closed["kiosk-help"].data["acked_by"] == "sam"  # as it was
    assert closed["facing-a3"].data["resolve_note"] == "rule 'facing-a3' is no longer in the config"
    assert closed["checkout-queue"].data["resolve_note"].startswith("rule 'checkout-queue' is now about queue_wait")
    assert closed["checkout-queue"].data["metric"] == "queue_length"  # the alert as it was
    c, sink_c = engine_at(path, HELP)  # resolved once: the next start has nothing to close
    assert sink_c.events == [] and c.active() == []

    d, _ = engine_at(tmp_path / "t.json", HELP)
    feed(d, {H: True}, 0, 0)
    e, sink_e = engine_at(tmp_path / "t.json", HELP, enabled=False)
    assert [x.data["resolve_note"] for x in checked(sink_e)] == ["alerts are disabled ([alerts] enabled = false)"]


def test_damaged_state_files_are_moved_aside(tmp_path, caplog):
    a, _ = engine_at(tmp_path / "good.json", HELP)
    feed(a, {H: True}, 0, 0)
    good = (tmp_path / "good.json").read_bytes()
    bad_alert = json.loads(good)
    bad_alert["alerts"][0]["alert"]["state"] = "resolved"
    damaged = {"garbage": b"\x00\xff not json", "truncated": good[: len(good) // 2], "empty": b"",
               "wrong shape": json.dumps({"v": 1, "alerts": "x"}).encode(),
               "future version": json.dumps({**json.loads(good), "v": 2}).encode(),
               "bad alert": json.dumps(bad_alert).encode()}
    for name, content in damaged.items():
        folder = tmp_path / name.replace(" ", "-")
        folder.mkdir()
        path = folder / "alert-state.json"
        path.write_bytes(content)
        caplog.clear()
        with caplog.at_level(logging.ERROR, logger="edge.alerts.state"):
            b, sink = engine_at(path, HELP)
        assert b.active() == [] and sink.events == [], name
        assert any("is damaged" in r.getMessage() for r in caplog.records), name
        (aside,) = folder.glob("alert-state.json.damaged-*")
        assert aside.read_bytes() == content and not path.exists(), name  # kept for a look, out of the way
        feed(b, {H: True}, 0, 0)  # the engine works, and saves a good state again
        c, _ = engine_at(path, HELP)
        assert c.active() == b.active() != [], name


def test_an_unwritable_state_file_does_not_stop_the_alerts(tmp_path, caplog):
    (tmp_path / "file").write_text("not a folder")
    with caplog.at_level(logging.ERROR, logger="edge.alerts.state"):
        a, sink = engine_at(tmp_path / "file" / "alert-state.json", HELP)
        feed(a, {H: True}, 0, 0)
        a.ack(a.active()[0]["alert_id"], by="sam")
    assert kinds(sink) == ["alert_opened", "alert_acked"] and a.active()[0]["state"] == "acked"
    assert [r.getMessage() for r in caplog.records if "not saved" in r.getMessage()][:1], caplog.text
    assert sum("not saved" in r.getMessage() for r in caplog.records) == 1  # logged once, not per transition


def test_where_the_state_file_lives(tmp_path):
    from edge.app.config import EdgeConfig

    cfg = EdgeConfig.model_validate({"device": {"id": "kiosk-01", "kind": "kiosk", "store": "s001"},
                                     "sync": {"outbox_path": str(tmp_path / "data" / "outbox.sqlite")}})
    assert alert_state_path(cfg, cfg.alerts) == tmp_path / "data" / "alert-state-kiosk-01.json"
    assert alert_state_path(cfg, cfg.alerts, "cam-2") == tmp_path / "data" / "alert-state-kiosk-01.cam-2.json"
    assert alert_state_path(cfg, AlertsConfig(state_path="")) is None
    assert alert_state_path(cfg, AlertsConfig(state_path=str(tmp_path / "x.json"))) == tmp_path / "x.json"
