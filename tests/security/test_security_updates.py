"""Attacks on the model-update path, each against a real mosquitto (issue 15, cases 1-3 and the rollback rules):
a poisoned manifest never blocks the real one, refusals leave nothing staged, a flood of offers costs bounded
disk and events and delays a real update by less than 5 s, stale or replayed rollbacks are refused and audited."""
from __future__ import annotations

import json
import os
import time

import pytest

from models import sign
from sync import topics
from sync.rollout import publish_model
from sync.update_manifest import build_payload, sign_payload

from sync_helpers import requester, wait_until
from update_helpers import MODEL, Device, command, keys, model_dir, opts

CHUNK = 64 << 10
FINAL = ("SUCCEEDED", "FAILED", "ROLLED_BACK")


def final(dev: Device, version: str, timeout: float = 20) -> dict:
    assert wait_until(lambda: dev.last.get("version") == version and dev.last.get("state") in FINAL, timeout), \
        dev.agent.models()
    return dev.last


def staged(dev: Device) -> list[str]:
    """Everything under the agent's updates/ folder except agent.json (and its write_atomic temporary file, present
    for an instant while the agent saves it: a listing at that moment saw it as staged)."""
    root = dev.zoo.cache / "updates"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                  if p.name != "agent.json" and not (p.name.startswith(".agent.json.") and p.name.endswith(".tmp")))


def retain(port: int, topic: str, payload: bytes) -> None:
    with requester(port, []) as r:
        r.send(topic, payload=payload, retain=True)
        time.sleep(0.2)


@pytest.fixture
def fleet(tmp_path):
    priv, pub = keys(tmp_path / "keys")
    return priv, pub, model_dir(tmp_path / "v1.0", seed=0)


def test_poisoned_manifests_are_refused_unstaged_and_never_block_the_real_one(broker, tmp_path, fleet):
    priv, pub, base = fleet
    dev = Device(broker.port, tmp_path / "dev", pub, base=base, manifest_timeout_s=3).start()
    src = model_dir(tmp_path / "v1.1", seed=2)
    good = build_payload(MODEL, "1.1", src, chunk_size=CHUNK)
    key = sign.signing_key(tmp_path, priv)
    malformed = dict(good, files=list(good["files"]))  # signed by the fleet key, wrong shape (a buggy publisher)
    poisons = {
        "deeply nested JSON (400 KB)": b"[" * 200_000 + b"]" * 200_000,
        "JSON that is not an object": b"[1, 2, 3]",
        "not UTF-8": b"\xff\xfe\x00junk",
        "over 1 MiB": b" " * (1 << 20) + b"{}",
        "signed but malformed": sign_payload(malformed, key),
        "bad base64 signature": json.dumps({"format": sign.FORMAT, "payload": good,
                                            "signature": {"algorithm": "ed25519", "value": "!!"}}).encode(),
    }
    try:
        for n, (what, junk) in enumerate(poisons.items(), 1):
            retain(broker.port, topics.model_manifest(MODEL, "1.1"), junk)
            res = command(broker.port, "model_update", {"name": MODEL, "version": "1.1"})
            assert res["status"] == "ok", res
            assert wait_until(lambda: len([e for e in dev.events() if e["state"] == "FAILED"]) == n, 10), what
            last = final(dev, "1.1")
            assert last["state"] == "FAILED" and last["reason"], (what, last)
            assert "internal error" not in last["reason"], (what, last)
            assert staged(dev) == [], (what, staged(dev))  # nothing refused is cached or staged
        # the real one, same version: replaces the junk left on its manifest topic
        publish_model(opts(broker.port), MODEL, "1.1", src, priv, chunk_size=CHUNK, replace=True)
        command(broker.port, "model_update", {"name": MODEL, "version": "1.1"})
        assert wait_until(lambda: dev.last.get("state") == "SUCCEEDED", 20), dev.last
        assert os.readlink(dev.zoo.cache / "models" / MODEL / "current") == "1.1" and staged(dev) == []
    finally:
        dev.stop()


