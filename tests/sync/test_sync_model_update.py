"""Model updates against a real mosquitto: signed manifest + QoS1 chunks, verify, self-test, activate, rollback,
refusals, kill -9 resume, staged rollout with abort. Real files (a hand-encoded ONNX model run by onnxruntime),
real Ed25519 signatures, no mocks."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from models import sign
from models.zoo import ModelCorrupt, ModelZoo

from sync import topics
from devtools.broker import Broker, prod_acl
from sync.client import ClientOptions
from sync.rollout import Rollout, publish_model, read_statuses, wave_sizes
from sync.update_download import Staging
from sync.update_manifest import version_key

from sync_helpers import requester, wait_until
from update_helpers import MODEL, Device, keys, model_dir

CHUNK = 64 << 10
FINAL = ("SUCCEEDED", "FAILED", "ROLLED_BACK")


def opts(port: int) -> ClientOptions:
    return ClientOptions("127.0.0.1", port)


def offer(port: int, version: str, name: str = MODEL, device: str = "d001") -> dict:
    t = topics.DeviceTopics("s001", device)
    with requester(port, [f"{t.base}/cmd_result/+"]) as r:
        cid = r.send(t.cmd("model_update"), {"name": name, "version": version})
        got = r.wait([cid], 5)[cid]
    assert got, "no answer to model_update"
    return got[0]


def final(dev: Device, version: str, timeout: float = 20) -> dict:
    assert wait_until(lambda: dev.last.get("version") == version and dev.last.get("state") in FINAL, timeout), \
        dev.agent.models()
    return dev.last


def current(dev: Device) -> str:
    return os.readlink(dev.zoo.cache / "models" / MODEL / "current")


@pytest.fixture
def fleet(tmp_path):
    priv, pub = keys(tmp_path / "keys")
    base = model_dir(tmp_path / "v1.0", seed=0)
    return priv, pub, base


def test_signed_update_is_downloaded_verified_selftested_and_activated(broker, tmp_path, fleet):
    priv, pub, base = fleet
    dev = Device(broker.port, tmp_path / "dev", pub, base=base).start()
    try:
        pubd = publish_model(opts(broker.port), MODEL, "1.1", model_dir(tmp_path / "v1.1", seed=2), priv,
                             chunk_size=CHUNK)
        assert pubd["chunks"] >= 4  # several QoS1 chunks, none over the chunk size
        res = offer(broker.port, "1.1")
        assert res["status"] == "ok" and res["result"]["state"] == "QUEUED"
        last = final(dev, "1.1")
        assert last["state"] == "SUCCEEDED", last
        assert current(dev) == "1.1" and (dev.zoo.cache / "models" / MODEL / "1.0").is_dir()  # previous kept
        assert dev.activated == [(MODEL, "1.1")]
        zoo = ModelZoo(dev.zoo.cache, public_key=pub, manifest_dir=tmp_path / "dev" / "manifests")
        zoo.verify(MODEL)  # built.json of the installed version = the signed manifest; files match it
        assert zoo.artifact(MODEL, "onnxruntime", "fp32").path.parent.name == "1.1"
        # the runtime's zoo (the cache's own key, not the fleet's) opens it too: the agent put the fleet key in
        # <cache>/keys/trusted; without that copy the version it installed would be refused as unsigned by its key
        sign.signing_key(dev.zoo.cache)  # the cache's own (dev) key pair, as a device that built models has
        own = ModelZoo(dev.zoo.cache, manifest_dir=tmp_path / "dev" / "manifests")
        own.check_artifact(own.artifact(MODEL, "onnxruntime", "fp32"))
        trusted = list((dev.zoo.cache / "keys" / "trusted").glob("fleet-*.pub"))
        assert len(trusted) == 1
        trusted[0].unlink()
        with pytest.raises(ModelCorrupt, match="BAD SIGNATURE"):
            own.check_artifact(own.artifact(MODEL, "onnxruntime", "fp32"))
        states = [e["state"] for e in dev.events() if e["version"] == "1.1"]
        assert states == ["DOWNLOADING", "VERIFYING", "SELF_TEST", "ACTIVATING", "SUCCEEDED"]  # offers: no event
        st = read_statuses(opts(broker.port), 0.5)[("s001", "d001")]
        assert st["job"]["state"] == "SUCCEEDED" and st["models"][MODEL]["active"] == "1.1"
        assert st["job"]["progress"]["chunks_fetched"] == pubd["chunks"]
        assert st["job"]["selftest"]["tiny_add.onnx"]["passed"] is True
        assert dev.svc._state["model_updates"][MODEL]["active"] == "1.1"  # in the retained device state
        again = offer(broker.port, "1.1")  # replay of the active version: answered, nothing re-run
        assert again["result"]["state"] == "SUCCEEDED" and dev.activated == [(MODEL, "1.1")]
    finally:
        dev.stop()


def test_refusals_bad_signature_downgrade_unknown_model_disk_full(broker, tmp_path, fleet):
    priv, pub, base = fleet
    rogue, _ = keys(tmp_path / "rogue", "rogue")
    dev = Device(broker.port, tmp_path / "dev", pub, base=base).start()
    staging = dev.zoo.cache / "updates" / MODEL
    try:
        publish_model(opts(broker.port), MODEL, "1.1", model_dir(tmp_path / "v1.1", seed=2), rogue, chunk_size=CHUNK)
        offer(broker.port, "1.1")
        last = final(dev, "1.1")
        assert last["state"] == "FAILED" and "bad signature" in last["reason"].lower(), last
        # refused at once, as the command's answer: no job, no event, no staging folder
        publish_model(opts(broker.port), MODEL, "0.9", model_dir(tmp_path / "v0.9", seed=3), priv, chunk_size=CHUNK)
        res = offer(broker.port, "0.9")
        assert res["status"] == "error" and res["reason"].startswith("downgrade/replay refused"), res
        res = offer(broker.port, "2.0", name="no_such_model")
        assert res["status"] == "error" and "unknown model" in res["reason"], res
        assert not any(e["version"] in ("0.9", "2.0") for e in dev.events())
        dev.agent.opts.reserve_bytes = 1 << 60
        publish_model(opts(broker.port), MODEL, "1.2", model_dir(tmp_path / "v1.2", seed=4), priv, chunk_size=CHUNK)
        offer(broker.port, "1.2")
        last = final(dev, "1.2")
        assert last["state"] == "FAILED" and last["reason"].startswith("disk full"), last
        assert current(dev) == "1.0" and dev.activated == []  # nothing active changed
        assert sorted(p.name for p in (dev.zoo.cache / "models" / MODEL).iterdir()) == ["1.0", "current"]
        assert not staging.exists() or list(staging.iterdir()) == []  # every refusal removed its staging
        assert dev.agent.metrics()["offers_refused"] == 2
    finally:
        dev.stop()


def test_corrupt_chunk_is_re_requested_then_refused(broker, tmp_path, fleet):
    priv, pub, base = fleet
    dev = Device(broker.port, tmp_path / "dev", pub, base=base).start()
    try:
        src = model_dir(tmp_path / "v1.1", seed=2)
        publish_model(opts(broker.port), MODEL, "1.1", src, priv, chunk_size=CHUNK)
        with requester(broker.port, []) as r:  # damage one retained chunk on the broker
            r.send(topics.model_chunk(MODEL, "1.1", 0, 1), payload=b"\x00" * CHUNK, retain=True)
            time.sleep(0.2)
        offer(broker.port, "1.1")
        last = final(dev, "1.1")
        assert last["state"] == "FAILED" and "corrupt chunk 1 of tiny_add.onnx" in last["reason"], last
        st = read_statuses(opts(broker.port), 0.5)[("s001", "d001")]
        assert st["job"]["progress"]["chunk_retries"] == 4  # re-requested 3 times, then refused
        assert current(dev) == "1.0" and dev.activated == []
        publish_model(opts(broker.port), MODEL, "1.1", src, priv, chunk_size=CHUNK, replace=True)  # republished
        offer(broker.port, "1.1")
        assert wait_until(lambda: dev.last.get("state") == "SUCCEEDED", 20), dev.last
        assert current(dev) == "1.1"
    finally:
        dev.stop()


def test_selftest_failure_and_failed_health_check_roll_back(broker, tmp_path, fleet):
    priv, pub, base = fleet
    dev = Device(broker.port, tmp_path / "dev", pub, base=base).start()
    try:
        publish_model(opts(broker.port), MODEL, "1.1", model_dir(tmp_path / "v1.1", seed=2, golden_error=1.0), priv,
                      chunk_size=CHUNK)
        offer(broker.port, "1.1")
        last = final(dev, "1.1")
        assert last["state"] == "ROLLED_BACK" and "self-test failed" in last["reason"], last
        assert "golden outputs differ" in last["reason"] and current(dev) == "1.0" and dev.activated == []
        dev.healthy = False  # the runtime's post-activation check fails for anything but 1.0
        publish_model(opts(broker.port), MODEL, "1.2", model_dir(tmp_path / "v1.2", seed=4), priv, chunk_size=CHUNK)
        offer(broker.port, "1.2")
        last = final(dev, "1.2")
        assert last["state"] == "ROLLED_BACK" and "health check failed" in last["reason"], last
        assert current(dev) == "1.0" and dev.activated == [(MODEL, "1.2"), (MODEL, "1.0")]
        assert not (dev.zoo.cache / "models" / MODEL / "1.2").exists()
    finally:
        dev.stop()


def test_kill9_during_download_resumes_without_refetching_verified_chunks(broker, tmp_path, fleet):
    priv, pub, base = fleet
    small = 16 << 10
    pubd = publish_model(opts(broker.port), MODEL, "1.1", model_dir(tmp_path / "v1.1", n=20_000, seed=2), priv,
                         chunk_size=small)
    root = tmp_path / "dev"
    script = Path(__file__).with_name("update_device.py")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), str(script.parent)])}
    cmd = [sys.executable, str(script), "--port", str(broker.port), "--root", str(root), "--pub", str(pub)]
    log1 = open(tmp_path / "dev1.log", "w")
    p = subprocess.Popen(cmd + ["--base", str(base), "--rate", str(100 << 10), "--window", "1"], stdout=log1,
                         stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert wait_until(lambda: "started" in (tmp_path / "dev1.log").read_text(), 20)
        offer(broker.port, "1.1")
        stage = root / "cache" / "updates" / MODEL / "1.1"

        def verified() -> int:
            if not (stage / "update.json").is_file() or not (stage / "files").is_dir():
                return 0
            st = Staging(stage / "files", json.loads((stage / "update.json").read_text())["payload"])
            return st.scan()

        assert wait_until(lambda: verified() >= 6, 20), (tmp_path / "dev1.log").read_text()[-2000:]
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(5)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        log1.close()
    on_disk = verified()
    assert 6 <= on_disk < pubd["chunks"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    models = json.loads(out.stdout.strip().splitlines()[-1])["models"]
    assert models[MODEL]["active"] == "1.1" and models[MODEL]["last"]["state"] == "SUCCEEDED", \
        (models, out.stderr[-3000:])
    prog = read_statuses(opts(broker.port), 0.5)[("s001", "d001")]["job"]["progress"]
    assert prog["chunks_resumed"] >= on_disk and prog["resumed_job"] is True
    assert prog["chunks_resumed"] + prog["chunks_fetched"] == pubd["chunks"]  # verified chunks not fetched again


def test_staged_rollout_aborts_and_rolls_back_when_failures_pass_threshold(broker, tmp_path, fleet, capsys):
    priv, pub, base = fleet
    devs = [Device(broker.port, tmp_path / f"d{i}", pub, device=f"d00{i}", base=base, healthy=(i != 2)).start()
            for i in (1, 2, 3)]
    try:
        publish_model(opts(broker.port), MODEL, "1.1", model_dir(tmp_path / "v1.1", seed=2), priv, chunk_size=CHUNK)
        assert wave_sizes(3, [1, 50, 100]) == [1, 2, 3] and wave_sizes(100, [1, 10, 50, 100]) == [1, 10, 50, 100]
        res = Rollout(opts(broker.port), MODEL, "1.1", [("s001", d.svc.identity.id) for d in devs],
                      waves=[1, 50, 100], abort_failure_pct=20, wave_timeout_s=30, rollback_timeout_s=15).run()
        assert res["status"] == "ABORTED" and "50% of 2 devices failed" in res["reason"], res
        assert res["waves"] == [{"s001/d001": "SUCCEEDED"}, {"s001/d002": "ROLLED_BACK"}]
        assert res["rolled_back"] == {"s001/d001": "ROLLED_BACK"}  # told to roll back after the abort
        assert res["devices"]["s001/d003"]["state"] == "PENDING"  # wave 3 never started
        assert [current(d) for d in devs] == ["1.0", "1.0", "1.0"]
        assert devs[0].activated == [(MODEL, "1.1"), (MODEL, "1.0")] and devs[2].activated == []
        from edge.app.cli import main

        assert main(["fleet", "status", "--port", str(broker.port), "--wait", "0.5"]) == 0
        out = capsys.readouterr().out
        assert "s001/d001" in out and "ROLLED_BACK" in out and "s001/d003" not in out
    finally:
        for d in devs:
            d.stop()


def test_update_under_the_production_acl(tmp_path, fleet):
    """The shipped pattern ACL (sync/mosquitto/acl), identities bound to client ids: the device may read model
    topics and write its status; the fleet admin publishes and rolls out."""
    priv, pub, base = fleet
    users = {"s001/d001": "pw-d1", "fleet-admin": "pw-admin"}
    b = Broker(tmp_path / "acl-broker", users=users, acl=prod_acl(), bind_clientid=True).start()
    admin = dict(username="fleet-admin", password="pw-admin")
    dev = Device(b.port, tmp_path / "dev", pub, base=base, sync={"username": "s001/d001", "password": "pw-d1"})
    try:
        dev.start()
        publish_model(ClientOptions("127.0.0.1", b.port, **admin), MODEL, "1.1", model_dir(tmp_path / "v1.1", seed=2),
                      priv, chunk_size=CHUNK)
        res = Rollout(ClientOptions("127.0.0.1", b.port, **admin), MODEL, "1.1", [("s001", "d001")], waves=[100],
                      wave_timeout_s=20).run()
        assert res["status"] == "SUCCEEDED", res
        assert current(dev) == "1.1" and dev.svc.client.last_error is None
    finally:
        dev.stop()
        b.close()


def _built_face_detector(tmp_path) -> Path:
    """A verified copy of the built BlazeFace full-range files from the model cache (built here if missing)."""
    import shutil
    import subprocess
    import sys

    from edge.core.paths import cache_dir
    from models import sign
    from models.zoo import ModelZoo

    src = ModelZoo().model_dir("face_detection_full_range")
    if not (src / "built.json").is_file():
        r = subprocess.run([sys.executable, "-m", "edge.app.cli", "models", "build", "--only", "face_detection_full_range"],
                           capture_output=True, text=True, timeout=1800)
        assert r.returncode == 0, r.stderr[-2000:]
    dst = tmp_path / "face"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("work", "logs", ".steps"))
    sign.verify_manifest(dst / "built.json", sign.public_key_path(cache_dir()))
    return dst

def test_real_face_detector_update_selftests_every_backend(broker, tmp_path, fleet):
    """BlazeFace full range (.tflite, .onnx, OpenVINO FP32 + INT8, golden.npz: ~8 MB) from `edge models build`."""
    priv, pub, _ = fleet
    src = _built_face_detector(tmp_path)
    dev = Device(broker.port, tmp_path / "dev", pub).start()
    try:
        pubd = publish_model(opts(broker.port), "face_detection_full_range", "0.10.21-r2", src, priv)
        assert pubd["chunks"] >= 30
        offer(broker.port, "0.10.21-r2", name="face_detection_full_range")
        assert wait_until(lambda: (dev.agent.models().get("face_detection_full_range", {}).get("last") or {})
                          .get("state") in FINAL, 60)
        job = read_statuses(opts(broker.port), 0.5)[("s001", "d001")]["job"]
        assert job["state"] == "SUCCEEDED", job
        tested = {f: r for f, r in job["selftest"].items() if "passed" in r}
        assert tested and all(r["passed"] for r in tested.values())
        assert os.readlink(dev.zoo.cache / "models" / "face_detection_full_range" / "current") == "0.10.21-r2"
    finally:
        dev.stop()


def test_version_order():
    assert version_key("0.10.21-r2") > version_key("0.10.21-r1") > version_key("0.9.99")
    assert version_key("1.10") > version_key("1.9") and version_key("1.0-r1") > version_key("1.0")
