"""Commands against a real broker: built-ins, v5 response topic + correlation data, robustness, 1,000-ping burst."""
from __future__ import annotations

import json
import logging
import time

import pytest

from sync import topics
from sync.service import SyncService

from sync_helpers import device_settings, requester, wait_until

T = topics.DeviceTopics("s001", "d001")
RESULTS = f"{T.base}/cmd_result/+"


@pytest.fixture
def device(broker, tmp_path):
    calls = {"reload_config": 0}

    def reload_config(args: dict) -> dict:
        calls["reload_config"] += 1
        return {"reloaded": True}

    svc = SyncService(*device_settings(broker.port, tmp_path / "outbox.db"), commands={"reload_config": reload_config})
    svc.start()
    assert svc.client.wait_connected(5)
    time.sleep(0.1)  # device SUBACKs
    svc.calls = calls
    yield svc
    svc.stop()


def test_builtin_commands_and_response_topic(broker, device):
    with requester(broker.port, [RESULTS, "test/replies/#"]) as r:
        ping = r.send(T.cmd("ping"), {"echo": "hi"})
        lvl = r.send(T.cmd("set_log_level"), {"level": "DEBUG", "logger": "sf.test.cmd"})
        ack = r.send(T.cmd("ack_alert"), {"event_id": "abc123", "by": "staff-7"})
        snap = r.send(T.cmd("snapshot"), {})
        rel = r.send(T.cmd("reload_config"), {})
        corr = r.send(T.cmd("ping"), {}, response_topic="test/replies/x", correlation=b"\x01corr")
        got = r.wait([ping, lvl, ack, snap, rel, corr], 10)
        assert got[ping][0]["status"] == "ok" and got[ping][0]["result"]["echo"] == "hi"
        assert got[ping][0]["device"] == "d001" and got[ping][0]["cmd"] == "ping"
        assert got[lvl][0]["status"] == "ok" and logging.getLogger("sf.test.cmd").level == logging.DEBUG
        assert got[ack][0]["status"] == "ok"
        assert got[snap][0]["status"] == "error" and got[snap][0]["reason"].startswith("unsupported")
        assert got[rel][0]["status"] == "ok" and device.calls["reload_config"] == 1  # runtime handler wins
        topic, _, props = next(x for x in r.raw if x[0] == "test/replies/x")
        assert props.CorrelationData == b"\x01corr"
        assert got[corr][0]["status"] == "ok"
        # results live outside the command tree
        assert all("/cmd_result/" in t or t.startswith("test/") for t, _, _ in r.raw)
    assert device.outbox.metrics()["emitted"]["events"] >= 1  # ack_alert recorded as an event
    logging.getLogger("sf.test.cmd").setLevel(logging.NOTSET)


def test_bad_commands_get_error_results_and_never_stall(broker, device):
    with requester(broker.port, [RESULTS]) as r:
        cases = {
            "nonjson": (T.cmd("ping"), b"\xff{not json"),
            "oversized": (T.cmd("ping"), json.dumps({"id": "big", "args": {"echo": "x" * 20000}}).encode()),
            "deep": (T.cmd("ping"), ('{"id":"deep","args":{"a":' + "[" * 40 + "]" * 40 + "}}").encode()),
            "deeper": (T.cmd("ping"), ('{"id":"deeper","args":' + "[" * 5000 + "]" * 5000 + "}").encode()),  # no id
            "unknown": (T.cmd("self_destruct"), b'{"id":"unknown","args":{}}'),
            "illtyped": (T.cmd("set_log_level"), b'{"id":"illtyped","args":{"level":5}}'),
            "badid": (T.cmd("ping"), b'{"id":42}'),
            "extra": (T.cmd("ping"), b'{"id":"extra","args":{"nope":1}}'),
            "array": (T.cmd("ping"), b'[1,2,3]'),
        }
        for topic, raw in cases.values():
            r.send(topic, payload=raw)
        ok = r.send(T.cmd("ping"), {})
        got = r.wait([ok, "deep", "unknown", "illtyped", "extra"], 10)
        assert got[ok][0]["status"] == "ok"  # still answering
        for cid in ("deep", "unknown", "illtyped", "extra"):
            assert got[cid] and got[cid][0]["status"] == "error" and got[cid][0]["reason"], cid
        assert "nested deeper" in got["deep"][0]["reason"]
        assert "unknown command" in got["unknown"][0]["reason"]
        # non-JSON, oversized, 5000-deep, bad id, array: no readable id, answered with id null
        assert wait_until(lambda: len(r.results.get("None", [])) >= 5, 5)
        assert all(x["status"] == "error" for x in r.results["None"])
        assert any("too large" in x["reason"] for x in r.results["None"])
        assert device.client.connected and device.metrics()["commands"]["error"] >= 9


def test_retained_command_is_refused_not_executed(broker, device):
    logger = logging.getLogger("sf.test.retained")
    logger.setLevel(logging.WARNING)
    with requester(broker.port, [RESULTS]) as r:
        cid = r.send(T.cmd("set_log_level"), {"level": "DEBUG", "logger": "sf.test.retained"}, retain=True)
        got = r.wait([cid], 5)
        assert got[cid][0]["status"] == "error" and "retained" in got[cid][0]["reason"]
        assert logger.level == logging.WARNING
        r.send(T.cmd("set_log_level"), payload=b"", retain=True)  # clear the retained message


def test_duplicate_command_id_is_answered_not_rerun(broker, device):
    with requester(broker.port, [RESULTS]) as r:
        r.send(T.cmd("reload_config"), {}, cmd_id="same-id")
        r.send(T.cmd("reload_config"), {}, cmd_id="same-id")
        got = r.wait(["same-id"], 5, each=2)
        assert [x["status"] for x in got["same-id"]] == ["ok", "ok"]
        assert device.calls["reload_config"] == 1
        r.send(T.cmd("ping"), {"echo": "x"}, cmd_id="same-id")  # another command reusing the id: run, not cached
        got = r.wait(["same-id"], 5, each=3)
        assert got["same-id"][-1]["cmd"] == "ping" and got["same-id"][-1]["result"]["echo"] == "x"


def test_fleet_and_store_commands_reach_the_device(broker, device):
    with requester(broker.port, [RESULTS]) as r:
        a = r.send(topics.fleet_cmd("ping"), {})
        b = r.send(topics.fleet_cmd("ping", "s001"), {})
        c = r.send(topics.fleet_cmd("ping", "s999"), {})  # another store: not for this device
        got = r.wait([a, b], 5)
        assert got[a][0]["status"] == "ok" and got[b][0]["status"] == "ok"
        assert r.wait([c], 0.3)[c] == []


def test_thousand_ping_burst_answered_in_full(broker, device):
    with requester(broker.port, [f"{T.base}/cmd_result/ping"]) as r:
        t0 = time.monotonic()
        ids = [r.send(T.cmd("ping"), {}, cmd_id=f"p{i}") for i in range(1000)]
        got = r.wait(ids, 30)
        elapsed = time.monotonic() - t0
        missing = [i for i in ids if not got[i]]
        assert not missing, f"{len(missing)} unanswered, e.g. {missing[:5]}"
        assert all(got[i][0]["status"] == "ok" for i in ids)
        print(f"1000 pings answered in {elapsed:.2f} s")
        # the device kept delivering events meanwhile
        assert device.client.connected and device.metrics()["commands"]["ok"] >= 1000