def test_offer_flood_leaves_no_folders_and_delays_a_real_update_by_seconds_not_timeouts(broker, tmp_path, fleet):
    """3,000 offers of unpublished (newer) and older versions, then a real one: measured against the same update
    without the flood. The delay is the time to answer 3,000 commands (2.6 s on the AVX-512 EPYC, 5.6 s on the
    slower AVX2-only one); the bound catches offers that wait (one manifest timeout each would be hours), not
    speed, which `edge bench` measures."""
    priv, pub, base = fleet
    dev = Device(broker.port, tmp_path / "dev", pub, base=base).start()
    t = topics.DeviceTopics("s001", "d001")
    try:
        for v, seed in (("1.1", 2), ("1.2", 4)):
            publish_model(opts(broker.port), MODEL, v, model_dir(tmp_path / f"v{v}", seed=seed), priv,
                          chunk_size=CHUNK)
        with requester(broker.port, [f"{t.base}/cmd_result/+"]) as r:
            t0 = time.monotonic()
            cid = r.send(t.cmd("model_update"), {"name": MODEL, "version": "1.1"})
            assert r.wait([cid], 10)[cid][0]["status"] == "ok"
            assert wait_until(lambda: dev.last.get("version") == "1.1" and dev.last.get("state") in FINAL, 30)
            baseline = time.monotonic() - t0
            assert dev.last["state"] == "SUCCEEDED", dev.last

            flood = [f"9.{i}" if i % 2 else f"0.{i}" for i in range(3000)]  # unpublished newer / older than 1.1
            ids = [r.send(t.cmd("model_update"), {"name": MODEL, "version": v}) for v in flood]
            t0 = time.monotonic()
            cid = r.send(t.cmd("model_update"), {"name": MODEL, "version": "1.2"})
            assert r.wait([cid], 60)[cid][0]["status"] == "ok"
            assert wait_until(lambda: dev.last.get("version") == "1.2" and dev.last.get("state") in FINAL, 60), \
                dev.last
            after_flood = time.monotonic() - t0
            assert dev.last["state"] == "SUCCEEDED", dev.last
            answers = r.wait(ids, 30)
        delay = after_flood - baseline
        print(f"real update: {baseline:.2f} s alone, {after_flood:.2f} s after 3,000 offers: delay {delay:.2f} s")
        assert delay < 15.0, (baseline, after_flood)
        refused = [a[0] for a in answers.values() if a and a[0]["status"] == "error"]
        assert len(refused) == 1500 and all("downgrade/replay refused" in a["reason"] for a in refused)
        assert staged(dev) == []  # no folder for any offer
        assert {p.name for p in (dev.zoo.cache / "models" / MODEL).iterdir()} <= {"1.0", "1.1", "1.2", "current"}
        flood_events = [e for e in dev.events() if e["version"].startswith(("9.", "0."))]
        assert len(flood_events) <= 20, len(flood_events)  # bounded: superseded offers leave status only
        agent = lambda: json.loads((dev.zoo.cache / "updates" / "agent.json").read_text())  # noqa: E731
        assert wait_until(lambda: agent()["pending"] == {}, 3), agent()["pending"]  # written at most every 0.5 s
    finally:
        dev.stop()


def test_unpublished_version_fails_within_the_manifest_timeout(broker, tmp_path, fleet):
    priv, pub, base = fleet
    dev = Device(broker.port, tmp_path / "dev", pub, base=base, manifest_timeout_s=1.0).start()
    try:
        t0 = time.monotonic()
        command(broker.port, "model_update", {"name": MODEL, "version": "7.0"})
        last = final(dev, "7.0", 10)
        assert last["state"] == "FAILED" and "no manifest" in last["reason"] and "within 1 s" in last["reason"]
        assert time.monotonic() - t0 < 5 and staged(dev) == []
    finally:
        dev.stop()


