"""`edge fleet send` / `edge sync send` / `Requester` as a user the production ACL forbids to write commands: the
broker answers the command's PUBACK with 0x87, which must end the tool with one line naming the refusal, not
"0 result(s)" or "no answer" after the timeout. Real mosquitto with the shipped ACL and a real device."""
from __future__ import annotations

import time

import pytest

from devtools.broker import Broker, prod_acl
from edge.app.cli import main
from sync import topics
from sync.client import ClientOptions
from sync.request import Requester, device_reply_filter
from sync.service import SyncService

from sync_helpers import device_settings

USERS = {"s001/d001": "pw-d1", "cloud": "pw-cloud", "fleet-admin": "pw-admin"}


@pytest.fixture
def acl_broker(tmp_path):
    b = Broker(tmp_path / "acl-broker", users=USERS, acl=prod_acl()).start()
    svc = SyncService(*device_settings(b.port, tmp_path / "outbox.db", username="s001/d001", password="pw-d1"))
    svc.start()
    try:
        assert svc.client.wait_connected(5), svc.client.last_error
        time.sleep(0.1)  # device SUBACKs
        yield b
    finally:
        svc.stop()
        b.close()


def creds(user: str) -> list[str]:
    return ["--username", user, "--password", USERS[user]]


def test_fleet_send_refused_by_the_acl_is_one_line_and_non_zero(acl_broker, capsys):
    port = ["--port", str(acl_broker.port)]
    assert main(["fleet", "send", "ping", *port, *creds("fleet-admin"), "--store", "s001", "--device", "d001"]) == 0
    assert "1 result(s), 1 ok" in capsys.readouterr().out  # the admin may: the device answers

    for where in (["--store", "s001", "--device", "d001"], ["--store", "s001"], []):
        with pytest.raises(SystemExit, match="^edge fleet send: broker refused 1 publishes: PUBACK 0x87 Not "
                                             "authorized$"):
            main(["fleet", "send", "ping", *port, *creds("cloud"), *where, "--timeout", "5"])
        assert "result(s)" not in capsys.readouterr().out, where

    with pytest.raises(SystemExit, match="^edge sync send: broker refused 1 publishes: PUBACK 0x87"):
        main(["sync", "send", *port, *creds("cloud"), "--store", "s001", "--device", "d001", "ping"])


def test_requester_wait_raises_on_a_refused_publish(acl_broker):
    t = topics.DeviceTopics("s001", "d001")
    opts = ClientOptions("127.0.0.1", acl_broker.port, username="cloud", password=USERS["cloud"])
    with Requester(opts, [device_reply_filter("s001", "d001")]) as r:
        cid = r.send(t.cmd("ping"))
        with pytest.raises(ConnectionError, match="PUBACK 0x87 Not authorized"):
            r.wait([cid], 10)
