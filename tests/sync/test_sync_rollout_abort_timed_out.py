"""An aborted rollout must not install its version later on a device that was offline during the wave (real
mosquitto, persistent device sessions): the abort also sends `model_rollback` to TIMED_OUT and OFFERED devices
(queued behind the offer, it cancels it when the device comes back), and a device refuses a `model_update` offer
older than its maximum age, or stamped too far ahead of its clock, or with no `ts` at all."""
from __future__ import annotations

import json
import re
import time

import pytest

from sync import payloads, topics
from sync.client import ClientOptions
from sync.rollout import Rollout, read_statuses

from sync_helpers import requester, wait_until
from update_helpers import MODEL, Device, published_fleet

CHUNK = 64 << 10
FINAL = ("SUCCEEDED", "FAILED", "ROLLED_BACK")


def opts(port: int) -> ClientOptions:
    return ClientOptions("127.0.0.1", port)



@pytest.fixture
def fleet(broker, tmp_path):
    return published_fleet(broker.port, tmp_path, CHUNK)


def offline_device(port: int, root, pub, base, device: str) -> None:
    """A device that connected once (persistent session, commands subscribed) and is now offline."""
    d = Device(port, root, pub, device=device, base=base).start()
    d.stop()


def test_abort_rolls_back_timed_out_device_when_it_comes_back(broker, tmp_path, fleet):
    pub, base = fleet
    d1 = Device(broker.port, tmp_path / "d1", pub, device="d001", base=base).start()
    d2 = Device(broker.port, tmp_path / "d2", pub, device="d002", base=base, healthy=False).start()
    offline_device(broker.port, tmp_path / "d3", pub, base, "d003")
    d3 = None
    try:
        res = Rollout(opts(broker.port), MODEL, "1.1", [("s001", "d001"), ("s001", "d002"), ("s001", "d003")],
                      waves=[100], abort_failure_pct=50, wave_timeout_s=15, rollback_timeout_s=2).run()
        assert res["status"] == "ABORTED", res
        assert res["waves"] == [{"s001/d001": "SUCCEEDED", "s001/d002": "ROLLED_BACK", "s001/d003": "TIMED_OUT"}]
        # d003 is offline: its rollback waits at the broker, behind the offer, in its persistent session
        assert res["rolled_back"] == {"s001/d001": "ROLLED_BACK", "s001/d003": "ROLLBACK_SENT"}, res
        assert d1.current() == "1.0" and d2.current() == "1.0"
        d3 = Device(broker.port, tmp_path / "d3", pub, device="d003").start()  # back online, days later
        assert wait_until(lambda: d3.last.get("version") == "1.1" and d3.last.get("state") in FINAL, 20), \
            d3.agent.models()
        time.sleep(0.5)  # a rollback queued behind a job would run now
        assert d3.current() == "1.0" and d3.activated == [], d3.last  # the aborted version never ran
        assert d3.last["state"] == "FAILED" and "canceled by a fleet rollback" in d3.last["reason"], d3.last
    finally:
        for d in (d1, d2, d3):
            if d is not None:
                d.stop()


def test_offer_queued_while_offline_expires(broker, tmp_path, fleet):
    pub, base = fleet
    offline_device(broker.port, tmp_path / "dev", pub, base, "d001")
    t = topics.DeviceTopics("s001", "d001")
    with requester(broker.port, [f"{t.base}/cmd_result/+"]) as r:
        cid = r.send(t.cmd("model_update"), {"name": MODEL, "version": "1.1", "rollout": "r-old"})
        time.sleep(2.5)  # the offer waits at the broker, older than the device's maximum age (2 s here)
        dev = Device(broker.port, tmp_path / "dev", pub)
        dev.agent.offer_max_age_s = 2.0
        dev.start()
        try:
            got = r.wait([cid], 10)[cid]
            assert got and got[0]["status"] == "error", got
            assert re.match(r"offer expired: sent \d+\.\d s ago, older than the 2 s ", got[0]["reason"]), got
            assert wait_until(lambda: dev.last.get("state") == "FAILED", 5), dev.agent.models()
            assert dev.last["version"] == "1.1" and dev.last["reason"] == got[0]["reason"]
            st = read_statuses(opts(broker.port), 0.5)[("s001", "d001")]["job"]
            assert (st["state"], st["rollout"], st["reason"]) == ("FAILED", "r-old", got[0]["reason"]), st
            time.sleep(0.5)
            assert dev.current() == "1.0" and dev.activated == []
            assert dev.agent.metrics()["offers_expired"] == 1
        finally:
            dev.stop()


def test_offer_stamped_ahead_of_the_clock_or_unstamped_is_refused_and_a_fresh_one_installs(broker, tmp_path, fleet):
    pub, base = fleet
    dev = Device(broker.port, tmp_path / "dev", pub, base=base).start()
    t = topics.DeviceTopics("s001", "d001")
    args = {"name": MODEL, "version": "1.1"}

    def send(payload: bytes, cid: str) -> dict:
        with requester(broker.port, [f"{t.base}/cmd_result/+"]) as r:
            r.send(t.cmd("model_update"), payload=payload, cmd_id=cid)
            got = r.wait([cid], 10)[cid]
        assert got, "no answer"
        return got[0]

    try:
        old = send(json.dumps({"id": "c-old", "args": args, "ts": time.time() - 2 * 86400}).encode(), "c-old")
        assert old["status"] == "error" and old["reason"].startswith("offer expired: sent 48.0 h ago"), old
        assert "older than the 24 h" in old["reason"]
        ahead = send(json.dumps({"id": "c-ahead", "args": args, "ts": time.time() + 2 * 86400}).encode(), "c-ahead")
        assert ahead["status"] == "error" and "ahead of this device's clock" in ahead["reason"], ahead
        assert "NTP" in ahead["reason"]
        bare = send(json.dumps({"id": "c-bare", "args": args}).encode(), "c-bare")
        assert bare["status"] == "error" and "no `ts`" in bare["reason"], bare
        skewed = send(json.dumps({"id": "c-skew", "args": args, "ts": time.time() + 600}).encode(), "c-skew")
        assert skewed["status"] == "ok", skewed  # 10 min of clock skew is tolerated
        assert wait_until(lambda: dev.last.get("state") == "SUCCEEDED", 20), dev.last
        assert dev.current() == "1.1" and dev.agent.metrics()["offers_expired"] == 3
        assert send(payloads.command("c-again", args), "c-again")["result"]["state"] == "SUCCEEDED"
    finally:
        dev.stop()
