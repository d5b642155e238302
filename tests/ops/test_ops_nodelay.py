"""TCP_NODELAY on the MQTT sockets (issue 12): the device's client (and the cloud tools' clients) set it before
CONNECT, on plain and TLS connections, read back with getsockopt on a real mosquitto."""
from __future__ import annotations

import socket
import subprocess
import time

import pytest

from devtools.broker import Broker, TlsListener
from edge.core.device import DeviceIdentity
from sync.client import ClientOptions, MqttClient, Tls
from sync.config import SyncConfig
from sync.service import SyncService

from ops_util import REPO

MAKE_CERTS = REPO / "sync" / "mosquitto" / "make_certs.sh"


def nodelay(client: MqttClient) -> int:
    sock = client.paho.socket()
    assert sock is not None, "not connected"
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def connected(opts: ClientOptions) -> MqttClient:
    c = MqttClient(opts)
    c.start()
    assert c.wait_connected(10), c.last_error
    return c


def test_the_device_socket_has_tcp_nodelay(ops_broker, tmp_path):
    cfg = SyncConfig.model_validate({"broker": "127.0.0.1", "port": ops_broker.port, "telemetry_interval_s": 0,
                                     "model_updates": False, "outbox_path": str(tmp_path / "outbox.sqlite")})
    svc = SyncService(DeviceIdentity(id="d-nodelay", store="s-ops", kind="kiosk"), cfg)
    svc.start()
    try:
        assert svc.client.wait_connected(10), svc.client.last_error
        assert nodelay(svc.client) != 0
    finally:
        svc.stop()


def test_nodelay_can_be_turned_off_per_client_and_is_set_again_on_reconnect(ops_broker):
    off = connected(ClientOptions(host="127.0.0.1", port=ops_broker.port, client_id="ops-nagle", tcp_nodelay=False))
    on = connected(ClientOptions(host="127.0.0.1", port=ops_broker.port, client_id="ops-nodelay",
                                 reconnect_min_s=0.1, reconnect_max_s=0.5))
    try:
        assert nodelay(off) == 0 and nodelay(on) != 0
        before = on.connect_count
        ops_broker.stop()  # the broker goes away and comes back: a new socket, set up the same way
        ops_broker.start()
        assert _reconnected(on, before)
        assert nodelay(on) != 0
    finally:
        off.stop()
        on.stop()


def _reconnected(c: MqttClient, before: int) -> bool:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if c.connected and c.connect_count > before:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory):
    pki = tmp_path_factory.mktemp("pki")
    subprocess.run(["bash", str(MAKE_CERTS), str(pki), "s-ops/d-tls"], check=True, capture_output=True)
    b = Broker(tmp_path_factory.mktemp("tls-broker"),
               tls=TlsListener(str(pki / "ca.crt"), str(pki / "server.crt"), str(pki / "server.key"))).start()
    b.pki = pki
    yield b
    b.close()


def test_the_tls_socket_has_tcp_nodelay(tls_broker):
    pki = tls_broker.pki
    tls = Tls(str(pki / "ca.crt"), str(pki / "s-ops_d-tls.crt"), str(pki / "s-ops_d-tls.key"))
    c = connected(ClientOptions(host="127.0.0.1", port=tls_broker.tls_port, client_id="s-ops/d-tls", tls=tls))
    try:
        assert hasattr(c.paho.socket(), "cipher")  # really the TLS socket
        assert nodelay(c) != 0
    finally:
        c.stop()
