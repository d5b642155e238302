"""Alerts of several cameras behind one engine interface (edge/app/streams.py EngineGroup): listed in the order one
AlertEngine lists them (open first, then the highest severity, then the oldest), and an unknown alert is reported
with the same message."""
from __future__ import annotations

import pytest

from edge.alerts import AlertEngine, AlertsConfig, UnknownAlert
from edge.app.streams import EngineGroup
from edge.core.events import ListSink

NOON = 1_772_452_800.0  # 2026-03-02 12:00 UTC
QUEUE = {"id": "checkout-queue", "metric": "queue_length", "key": "checkout", "op": ">=", "threshold": 4,
         "for_s": 0, "severity": "warning"}
HELP = {"id": "kiosk-help", "metric": "help_requested", "key": "kiosk", "for_s": 0, "severity": "critical"}


def _engine(*rules: dict) -> AlertEngine:
    cfg = AlertsConfig.model_validate({"timezone": "UTC", "rules": list(rules)})
    return AlertEngine(cfg, ListSink(), wall_clock=lambda: NOON)


def _feed(engine: AlertEngine) -> None:
    """A long queue from t=10 s, a help request too from t=20 s (values of rules the engine lacks are ignored)."""
    for t in range(10, 31):
        values = {("queue_length", "checkout"): 6} | ({("help_requested", "kiosk"): 1} if t >= 20 else {})
        engine.update(values, t, NOON + t)


def test_several_cameras_list_a_critical_alert_first_as_one_engine_does():
    """A warning opens on one camera, a critical alert later on another: the critical one comes first, as on a
    device with one engine holding both rules."""
    single = _engine(QUEUE, HELP)
    cam_a, cam_b = _engine(QUEUE), _engine(HELP)
    for engine in (single, cam_a, cam_b):
        _feed(engine)
    one = [a["rule"] for a in single.active()]
    assert one == ["kiosk-help", "checkout-queue"], one
    group = EngineGroup([cam_a, cam_b])
    assert [a["rule"] for a in group.active()] == one
    assert [a["severity"] for a in group.active()] == ["critical", "warning"]


def test_an_unknown_alert_is_reported_as_by_one_engine():
    single, group = _engine(QUEUE), EngineGroup([_engine(QUEUE), _engine(HELP)])
    with pytest.raises(UnknownAlert) as one:
        single.get("al-missing")
    with pytest.raises(UnknownAlert) as many:
        group.ack("al-missing", "staff-1")
    assert str(many.value) == str(one.value) and "on this device" in str(many.value)
