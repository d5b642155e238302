"""Fleet tools on a broker full of junk retained messages (issue 15, case 5), on a real mosquitto: `edge fleet
list`, `status`, `rollout --devices all` and `unpublish-model` skip and report malformed messages instead of
crashing, and a rollout in progress survives junk on the device's own status topic."""
from __future__ import annotations

import json
import threading
import time

import pytest

from edge.app.cli import main
from sync import topics
from sync.client import ClientOptions
from sync.rollout import publish_model, read_statuses

from sync_helpers import requester, wait_until
from update_helpers import MODEL, Device, keys, model_dir

JUNK = [b"not json", b"[1, 2]", b'"text"', b"42", b"null", b'{"status": {"x": 1}}', b'{"status": "online", "ts": 1e300}',
        b'{"status": "online", "bdSeq": "7"}', b'{"job": "x"}', b'{"job": {"state": null}}', b'{"models": [1]}',
        b'{"seq": "7", "job": {"name": "tiny_add", "version": "1.1", "state": "SUCCEEDED"}}',
        b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe\x00", b'{"job": {"name": "a", "version": "b", "state": "c", '
                                                           b'"progress": {"chunks_total": "many"}}}']


def retain_junk(port: int) -> int:
    """Junk retained `state` and `update` of fake devices s001/j0..jN, and one readable offline device."""
    with requester(port, []) as r:
        for i, junk in enumerate(JUNK):
            t = topics.DeviceTopics("s001", f"j{i}")
            r.send(t.state, payload=junk, retain=True)
            r.send(t.update, payload=junk, retain=True)
        r.send(topics.DeviceTopics("s001", "old").state, payload=b'{"status": "offline", "bdSeq": 3, "ts": 1}',
               retain=True)
        time.sleep(0.5)
    return len(JUNK)


@pytest.fixture
def fleet(tmp_path):
    priv, pub = keys(tmp_path / "keys")
    return priv, pub, model_dir(tmp_path / "v1.0", seed=0)


def test_list_and_status_skip_and_report_junk(broker, capsys):
    n = retain_junk(broker.port)
    assert main(["fleet", "list", "--port", str(broker.port), "--wait", "0.5"]) == 0
    out, err = capsys.readouterr()
    assert "s001/old" in out and "offline" in out
    assert err.count("skipped malformed retained message") == n  # every junk state reported, none printed
    assert main(["fleet", "list", "--port", str(broker.port), "--wait", "0.5", "--json"]) == 0
    out, _ = capsys.readouterr()
    assert [json.loads(line)["device"] for line in out.splitlines()] == ["old"]
    assert main(["fleet", "status", "--port", str(broker.port), "--wait", "0.5"]) == 0
    out, err = capsys.readouterr()
    assert "skipped malformed retained message" in err and "Traceback" not in err
    statuses = read_statuses(ClientOptions("127.0.0.1", broker.port), 0.5)
    assert len(statuses.skipped) + len(statuses) == n and len(statuses.skipped) >= n - 3  # objects without a job
    assert all(st.get("job") is None for st in statuses.values())  # are harmless statuses: they print as such


def test_unpublish_clears_a_version_whose_manifest_is_junk(broker, capsys):
    base = topics.model_base(MODEL, "5.0")
    with requester(broker.port, []) as r:
        r.send(f"{base}/manifest", payload=b"[" * 50_000, retain=True)
        r.send(f"{base}/chunk/0/0", payload=b"x" * 1000, retain=True)
        r.send(f"{base}/chunk/7/99", payload=b"junk", retain=True)
        time.sleep(0.3)
    assert main(["fleet", "unpublish-model", "--port", str(broker.port), "--name", MODEL, "--version", "5.0"]) == 0
    assert "cleared 3 retained messages" in capsys.readouterr().out
    with requester(broker.port, [f"{base}/#"]) as r:
        time.sleep(0.5)
        assert r.raw == []  # nothing retained is left under the version
    assert main(["fleet", "unpublish-model", "--port", str(broker.port), "--name", MODEL, "--version", "5.0"]) == 1


def test_rollout_to_all_skips_junk_devices_and_survives_junk_during_the_rollout(broker, tmp_path, fleet, capsys):
    priv, pub, base = fleet
    retain_junk(broker.port)
    dev = Device(broker.port, tmp_path / "dev", pub, base=base).start()
    stop = threading.Event()

    def spam() -> None:  # the device's own topics (a compromised device can write them) and a junk device's
        t = topics.DeviceTopics("s001", "d001")
        with requester(broker.port, []) as r:
            while not stop.is_set():
                for junk in JUNK:
                    r.send(t.update, payload=junk)
                    r.send(t.cmd_result("model_update"), payload=junk)
                time.sleep(0.02)

    try:
        publish_model(ClientOptions("127.0.0.1", broker.port), MODEL, "1.1", model_dir(tmp_path / "v1.1", seed=2),
                      priv, chunk_size=64 << 10)
        th = threading.Thread(target=spam, daemon=True)
        th.start()
        rc = main(["fleet", "rollout", "--port", str(broker.port), "--name", MODEL, "--version", "1.1",
                   "--devices", "all", "--waves", "100", "--wave-timeout", "30", "--json"])
        stop.set()
        th.join(5)
        out, err = capsys.readouterr()
        res = json.loads(out.strip().splitlines()[-1])
        assert rc == 0 and res["status"] == "SUCCEEDED", res
        assert list(res["devices"]) == ["s001/d001"]  # junk and offline devices were not offered anything
        assert res["skipped_messages"] > 0 and "skipped malformed retained message" in err
        assert wait_until(lambda: dev.last.get("state") == "SUCCEEDED", 5)
    finally:
        stop.set()
        dev.stop()
