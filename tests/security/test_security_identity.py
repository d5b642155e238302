"""Device identities cannot be hijacked (issue 15, case 6), on a real mosquitto running the shipped production
config (sync/mosquitto/prod.conf + the pattern ACL) with certificates from `edge fleet provision`: a device
certificate for s1/d1 can neither take over s1/d2's session nor publish to its topics; a device provisioned
after the broker started works with no broker change. The control case shows the takeover on a broker that
does not bind client ids."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from edge.app.cli import main
from edge.core.events import Event
from devtools.broker import Broker, free_port, prod_acl, prod_config
from sync.client import ClientOptions, MqttClient, Tls
from sync.service import SyncService

from sync_helpers import device_settings, start_consumer, wait_until

MAKE_CERTS = Path(__file__).resolve().parents[2] / "sync" / "mosquitto" / "make_certs.sh"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """Fleet CA + services CA (make_certs.sh), device certificates issued by `edge fleet provision`."""
    d = tmp_path_factory.mktemp("pki")
    subprocess.run(["bash", str(MAKE_CERTS), str(d), "cloud", "fleet-admin"], check=True, capture_output=True)
    (d / "acl").write_text(prod_acl())
    for ident in ("s1/d1", "s1/d2"):
        assert main(["fleet", "provision", ident, "--ca-dir", str(d), "--out", str(d / "devices"),
                     "--broker", "127.0.0.1"]) == 0
    return d


@pytest.fixture
def prod_broker(tmp_path, pki):
    dev_port, svc_port = free_port(), free_port()
    work = tmp_path / "broker"
    work.mkdir()
    b = Broker(work, port=dev_port, config=prod_config(pki, work, dev_port, svc_port), ports=[dev_port, svc_port])
    b.service_port = svc_port
    b.start()
    yield b
    b.close()


def device_tls(pki: Path, ident: str) -> Tls:
    base = pki / "devices" / ident.replace("/", "_")
    return Tls(str(pki / "ca.crt"), str(base) + ".crt", str(base) + ".key")


def device_service(pki: Path, port: int, outbox: Path, store: str, device: str) -> SyncService:
    tls = device_tls(pki, f"{store}/{device}")
    return SyncService(*device_settings(port, outbox, device=device, store=store, tls=True, ca_file=tls.ca_file,
                                        cert_file=tls.cert_file, key_file=tls.key_file))


def test_a_device_certificate_cannot_take_over_or_write_as_another_device(prod_broker, pki, tmp_path):
    victim = device_service(pki, prod_broker.port, tmp_path / "d2.db", "s1", "d2")
    victim.start()
    acks: list[tuple[int, int]] = []
    attacker = MqttClient(ClientOptions("127.0.0.1", prod_broker.port, client_id="s1/d2", clean_start=True,
                                        tls=device_tls(pki, "s1/d1"), reconnect_min_s=5))
    attacker.on_publish = lambda mid, rc, text: acks.append((mid, rc))
    try:
        assert victim.client.wait_connected(5), victim.client.last_error
        attacker.start()
        assert attacker.wait_connected(5), attacker.last_error  # d1's certificate is valid: it gets in as s1/d1
        time.sleep(1.0)
        assert victim.client.connected and victim.client.connect_count == 1  # ... and d2 was not kicked out
        assert "as s1/d1 " in prod_broker.log_text() and "already connected" not in prod_broker.log_text()
        foreign = attacker.publish("retail/v1/s1/d2/state", b'{"status": "offline"}', retain=True)
        own = attacker.publish("retail/v1/s1/d1/events/test", b"{}")
        assert wait_until(lambda: len(acks) == 2, 5)
        assert dict((m, rc) for m, rc in acks) == {foreign: 0x87, own: 0x10}  # denied / allowed, nobody listening
    finally:
        attacker.stop()
        victim.stop()


def test_takeover_happens_without_identity_binding(tmp_path):
    """Control: on a broker that does not bind client ids (what the issue found), any valid credential that
    uses a device's client id disconnects that device."""
    users = {"s1/d1": "pw1", "s1/d2": "pw2"}
    b = Broker(tmp_path / "broker", users=users, acl=prod_acl()).start()  # bind_clientid=False
    victim = MqttClient(ClientOptions("127.0.0.1", b.port, client_id="d2", username="s1/d2", password="pw2",
                                      reconnect_min_s=5, reconnect_max_s=5))
    attacker = MqttClient(ClientOptions("127.0.0.1", b.port, client_id="d2", username="s1/d1", password="pw1",
                                        reconnect_min_s=5, reconnect_max_s=5))
    try:
        victim.start()
        assert victim.wait_connected(5)
        attacker.start()
        assert attacker.wait_connected(5)
        assert wait_until(lambda: not victim.connected, 5)  # session taken over
        assert "already connected, closing old connection" in b.log_text()
    finally:
        attacker.stop()
        victim.stop()
        b.close()
    b = Broker(tmp_path / "broker2", users=users, acl=prod_acl(), bind_clientid=True).start()
    victim = MqttClient(ClientOptions("127.0.0.1", b.port, client_id="d2", username="s1/d2", password="pw2",
                                      reconnect_min_s=5, reconnect_max_s=5))
    attacker = MqttClient(ClientOptions("127.0.0.1", b.port, client_id="d2", username="s1/d1", password="pw1",
                                        reconnect_min_s=5, reconnect_max_s=5))
    try:
        victim.start()
        assert victim.wait_connected(5)
        attacker.start()
        assert attacker.wait_connected(5)
        time.sleep(1.0)
        assert victim.connected and victim.connect_count == 1  # bound: the same attempt changes nothing
    finally:
        attacker.stop()
        victim.stop()
        b.close()


def test_a_device_provisioned_later_needs_no_broker_change(prod_broker, pki, tmp_path):
    """The pattern ACL covers every device: s1/d3 is issued while the broker runs and delivers at once."""
    assert main(["fleet", "provision", "s1/d3", "--ca-dir", str(pki), "--out", str(pki / "devices"),
                 "--broker", "127.0.0.1", "--port", str(prod_broker.port), "--force"]) == 0
    consumer = start_consumer(prod_broker.service_port, tmp_path / "cloud.db", client_id="cloud",
                              tls=Tls(str(pki / "ca.crt"), str(pki / "cloud.crt"), str(pki / "cloud.key")))
    svc = device_service(pki, prod_broker.port, tmp_path / "d3.db", "s1", "d3")
    svc.start()
    try:
        for i in range(50):
            svc.outbox.emit(Event("person_entered", {"i": i}))
        assert wait_until(lambda: consumer.watermark("d3") >= 50, 10), (svc.metrics(), consumer.stats)
        assert wait_until(lambda: svc.outbox.depth()["events"] == 0, 5)  # the cloud's ack reached the device
        assert svc.metrics()["last_error"] is None
    finally:
        svc.stop()
        consumer.stop()
