"""ACL and TLS against a real mosquitto: a device cannot publish to another device's topics (0x87 surfaced),
a wrong password is refused, a client certificate from a foreign CA is refused; the TLS tests run the shipped
production config (sync/mosquitto/prod.conf + acl). Identity binding and provisioning: tests/security."""
from __future__ import annotations

import threading
import time

import pytest

from edge.core.events import Event
from devtools.broker import Broker, free_port, prod_acl, prod_config
from sync.client import ClientOptions, MqttClient, Tls
from sync.service import SyncService

from sync_helpers import device_settings, start_consumer, wait_until

USERS = {"s001/d001": "pw-a", "s001/d002": "pw-b", "cloud": "pw-cloud"}


class Watcher:
    """Collects messages on a filter (as the cloud user)."""

    def __init__(self, port: int, filt: str, **kw) -> None:
        from paho.mqtt.subscribeoptions import SubscribeOptions

        self.msgs: list[str] = []
        self.client = MqttClient(ClientOptions("127.0.0.1", port, client_id=f"watch-{time.monotonic_ns()}",
                                               subscriptions=[(filt, SubscribeOptions(qos=1))], **kw))
        self.client.on_message = lambda m: self.msgs.append(m.topic)

    def __enter__(self):
        self.client.start()
        assert self.client.wait_connected(5), self.client.last_error
        time.sleep(0.1)
        return self

    def __exit__(self, *exc):
        self.client.stop()


@pytest.fixture
def acl_broker(tmp_path):
    b = Broker(tmp_path / "broker", users=USERS, acl=prod_acl(), bind_clientid=True).start()
    yield b
    b.close()


def test_device_cannot_publish_to_another_devices_topics(acl_broker, tmp_path):
    with Watcher(acl_broker.port, "retail/v1/s001/d002/#", username="cloud", password="pw-cloud") as w:
        a = MqttClient(ClientOptions("127.0.0.1", acl_broker.port, client_id="s001/d001", username="s001/d001",
                                     password="pw-a"))
        acks: list[tuple[int, int]] = []
        done = threading.Event()
        a.on_publish = lambda mid, rc, text: (acks.append((mid, rc)), done.set())
        a.start()
        try:
            assert a.wait_connected(5)
            own = a.publish("retail/v1/s001/d001/events/test", b"{}")  # allowed, nobody subscribed: 0x10
            assert wait_until(lambda: len(acks) == 1, 5)
            assert acks[0] == (own, 0x10)
            foreign = a.publish("retail/v1/s001/d002/events/test", b"{}")
            assert wait_until(lambda: len(acks) == 2, 5)
            assert acks[1] == (foreign, 0x87)
            assert a.last_error.startswith("PUBACK 0x87")
            time.sleep(0.2)
            assert w.msgs == []
        finally:
            a.stop()


def test_misconfigured_device_gets_0x87_and_dead_letters(acl_broker, tmp_path):
    """A device whose credentials belong to d001 but whose config says d002: every publish is refused."""
    with Watcher(acl_broker.port, "retail/v1/s001/d002/#", username="cloud", password="pw-cloud") as w:
        settings = device_settings(acl_broker.port, tmp_path / "outbox.db", device="d002", username="s001/d001",
                                   password="pw-a")
        svc = SyncService(*settings)
        svc.start()
        try:
            for i in range(5):
                svc.outbox.emit(Event("person_entered", {"i": i}))
            assert wait_until(lambda: svc.metrics()["dead_lettered"] >= 5, 10), svc.metrics()
            m = svc.metrics()
            assert "0x87" in m["last_error"]
            assert all(d["reason"].startswith("PUBACK 0x87") for d in svc.outbox.dead_letters())
            assert w.msgs == []  # not even its birth reached d002's subtree
        finally:
            svc.stop()


def test_wrong_password_is_refused(acl_broker, tmp_path):
    c = MqttClient(ClientOptions("127.0.0.1", acl_broker.port, client_id="x", username="s001/d001",
                                 password="wrong", reconnect_min_s=5))
    c.start()
    try:
        assert wait_until(lambda: c.last_error is not None, 5)
        assert not c.connected and "0x87" in c.last_error
    finally:
        c.stop()


@pytest.fixture
def tls_broker(tmp_path, certs):
    """The production config: device listener (fleet CA) and services listener (services CA)."""
    dev_port, svc_port = free_port(), free_port()
    work = tmp_path / "broker"
    work.mkdir()
    b = Broker(work, port=dev_port, config=prod_config(certs, work, dev_port, svc_port), ports=[dev_port, svc_port])
    b.service_port = svc_port
    b.start()
    yield b
    b.close()


def test_tls_client_certificate_delivers(tls_broker, certs, tmp_path):
    db = tmp_path / "cloud.db"
    consumer = start_consumer(tls_broker.service_port, db, client_id="cloud",
                              tls=Tls(str(certs / "ca.crt"), str(certs / "cloud.crt"), str(certs / "cloud.key")))
    settings = device_settings(tls_broker.port, tmp_path / "outbox.db", tls=True, ca_file=str(certs / "ca.crt"),
                               cert_file=str(certs / "s001_d001.crt"), key_file=str(certs / "s001_d001.key"))
    svc = SyncService(*settings)
    svc.start()
    try:
        for i in range(20):
            svc.outbox.emit(Event("person_entered", {"i": i}))
        assert wait_until(lambda: consumer.watermark("d001") >= 20, 10), (svc.metrics(), consumer.stats)
        assert wait_until(lambda: svc.outbox.depth()["events"] == 0, 5)  # the cloud's ack reached the device
    finally:
        svc.stop()
        consumer.stop()


@pytest.mark.parametrize("who", ["foreign_ca_client", "no_client_cert", "wrong_server_ca", "service_cert_on_device_port",
                                 "device_cert_on_service_port"])
def test_tls_foreign_ca_is_refused(tls_broker, certs, who):
    ca, dev = str(certs / "ca.crt"), (str(certs / "s001_d001.crt"), str(certs / "s001_d001.key"))
    tls = {"foreign_ca_client": Tls(ca, str(certs / "rogue.crt"), str(certs / "rogue.key")),
           "no_client_cert": Tls(ca),
           "wrong_server_ca": Tls(str(certs / "rogue.crt"), *dev),
           "service_cert_on_device_port": Tls(ca, str(certs / "cloud.crt"), str(certs / "cloud.key")),
           "device_cert_on_service_port": Tls(ca, *dev)}[who]
    port = tls_broker.service_port if who == "device_cert_on_service_port" else tls_broker.port
    c = MqttClient(ClientOptions("127.0.0.1", port, client_id="s001/d001", tls=tls,
                                 reconnect_min_s=0.2, reconnect_max_s=0.5))
    c.start()
    try:
        assert wait_until(lambda: c.last_error is not None, 5)
        time.sleep(0.5)
        assert not c.connected and c.connect_count == 0, c.last_error
    finally:
        c.stop()
