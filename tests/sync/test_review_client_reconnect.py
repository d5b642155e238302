"""Review of sync/client.py, service.py, telemetry.py, config.py against a real mosquitto: jittered backoff that a
short-lived connection does not reset (client-id clash detected and logged), connect failures (TLS) logged with
their reason, response topics that cannot point into other topics of the tree, NaN telemetry, config limits."""
from __future__ import annotations

import json
import logging
import time

import pytest
from pydantic import ValidationError

from edge.core.metrics import INPUT_STAT
from devtools.broker import Broker, free_port, prod_config
from sync import topics
from sync.client import ClientOptions, MqttClient, Tls, retry_delay
from sync.config import SyncConfig
from sync.outbox import Outbox
from sync.service import SyncService
from sync.telemetry import TelemetryLoop

from sync_helpers import device_settings, requester, wait_until

T = topics.DeviceTopics("s001", "d001")


def _clients(port: int, n: int, client_id=lambda i: f"c{i}", **kw) -> list[MqttClient]:
    out = [MqttClient(ClientOptions("127.0.0.1", port, client_id=client_id(i), **kw)) for i in range(n)]
    for c in out:
        c.start()
    return out


def test_retry_delay_doubles_with_jitter_up_to_the_cap():
    lo, hi = (lambda a, b: a), (lambda a, b: b)
    assert [retry_delay(n, 0.5, 30, hi) for n in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert [retry_delay(n, 0.5, 30, lo) for n in range(7)] == [0.5, 1, 2, 4, 8, 15, 15]
    assert retry_delay(10_000, 0.5, 30, hi) == 30  # no overflow after days of failures


def test_reconnect_after_broker_restart_is_spread_out(broker):
    """A fleet that lost its broker at once must not retry in lockstep (paho alone: every client waits min_s)."""
    clients = _clients(broker.port, 8, reconnect_min_s=0.2, reconnect_max_s=5)
    try:
        assert all(c.wait_connected(5) for c in clients)
        broker.stop()
        assert wait_until(lambda: all(not c.connected and c.next_retry_s for c in clients), 5)
        delays = [c.next_retry_s for c in clients]
        assert len(set(delays)) == len(clients), delays
        assert all(0.2 <= d <= 0.4 for d in delays), delays
        # what paho waits next: reconnect_delay_set() restarts its doubling at this value
        assert [c.paho._reconnect_min_delay for c in clients] == delays
        broker.start()
        assert all(c.wait_connected(10) for c in clients), [c.last_error for c in clients]
    finally:
        for c in clients:
            c.stop()


def test_client_id_clash_backs_off_and_is_logged(broker, caplog):
    """Two clients with one id: mosquitto 2.0.11 closes the older socket without a reason code. Each accepted
    connection used to reset paho's backoff, so the two kicked each other every `reconnect_min_s` forever."""
    caplog.set_level(logging.ERROR, logger="sync.client")
    a, b = _clients(broker.port, 2, client_id=lambda i: "s001/dup", reconnect_min_s=0.05, reconnect_max_s=3)
    try:
        assert wait_until(lambda: max(a.flaps, b.flaps) >= 3, 20), (a.flaps, b.flaps, broker.log_text()[-500:])
        c = a if a.flaps >= 3 else b
        assert c.next_retry_s >= 0.05 * 4  # the backoff kept growing across accepted-then-dropped connections
        assert c.paho._reconnect_min_delay >= 0.05 * 4  # and paho waits that long (not reset by the CONNACK)
        assert "client id clash" in c.last_error
        assert wait_until(lambda: any("same client id 's001/dup'" in r.getMessage() for r in caplog.records), 5)
    finally:
        a.stop()
        b.stop()


def test_tls_failure_is_logged_with_its_reason_once(tmp_path, certs, caplog):
    """A wrong CA used to leave only "cannot connect to host:port" (logged at debug) while paho retried forever."""
    dev_port, svc_port = free_port(), free_port()
    work = tmp_path / "broker"
    work.mkdir()
    caplog.set_level(logging.DEBUG, logger="sync.client")
    with Broker(work, port=dev_port, config=prod_config(certs, work, dev_port, svc_port), ports=[dev_port, svc_port]):
        c = MqttClient(ClientOptions("127.0.0.1", dev_port, client_id="s001/d001",
                                     tls=Tls(str(certs / "rogue.crt"), str(certs / "s001_d001.crt"),
                                             str(certs / "s001_d001.key")),
                                     reconnect_min_s=0.05, reconnect_max_s=0.2))
        c.start()
        try:
            assert wait_until(lambda: c.failures >= 3, 10), c.last_error
            assert "CERTIFICATE_VERIFY_FAILED" in c.last_error and not c.connected
            warned = [r for r in caplog.records if r.levelno == logging.WARNING and "cannot connect" in r.getMessage()]
            assert len(warned) == 1 and "CERTIFICATE_VERIFY_FAILED" in warned[0].getMessage()
        finally:
            c.stop()


@pytest.mark.parametrize("target", [f"{topics.ROOT}/s001/d002/cmd/ping", f"{topics.ROOT}/s001/d001/state",
                                    f"{topics.ROOT}/fleet/cmd/ping", f"{topics.ROOT}/s001/d001/events/x"])
def test_response_topic_cannot_point_into_other_topics_of_the_tree(broker, tmp_path, target):
    """A command's response topic made the device publish anywhere: another device's commands, a fleet-wide
    command (every device answering there: N x N messages), its own state. Now: its own cmd_result/ only."""
    svc = SyncService(*device_settings(broker.port, tmp_path / "outbox.db"))
    svc.start()
    try:
        assert svc.client.wait_connected(5)
        time.sleep(0.1)  # device SUBACKs
        with requester(broker.port, [f"{T.base}/cmd_result/#", target]) as r:
            ok_id = r.send(T.cmd("ping"), {}, response_topic=f"{T.base}/cmd_result/mine", correlation=b"c1")
            bad_id = r.send(T.cmd("ping"), {}, response_topic=target, correlation=b"c2")
            got = r.wait([ok_id, bad_id], 10)
            assert got[ok_id] and got[bad_id], got
            where = {json.loads(p).get("id"): (t, props.CorrelationData) for t, p, props in r.raw
                     if t.startswith(T.base + "/cmd_result/")}
            assert where[ok_id] == (f"{T.base}/cmd_result/mine", b"c1")
            assert where[bad_id] == (T.cmd_result("ping"), b"c2")
            assert not any(t == target and b'"id":"%s"' % bad_id.encode() in p for t, p, _ in r.raw)
    finally:
        svc.stop()


def test_health_with_a_nan_gauge_is_still_sent(tmp_path):
    """One NaN in /metrics (a broken sensor or input stat) dead-lettered every health record (payloads are strict
    JSON)."""
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.open()
    INPUT_STAT.labels("cam-review", "brightness").set(float("nan"))
    try:
        loop = TelemetryLoop(outbox.emit, 60, lambda: {"x": float("inf")}, str(tmp_path))
        assert outbox.emit(loop.sample()) is not None
        row = outbox._db.execute("SELECT body FROM telemetry").fetchone()
        data = json.loads(row[0])["data"]
        assert data["x"] is None and data["monitor"]["model"]["inputs"]["cam-review"]["brightness"] is None
    finally:
        INPUT_STAT.remove("cam-review", "brightness")
        outbox.close()


def test_config_limits_name_the_key():
    with pytest.raises(ValidationError, match="session_expiry_s"):
        SyncConfig(session_expiry_s=2**32)  # paho's network thread died on packing it: never connected, no error
    with pytest.raises(ValidationError, match="reconnect_min_s"):
        SyncConfig(reconnect_min_s=60)
    assert SyncConfig(session_expiry_s=0xFFFFFFFF).session_expiry_s == 0xFFFFFFFF


def test_a_refused_connection_names_the_client_id_and_the_setting(tmp_path, caplog):
    """A broker that refuses the device (wrong credentials, or client ids it does not take: the default became
    `<store>/<device>`) used to log only the reason code: the log and last_error now name the client id and
    `[sync] client_id`."""
    caplog.set_level(logging.ERROR, logger="sync.client")
    b = Broker(tmp_path / "broker", users={"s1/mirror-01": "right"}).start()
    try:
        dev = SyncService(*device_settings(b.port, tmp_path / "o.db", device="mirror-01", store="s1",
                                           username="s1/mirror-01", password="wrong"))
        dev.start()
        try:
            assert wait_until(lambda: (dev.client.last_error or "").startswith("CONNACK"), 10), dev.client.last_error
            assert "'s1/mirror-01'" in dev.client.last_error and not dev.client.connected
            msg = next(r.getMessage() for r in caplog.records if "refused the connection" in r.getMessage())
            assert "client id 's1/mirror-01'" in msg and "[sync] client_id" in msg, msg
        finally:
            dev.stop()
    finally:
        b.close()