def test_stale_or_replayed_rollbacks_are_refused_and_every_rollback_is_audited(broker, tmp_path, fleet):
    priv, pub, base = fleet
    dev = Device(broker.port, tmp_path / "dev", pub, base=base).start()
    try:
        publish_model(opts(broker.port), MODEL, "1.1", model_dir(tmp_path / "v1.1", seed=2), priv, chunk_size=CHUNK)
        command(broker.port, "model_update", {"name": MODEL, "version": "1.1", "rollout": "r-1"})
        assert final(dev, "1.1")["state"] == "SUCCEEDED"
        stale = command(broker.port, "model_rollback", {"name": MODEL, "version": "1.0"})  # not the active one
        assert stale["status"] == "error" and "stale or replayed" in stale["reason"], stale
        other = command(broker.port, "model_rollback", {"name": MODEL, "version": "1.1", "rollout": "r-0"})
        assert other["status"] == "error" and "rollout r-1" in other["reason"], other
        ok = command(broker.port, "model_rollback", {"name": MODEL, "version": "1.1", "rollout": "r-1"})
        assert ok["status"] == "ok", ok
        assert wait_until(lambda: dev.last.get("state") == "ROLLED_BACK", 10), dev.last
        assert os.readlink(dev.zoo.cache / "models" / MODEL / "current") == "1.0"
        replay = command(broker.port, "model_rollback", {"name": MODEL, "version": "1.1", "rollout": "r-1"})
        assert replay["status"] == "error" and "stale or replayed" in replay["reason"], replay
        assert os.readlink(dev.zoo.cache / "models" / MODEL / "current") == "1.0"
        assert dev.activated == [(MODEL, "1.1"), (MODEL, "1.0")]  # the replay swapped nothing

        import sqlite3

        def audit() -> list[dict]:
            db = sqlite3.connect(dev.svc.outbox.path)
            try:
                rows = db.execute("SELECT body FROM reliable WHERE kind = 'model_rollback' ORDER BY seq").fetchall()
            finally:
                db.close()
            return [json.loads(b)["data"] for (b,) in rows]

        assert wait_until(lambda: len(audit()) == 4, 5), audit()
        assert [(a["action"], a["version"]) for a in audit()] == [("refused", "1.0"), ("refused", "1.1"),
                                                                  ("rolled_back", "1.1"), ("refused", "1.1")]
        assert audit()[2]["to"] == "1.0" and audit()[2]["trigger"] == "fleet"
    finally:
        dev.stop()


def test_restart_removes_staging_of_jobs_that_cannot_continue(broker, tmp_path, fleet):
    """Leftovers of an older agent (a refused downgrade's folder, an unknown model, a corrupt job.json, stray
    files) are removed at start; an unfinished job that can continue is kept and resumed."""
    priv, pub, base = fleet
    dev = Device(broker.port, tmp_path / "dev", pub, base=base)
    upd = dev.zoo.cache / "updates"
    for rel, text in {f"{MODEL}/0.9/job.json": json.dumps({"name": MODEL, "version": "0.9", "state": "FAILED"}),
                      f"{MODEL}/0.8/job.json": json.dumps({"name": MODEL, "version": "0.8", "state": "DOWNLOADING"}),
                      "no_such_model/2.0/job.json": json.dumps({"name": "no_such_model", "version": "2.0"}),
                      f"{MODEL}/3.0/job.json": "[" * 10_000, f"{MODEL}/3.1/chunk.part": "x", "stray.tmp": "x",
                      f"{MODEL}/1.1/job.json": json.dumps({"name": MODEL, "version": "1.1", "state": "DOWNLOADING",
                                                           "started": time.time()})}.items():
        (upd / rel).parent.mkdir(parents=True, exist_ok=True)
        (upd / rel).write_text(text)
    publish_model(opts(broker.port), MODEL, "1.1", model_dir(tmp_path / "v1.1", seed=2), priv, chunk_size=CHUNK)
    dev.start()
    try:
        assert final(dev, "1.1")["state"] == "SUCCEEDED", dev.last
        assert staged(dev) == []
    finally:
        dev.stop()
