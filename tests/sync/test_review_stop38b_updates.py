"""Second look at signed model updates (real mosquitto, real signed builds, real onnxruntime self-tests; device
processes killed with SIGKILL where the finding is about a crash):

* a process killed while a failed health check was being rolled back finishes that rollback at the next start
  (it resumed the failed version as a new download, reinstalled it and could report it SUCCEEDED);
* a self-test that kills the process is failed after MAX_CHECK_ATTEMPTS starts (every start resumed the job into
  the same crash), and one that hangs fails after `selftest_timeout_s` (the agent's worker was stuck for good);
* a fleet rollback or the agent stopping during the self-test is honoured before activation (the canceled version
  was activated and health-checked anyway, during a shutdown too);
* the version's built.json is on disk (fsync) before `current` points at it;
* `edge fleet status` survives a device's malformed shadow report;
* a zero-byte file in an update (an OpenVINO `.bin` without weights) installs instead of stalling.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import sync.update_installer as installer
from edge.app.cli import main
from sync import payloads, topics
from sync.rollout import AdminConnection, publish_model, read_statuses
from sync.update_installer import MAX_CHECK_ATTEMPTS

from sync_helpers import wait_until
from update_helpers import MODEL, Device, command, keys, model_dir, opts

CHUNK = 64 << 10
FINAL = ("SUCCEEDED", "FAILED", "ROLLED_BACK")
SYNC_DIR = Path(__file__).resolve().parent

# A device process (update_helpers.Device) whose health check and self-test can be told to fail, hang or kill it.
DEVICE = r'''
import argparse, json, logging, os, signal, sys, time
from pathlib import Path
from update_helpers import MODEL, Device, run_until_final
import sync.update_installer as installer

p = argparse.ArgumentParser()
p.add_argument("--port", type=int, required=True)
p.add_argument("--root", required=True)
p.add_argument("--pub", required=True)
p.add_argument("--base")
p.add_argument("--check", default="", help="VERSION=ok|fail|hang,... (health check of each version)")
p.add_argument("--selftest", choices=("real", "kill"), default="real")
p.add_argument("--kill-on-point", help="SIGKILL just before `current` is pointed at this version")
p.add_argument("--timeout-s", type=float, default=30.0)
p.add_argument("--until", default="SUCCEEDED,FAILED,ROLLED_BACK", help="the job states that end the run")
args = p.parse_args()
logging.basicConfig(level=logging.INFO, format="%(asctime)s dev %(levelname)s %(name)s: %(message)s")
root = Path(args.root)
base = Path(args.base) if args.base and not (root / "cache" / "models" / MODEL).exists() else None
dev = Device(args.port, root, Path(args.pub), base=base)
checks = dict(x.split("=") for x in args.check.split(",") if x)

def on_activated(name, version):
    dev.activated.append((name, version))
    print(json.dumps({"health_check": version}), flush=True)
    if checks.get(version) == "hang":
        time.sleep(3600)
    return checks.get(version, "ok") == "ok"

dev.agent.installer.on_activated = on_activated
if args.selftest == "kill":  # an artefact that crashes the runtime when it is loaded
    def self_test(*a, **k):
        print(json.dumps({"selftest": "kill"}), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    installer.self_test = self_test
if args.kill_on_point:
    point = installer.ModelStore.point
    def killing_point(self, name, version):
        if version == args.kill_on_point:
            print(json.dumps({"point": version}), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
        return point(self, name, version)
    installer.ModelStore.point = killing_point
sys.exit(run_until_final(dev, args.timeout_s, tuple(args.until.split(","))))
'''


def offer(port: int, version: str) -> dict:
    return command(port, "model_update", {"name": MODEL, "version": version, "rollout": "r-38b"})


def final(dev: Device, version: str, timeout: float = 20) -> dict:
    assert wait_until(lambda: dev.last.get("version") == version and dev.last.get("state") in FINAL, timeout), \
        dev.agent.models()
    return dev.last


@pytest.fixture
def fleet(broker, tmp_path):
    """(private key, public key, 1.0 folder) with 1.1 published."""
    priv, pub = keys(tmp_path / "keys")
    base = model_dir(tmp_path / "v1.0", seed=0)
    publish_model(opts(broker.port), MODEL, "1.1", model_dir(tmp_path / "v1.1", seed=2), priv, chunk_size=CHUNK)
    return priv, pub, base


@pytest.fixture
def device_cmd(broker, tmp_path, fleet):
    script = tmp_path / "device38b.py"
    script.write_text(DEVICE)
    root = tmp_path / "dev"
    return root, [sys.executable, str(script), "--port", str(broker.port), "--root", str(root), "--pub",
                  str(fleet[1]), "--base", str(fleet[2])]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SYNC_DIR.parents[1]), str(SYNC_DIR.parent),
                                                         str(SYNC_DIR)])}


def run_until(cmd: list[str], log: Path, marker: str, port: int | None = None, then=None) -> None:
    """Start the device, offer 1.1 (if port), call then() (if given), SIGKILL the device as soon as `marker` is in
    its output."""
    with open(log, "w") as out:
        p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env(), start_new_session=True)
    try:
        assert wait_until(lambda: "started" in log.read_text(), 30), log.read_text()[-3000:]
        if port is not None:
            assert offer(port, "1.1")["status"] == "ok"
        if then is not None:
            then()
        assert wait_until(lambda: marker in log.read_text(), 30), log.read_text()[-3000:]
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(5)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)


@pytest.mark.parametrize("kill, marker, current", [
    (["--check", "1.1=fail,1.0=hang"], '"health_check": "1.0"', "1.0"),  # in the health check of 1.0
    (["--check", "1.1=fail", "--kill-on-point", "1.0"], '"point": "1.0"', "1.1"),  # before the swap back
], ids=["in-check-of-previous", "before-swap-back"])
def test_kill9_while_a_failed_health_check_is_rolled_back_finishes_the_rollback(broker, tmp_path, device_cmd, kill,
                                                                               marker, current):
    """1.1 fails its health check; the process is killed while it goes back to 1.0. The next start must finish that
    rollback (ROLLED_BACK, 1.1 never loaded again, 1.1 gone), not resume 1.1 as a download and activate it again
    (nor check the still-active 1.1 again)."""
    root, cmd = device_cmd
    run_until(cmd + kill, tmp_path / "run1.log", marker, broker.port)
    assert os.readlink(root / "cache" / "models" / MODEL / "current") == current
    out = subprocess.run(cmd + ["--timeout-s", "20"], capture_output=True, text=True, timeout=60, env=env())
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-4000:])
    res = json.loads(out.stdout.strip().splitlines()[-1])
    rec = res["models"][MODEL]
    assert res["activated"] == [[MODEL, "1.0"]], res  # the failed version is never loaded again
    assert rec["active"] == "1.0" and rec.get("floor") is None, rec
    assert rec["last"]["state"] == "ROLLED_BACK" and "health check failed" in rec["last"]["reason"], rec
    assert not (root / "cache" / "models" / MODEL / "1.1").exists()
    assert not (root / "cache" / "updates" / MODEL).exists()
    st = read_statuses(opts(broker.port), 0.5)[("s001", "d001")]
    assert st["job"]["state"] == "ROLLED_BACK" and st["job"]["phase"] == "ACTIVATING", st["job"]


def test_selftest_that_kills_the_process_fails_after_max_attempts(broker, tmp_path, device_cmd):
    root, cmd = device_cmd
    run_until(cmd + ["--selftest", "kill"], tmp_path / "run1.log", '"selftest"', broker.port)
    deaths = 1
    for _ in range(MAX_CHECK_ATTEMPTS + 1):  # each start resumes the job, whose self-test kills it again
        out = subprocess.run(cmd + ["--selftest", "kill", "--timeout-s", "20"], capture_output=True, text=True,
                             timeout=60, env=env())
        if out.returncode != -signal.SIGKILL:
            break
        deaths += 1
    assert deaths == MAX_CHECK_ATTEMPTS and out.returncode == 0, (deaths, out.stdout[-2000:], out.stderr[-4000:])
    rec = json.loads(out.stdout.strip().splitlines()[-1])["models"][MODEL]
    assert rec["active"] == "1.0" and rec["last"]["state"] == "ROLLED_BACK", rec
    assert f"self-test never finished: the process died on {MAX_CHECK_ATTEMPTS} starts" in rec["last"]["reason"]
    assert not (root / "cache" / "updates" / MODEL).exists()
    st = read_statuses(opts(broker.port), 0.5)[("s001", "d001")]
    assert st["job"]["state"] == "ROLLED_BACK" and st["job"]["phase"] == "SELF_TEST", st["job"]


@pytest.fixture
def gated_selftest(monkeypatch):
    """The real self-test, held at its start until `gate` is set (`entered` is set when one is waiting)."""
    gate, entered, real = threading.Event(), threading.Event(), installer.self_test

    def held(*a, **k):
        entered.set()
        gate.wait(60)
        return real(*a, **k)
    monkeypatch.setattr(installer, "self_test", held)
    yield gate, entered
    gate.set()


def test_fleet_rollback_during_the_selftest_never_activates(broker, tmp_path, fleet, gated_selftest):
    gate, entered = gated_selftest
    dev = Device(broker.port, tmp_path / "dev", fleet[1], base=fleet[2]).start()
    try:
        assert offer(broker.port, "1.1")["status"] == "ok"
        assert entered.wait(20)
        res = command(broker.port, "model_rollback", {"name": MODEL, "version": "1.1", "rollout": "r-38b"})
        assert res["status"] == "ok" and res["result"]["action"] == "canceled", res
        threading.Timer(0.5, gate.set).start()  # the self-test would pass
        last = final(dev, "1.1")
        assert "canceled by a fleet rollback" in last["reason"] and last["state"] != "SUCCEEDED", last
        assert wait_until(lambda: not (dev.zoo.cache / "updates" / MODEL).exists(), 5)
        assert dev.activated == [] and dev.current() == "1.0"  # never swapped in, never health-checked
        assert not (dev.zoo.cache / "models" / MODEL / "1.1").exists()
    finally:
        dev.stop()


def test_agent_stop_during_the_selftest_does_not_activate_and_the_job_resumes(broker, tmp_path, fleet,
                                                                              gated_selftest):
    gate, entered = gated_selftest
    root = tmp_path / "dev"
    dev = Device(broker.port, root, fleet[1], base=fleet[2]).start()
    try:
        assert offer(broker.port, "1.1")["status"] == "ok"
        assert entered.wait(20)
        threading.Timer(0.5, gate.set).start()  # the self-test passes while the agent is stopping
        dev.agent.stop()
        assert not wait_until(lambda: dev.activated, 2), dev.activated  # no activation during the shutdown
        assert dev.current() == "1.0"
        job = json.loads((root / "cache" / "updates" / MODEL / "1.1" / "job.json").read_text())
        assert job["state"] == "SELF_TEST", job  # kept: it resumes at the next start
    finally:
        dev.stop()
    dev = Device(broker.port, root, fleet[1]).start()
    try:
        assert final(dev, "1.1")["state"] == "SUCCEEDED", dev.last
        assert dev.activated == [(MODEL, "1.1")] and dev.current() == "1.1"
    finally:
        dev.stop()


def test_selftest_that_hangs_fails_after_its_timeout_and_the_agent_goes_on(broker, tmp_path, fleet, monkeypatch):
    gate, calls, real = threading.Event(), [], installer.self_test

    def hangs_once(*a, **k):
        calls.append(1)
        if len(calls) == 1:
            gate.wait(60)  # a runtime stuck in a load or a run
        return real(*a, **k)
    monkeypatch.setattr(installer, "self_test", hangs_once)
    dev = Device(broker.port, tmp_path / "dev", fleet[1], base=fleet[2], selftest_timeout_s=1.0).start()
    try:
        assert offer(broker.port, "1.1")["status"] == "ok"
        last = final(dev, "1.1")
        assert last["state"] == "ROLLED_BACK" and "self-test did not finish within 1 s" in last["reason"], last
        assert dev.current() == "1.0" and dev.activated == []
        assert wait_until(lambda: not (dev.zoo.cache / "updates" / MODEL).exists(), 5)
        assert offer(broker.port, "1.1")["status"] == "ok"  # the worker is free: a new offer installs
        assert wait_until(lambda: dev.last.get("state") == "SUCCEEDED", 20), dev.last
        assert dev.current() == "1.1"
    finally:
        gate.set()
        dev.stop()


def test_built_json_is_on_disk_before_current_points_at_the_version(broker, tmp_path, fleet, monkeypatch):
    """Every file of the version is fsynced before the `current` swap: after a power cut `current` must not point
    at a folder whose signed built.json (checked by the runtime before it loads the model) was never written."""
    synced, real_fsync, real_swap = [], os.fsync, installer._swap

    def fsync(fd):
        try:
            synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
        return real_fsync(fd)

    def swap(mdir, version):
        synced.append("SWAP")
        return real_swap(mdir, version)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(installer, "_swap", swap)
    dev = Device(broker.port, tmp_path / "dev", fleet[1], base=fleet[2]).start()
    try:
        assert offer(broker.port, "1.1")["status"] == "ok"
        assert final(dev, "1.1")["state"] == "SUCCEEDED", dev.last
    finally:
        dev.stop()
    before = synced[:synced.index("SWAP")]
    for fn in ("tiny_add.onnx", "golden.npz", "built.json"):
        assert any(Path(p).name.startswith((fn, f".{fn}.")) for p in before), (fn, before)


def test_fleet_status_lists_every_device_when_one_reports_a_malformed_shadow(broker, capsys):
    good = {"v": 1, "seq": 3, "job": {"name": MODEL, "version": "1.1", "state": "SUCCEEDED",
                                     "shadow": {"passed": True, "samples": 50, "target": 50,
                                                "landmark_drift": {"mean": 0.003},
                                                "latency_ms": {"candidate_p50": 8.1, "active_p50": 7.9}}},
            "models": {MODEL: {"active": "1.1"}}}
    bad = {"v": 1, "seq": 4, "job": {"name": MODEL, "version": "1.1", "state": "ROLLED_BACK", "reason": "x",
                                    "shadow": {"passed": "yes", "samples": "many", "landmark_drift": "far",
                                               "recall": "high", "latency_ms": [1, 2], "error_rate": "all"}},
           "models": {MODEL: {"active": "1.0"}}}
    with AdminConnection(opts(broker.port)) as c:
        c.publish(topics.DeviceTopics("s001", "d001").update, json.dumps(bad).encode(), retain=True)
        c.publish(topics.DeviceTopics("s001", "d002").update, json.dumps(good).encode(), retain=True)
        c.flush()
    assert payloads.check_update_status(bad)  # the fleet tools' own check lets it through
    assert main(["--log-level", "ERROR", "fleet", "status", "--port", str(broker.port), "--wait", "0.5"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("s001/d001") and "ROLLED_BACK - x | shadow FAILED 0/? | active: tiny_add=1.0" \
        in lines[0], lines
    assert "shadow passed 50/50 drift 0.0030 p50 8.1/7.9 ms" in lines[1], lines


def test_an_empty_file_in_an_update_installs(broker, tmp_path, fleet):
    """An empty file's only chunk is an empty message, which clears a retained topic instead of storing it: the
    device must not wait for it (it stalled, then FAILED)."""
    priv, pub, base = fleet
    src = model_dir(tmp_path / "v1.2", seed=3)
    (src / "tiny_add_ir.xml").write_text("<net/>")  # an OpenVINO IR whose .bin has no weights
    (src / "tiny_add_ir.bin").write_bytes(b"")
    out = publish_model(opts(broker.port), MODEL, "1.2", src, priv, chunk_size=CHUNK)
    assert out["files"] == 4
    dev = Device(broker.port, tmp_path / "dev", pub, base=base, backends=["onnxruntime"], chunk_timeout_s=0.5,
                 max_stalls=1).start()
    try:
        assert offer(broker.port, "1.2")["status"] == "ok"
        last = final(dev, "1.2")
        assert last["state"] == "SUCCEEDED", last
        assert (dev.zoo.cache / "models" / MODEL / "1.2" / "tiny_add_ir.bin").stat().st_size == 0
    finally:
        dev.stop()


def test_the_startup_cleaning_leaves_an_agent_json_write_in_progress(tmp_path):
    """A command handler may write agent.json (temporary, then rename) while the agent starts: the startup cleaning
    removed the temporary as a stray file, and the rename failed ("handler failed: FileNotFoundError", a flaky
    offer refusal in CI). A fresh temporary is left; one older than TMP_GRACE_S (a crash's leftover) goes."""
    import time as _time

    from models.zoo import ModelZoo
    from sync.update_installer import TMP_GRACE_S, ModelStore

    store = ModelStore(ModelZoo(tmp_path / "cache"))
    fresh, old = store.dir / ".agent.json.7.140001.tmp", store.dir / ".agent.json.7.140002.tmp"
    fresh.write_text("{}")
    old.write_text("{}")
    past = _time.time() - TMP_GRACE_S - 5
    os.utime(old, (past, past))
    store.startup(lambda name, version: True)
    assert fresh.exists() and not old.exists()
