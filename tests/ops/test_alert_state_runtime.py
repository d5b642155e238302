"""The runtime opens the alert engines (restored from their state files) before it loads any model, so an ack the
cloud queued while the device was down finds its alert; a state file no engine of the config claims (a camera
removed from the config) has its alerts resolved (`rule_removed`) and is removed. Real Runtime, kiosk config,
real outbox."""
from __future__ import annotations

import json
import sqlite3
import threading

from edge.alerts import AlertEngine
from edge.app.behaviour import alert_state_path
from edge.app.config import load_config
from edge.app.runner import Runtime
from edge.core.events import ListSink

HELP = ("help_requested", "kiosk")


def kiosk(repo, tmp_path):
    cfg = load_config(repo / "device_configs" / "kiosk.toml")
    cfg.sync.outbox_path = str(tmp_path / "data" / "outbox.sqlite")
    cfg.http.enabled = False
    return cfg


def open_alert(cfg, alerts, path) -> str:
    """A kiosk help alert opened by a real engine on the state file `path` (a previous run of the device)."""
    engine = AlertEngine(alerts, ListSink(), state_path=path)
    for t in range(3):
        engine.update({HELP: True}, float(t), 1_790_000_000.0 + t)
    (a,) = engine.active()
    return a["alert_id"]


def outbox_alerts(cfg) -> list[dict]:
    db = sqlite3.connect(cfg.sync.resolved_outbox_path(cfg.device.id))
    try:
        rows = db.execute("SELECT body FROM reliable WHERE kind LIKE 'alert_%' ORDER BY seq").fetchall()
    finally:
        db.close()
    return [json.loads(r[0]) for r in rows]


class AckBeforeModels(Runtime):
    """Acks over the command path at the moment the models start loading (an ack queued while it was down)."""

    alert_id = ""

    def _build_pose_stage(self, sink, source_name):
        self.early_ack = self._cmd_ack_alert({"event_id": self.alert_id, "by": "hq"})
        return super()._build_pose_stage(sink, source_name)


def test_an_ack_queued_while_the_device_was_down_finds_its_alert(repo, tmp_path):
    cfg = kiosk(repo, tmp_path)
    alert_id = open_alert(cfg, cfg.alerts, alert_state_path(cfg, cfg.alerts))
    rt = AckBeforeModels(cfg, http=False)
    rt.alert_id = alert_id
    assert rt.run(threading.Event(), max_frames=3) == 0
    assert rt.early_ack["alert_id"] == alert_id and rt.early_ack["state"] == "acked"
    acked = [e["data"] for e in outbox_alerts(cfg) if e["kind"] == "alert_acked"]
    assert [(d["alert_id"], d["acked_by"], d["ack_via"]) for d in acked] == [(alert_id, "hq", "mqtt")]


def test_alerts_of_a_camera_removed_from_the_config_are_resolved(repo, tmp_path):
    cfg = kiosk(repo, tmp_path)
    gone = alert_state_path(cfg, cfg.alerts, "aisle-9")  # a [[cameras]] entry the config had before
    alert_id = open_alert(cfg, cfg.alerts, gone)
    assert Runtime(cfg, http=False).run(threading.Event(), max_frames=3) == 0
    resolved = [e["data"] for e in outbox_alerts(cfg) if e["kind"] == "alert_resolved"]
    assert [(d["alert_id"], d["resolution"]) for d in resolved] == [(alert_id, "rule_removed")]
    assert not gone.exists()


def test_alerts_of_main_analytics_removed_from_the_config_are_resolved(repo, tmp_path):
    """The config no longer has main [analytics] (no main engine is opened): the main state file is not this
    config's either, so its alerts are closed too."""
    cfg = kiosk(repo, tmp_path)
    main = alert_state_path(cfg, cfg.alerts)
    alert_id = open_alert(cfg, cfg.alerts, main)
    cfg.analytics.enabled = False
    assert Runtime(cfg, http=False).run(threading.Event(), max_frames=3) == 0
    resolved = [e["data"] for e in outbox_alerts(cfg) if e["kind"] == "alert_resolved"]
    assert [(d["alert_id"], d["resolution"]) for d in resolved] == [(alert_id, "rule_removed")]
    assert not main.exists()
