"""Review fixes of the alert engine (stop 40): a state file whose alert values are not what the engine writes (NaN,
null, text) is damage, not a restored alert that breaks the staff page, every save and every update; a cooldown kept
across a restart is never longer than the rule's cooldown now; an escalation after a restart never lowers the
severity of the alert it continues."""
from __future__ import annotations

import json
import logging
import urllib.request

import pytest

from edge.alerts import AlertEngine, AlertsConfig
from edge.alerts.server import serve
from edge.core.events import ListSink

from alerts_helpers import FakeWall, kinds, wall
from test_alerts_state import feed

Q = ("queue_length", "checkout")
H = ("help_requested", "kiosk")
QUEUE = {"id": "checkout-queue", "metric": "queue_length", "key": "checkout", "op": ">=", "threshold": 4,
         "clear_for_s": 10, "cooldown_s": 3600}
HELP = {"id": "kiosk-help", "metric": "help_requested", "key": "kiosk", "severity": "critical"}
NOON = wall(12)


def engine_at(path, *rules, clock: FakeWall | None = None) -> tuple[AlertEngine, ListSink]:
    """A real engine on the state file `path` (a restart is a new engine on the same file)."""
    cfg = AlertsConfig.model_validate({"timezone": "UTC", "rules": list(rules)})
    sink = ListSink()
    return AlertEngine(cfg, sink, wall_clock=clock or FakeWall(NOON), state_path=path), sink


def _nan_evidence(alert: dict) -> None:
    alert["evidence"]["detail"] = {"fill": float("nan")}


def _null_peak(alert: dict) -> None:
    alert["peak_value"] = None


def _text_value(alert: dict) -> None:
    alert["current_value"] = "5"


@pytest.mark.parametrize("spoil", [_nan_evidence, _null_peak, _text_value])
def test_a_state_file_with_values_the_engine_never_writes_is_damaged(tmp_path, caplog, spoil):
    """Restored as it was, a NaN made every GET /api/alerts a 500 (the staff page showed "Connection lost" for good)
    and every save fail (the alerts opened later were lost at the next restart); a null or text value made every
    update() raise a TypeError (no alert of the camera opened or cleared any more)."""
    path = tmp_path / "alert-state.json"
    a, _ = engine_at(path, QUEUE)
    feed(a, {Q: 5}, 0, 0)
    state = json.loads(path.read_text())
    spoil(state["alerts"][0]["alert"])
    path.write_text(json.dumps(state))

    with caplog.at_level(logging.ERROR, logger="edge.alerts.state"):
        b, sink = engine_at(path, QUEUE, HELP)
    assert any("is damaged" in r.getMessage() for r in caplog.records)
    assert list(tmp_path.glob("alert-state.json.damaged-*")) and b.active() == []
    srv = serve(b, "127.0.0.1", 0, background=True)
    try:
        feed(b, {Q: 6, H: True}, 0, 2)  # the engine works on ...
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/api/alerts", timeout=10) as r:
            assert r.status == 200 and len(json.loads(r.read())["alerts"]) == 2  # ... the page too ...
    finally:
        srv.stop()
    assert not b._state.failing
    c, _ = engine_at(path, QUEUE, HELP)  # ... and its alerts are saved for the next restart
    assert sorted(x["alert_id"] for x in c.active()) == sorted(x["alert_id"] for x in b.active())


def test_a_cooldown_kept_across_a_restart_is_no_longer_than_the_rules_cooldown_now(tmp_path):
    """The store lowered checkout-queue's cooldown_s from an hour to 10 s (staff missed real queues) and restarted the
    device: the hour saved in the state file still silenced the rule, dropping real alerts for up to the old cooldown
    (a week at most)."""
    path = tmp_path / "alert-state.json"
    a, _ = engine_at(path, QUEUE)
    feed(a, {Q: 5}, 0, 0)
    a.resolve(a.active()[0]["alert_id"], by="sam")  # cooldown: 3600 s left

    b, sink = engine_at(path, {**QUEUE, "cooldown_s": 10})
    assert feed(b, {Q: 5}, 0, 9) == []
    assert kinds(feed(b, {Q: 5}, 10, 10)) == ["alert_opened"]

    # a group whose rules have no cooldown now has none left either
    b.resolve(b.active()[0]["alert_id"], by="sam")
    c, _ = engine_at(path, {**QUEUE, "cooldown_s": 0})
    assert kinds(feed(c, {Q: 5}, 0, 0)) == ["alert_opened"]


def test_an_escalation_after_a_restart_never_lowers_the_severity(tmp_path):
    """An alert opened as critical, continued under a rule lowered to info (or warning) with escalate_after_s, was
    "escalated" down to warning: staff were re-notified with a lower severity than the alert had."""
    path = tmp_path / "alert-state.json"
    a, _ = engine_at(path, HELP)
    feed(a, {H: True}, 0, 0)
    (alert_id,) = [x["alert_id"] for x in a.active()]

    for severity in ("info", "warning"):
        b, sink = engine_at(path, {**HELP, "severity": severity, "escalate_after_s": 60})
        assert feed(b, {H: True}, 0, 120) == [], severity
        assert [(x["alert_id"], x["severity"], x["escalated"]) for x in b.active()] == [(alert_id, "critical", False)]
    # an alert below the target still escalates
    b, _ = engine_at(tmp_path / "other.json", {**HELP, "severity": "info", "escalate_after_s": 60})
    feed(b, {H: True}, 0, 59)
    assert [(e.kind, e.data["severity"]) for e in feed(b, {H: True}, 60, 60)] == [("alert_escalated", "warning")]
