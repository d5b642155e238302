"""The `ack_alert` command: the handler on its own, then end to end over a real mosquitto (SyncService with the
handler, a Requester sending the command as `edge sync send` does, the reference consumer receiving the alert)."""
from __future__ import annotations

import json
import time

import pytest

from edge.alerts import AlertError, ack_command_handler
from edge.core.device import DeviceIdentity
from edge.core.events import ListSink
from sync import topics
from sync.client import ClientOptions
from sync.commands import AckAlertArgs, CommandError
from sync.config import SyncConfig
from sync.consumer import Consumer
from sync.request import Requester
from sync.service import SyncService

from alerts_helpers import FakeWall, kinds, make_engine, wait_until, wall

HELP = {"id": "kiosk-help", "title": "Help requested at the kiosk", "metric": "help_requested", "key": "kiosk"}
T = topics.DeviceTopics("s001", "kiosk-01")


def test_handler_acks_and_reports_errors_through_the_given_type():
    engine, sink = make_engine(HELP, wall_clock=FakeWall(wall(15)))
    (opened,) = engine.update({("help_requested", "kiosk"): True}, 10.0, wall(15))
    handler = ack_command_handler(engine, error=CommandError)
    args = AckAlertArgs.model_validate({"event_id": opened.event_id, "by": "hq-ops"}).model_dump()
    assert handler(args) == {"acknowledged": opened.data["alert_id"], "alert_id": opened.data["alert_id"],
                             "state": "acked", "severity": "warning", "changed": True}
    assert kinds(sink) == ["alert_opened", "alert_acked"]
    assert sink.events[-1].data["ack_via"] == "mqtt" and sink.events[-1].data["acked_by"] == "hq-ops"
    assert handler({"event_id": opened.data["alert_id"], "by": "", "note": ""})["changed"] is False
    with pytest.raises(CommandError, match="no alert 'nope'"):
        handler({"event_id": "nope", "by": "", "note": ""})
    with pytest.raises(AlertError):  # default error type
        ack_command_handler(engine)({"event_id": "nope", "by": "", "note": ""})
    engine.resolve(opened.data["alert_id"])
    with pytest.raises(CommandError, match="already resolved"):
        handler({"event_id": opened.data["alert_id"], "by": "", "note": ""})


def test_ack_over_mqtt_end_to_end(broker, tmp_path):
    identity = DeviceIdentity(id="kiosk-01", store="s001", kind="kiosk")
    sync_cfg = SyncConfig(broker="127.0.0.1", port=broker.port, outbox_path=str(tmp_path / "outbox.db"),
                          telemetry_interval_s=0, reconnect_min_s=0.1, reconnect_max_s=0.5, ack_timeout_s=1.5)
    engine, _ = make_engine(HELP, sink=ListSink())
    svc = SyncService(identity, sync_cfg, commands={"ack_alert": ack_command_handler(engine, error=CommandError)})
    engine.sink = svc.outbox  # the runtime's EventSink, once the service made it
    svc.start()
    consumer = None
    try:
        assert svc.client.wait_connected(5), svc.client.last_error
        time.sleep(0.1)  # device SUBACKs
        (opened,) = engine.update({("help_requested", "kiosk"): True}, 5.0, wall(15))
        alert_id = opened.data["alert_id"]
        with Requester(ClientOptions("127.0.0.1", broker.port), [f"{T.base}/cmd_result/+"]) as r:
            ok = r.send(T.cmd("ack_alert"), {"event_id": alert_id, "by": "hq-ops", "note": "calling the floor"})
            bad = r.send(T.cmd("ack_alert"), {"event_id": "0" * 32, "by": "hq-ops"})
            got = r.wait([ok, bad], 10)
        assert got[ok][0]["status"] == "ok", got[ok]
        assert got[ok][0]["result"] == {"acknowledged": alert_id, "alert_id": alert_id, "state": "acked",
                                        "severity": "warning", "changed": True}
        assert got[bad][0]["status"] == "error" and got[bad][0]["reason"] == f"no alert '{'0' * 32}' on this device"
        a = engine.get(alert_id)
        assert a["state"] == "acked" and a["acked_by"] == "hq-ops" and a["ack_note"] == "calling the floor"
        assert a["ack_via"] == "mqtt"
        # both transitions are in the device outbox, on the alerts stream (no consumer yet: nothing acked away)
        rows = svc.outbox.fetch("reliable", 0, 100)
        alerts = [(kind, json.loads(body)) for _, stream, kind, body, _ in rows if stream == "alerts"]
        assert [k for k, _ in alerts] == ["alert_opened", "alert_acked"]
        assert alerts[1][1]["data"]["alert_id"] == alert_id and alerts[1][1]["data"]["state"] == "acked"
        assert not any(kind == "alert_acked" for _, stream, kind, _, _ in rows if stream == "events")  # not the built-in
        # and the cloud's reference consumer receives them from retail/v1/s001/kiosk-01/alerts
        consumer = Consumer(ClientOptions("127.0.0.1", broker.port, client_id="cloud-alerts-test",
                                          reconnect_min_s=0.1, reconnect_max_s=0.5), tmp_path / "cloud.db",
                            ack_interval_s=0.05).start()

        def cloud_rows():
            with consumer._lock:
                return consumer.db.execute("SELECT kind, stream, data FROM events WHERE device = 'kiosk-01' "
                                           "ORDER BY seq").fetchall()

        assert wait_until(lambda: len(cloud_rows()) >= 2, 15), cloud_rows()
        (k1, s1, _), (k2, s2, d2) = cloud_rows()
        assert (k1, s1, k2, s2) == ("alert_opened", "alerts", "alert_acked", "alerts")
        assert json.loads(d2)["acked_by"] == "hq-ops"
        assert wait_until(lambda: svc.outbox.depth()["alerts"] == 0, 10)  # acked by the cloud, then deleted
    finally:
        if consumer is not None:
            consumer.stop()
        svc.stop()
