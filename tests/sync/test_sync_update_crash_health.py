"""kill -9 during the post-activation health check, against a real mosquitto and a real device process: at the
next start the swapped-in version is checked again (SUCCEEDED with the floor raised, or rolled back), and a version
that kills the process on every start is rolled back after MAX_CHECK_ATTEMPTS instead of crash-looping."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sync import topics
from sync.client import ClientOptions
from sync.rollout import publish_model, read_statuses
from sync.update_installer import MAX_CHECK_ATTEMPTS

from sync_helpers import requester, wait_until
from update_helpers import MODEL, keys, model_dir

CHUNK = 64 << 10
SCRIPT = Path(__file__).with_name("update_device.py")


def opts(port: int) -> ClientOptions:
    return ClientOptions("127.0.0.1", port)


def offer(port: int, version: str) -> dict:
    t = topics.DeviceTopics("s001", "d001")
    with requester(port, [f"{t.base}/cmd_result/+"]) as r:
        cid = r.send(t.cmd("model_update"), {"name": MODEL, "version": version, "rollout": "r-crash"})
        got = r.wait([cid], 10)[cid]
    assert got, "no answer to model_update"
    return got[0]


def status(port: int) -> dict:
    return read_statuses(opts(port), 0.5)[("s001", "d001")]


@pytest.fixture
def setup(broker, tmp_path):
    priv, pub = keys(tmp_path / "keys")
    base = model_dir(tmp_path / "v1.0", seed=0)
    publish_model(opts(broker.port), MODEL, "1.1", model_dir(tmp_path / "v1.1", seed=2), priv, chunk_size=CHUNK)
    root = tmp_path / "dev"
    cmd = [sys.executable, str(SCRIPT), "--port", str(broker.port), "--root", str(root), "--pub", str(pub),
           "--base", str(base)]
    return root, cmd


def env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), str(SCRIPT.parent)])}


def kill_during_health_check(port: int, root: Path, cmd: list[str], log: Path, resumed: bool = False) -> None:
    """Start the device, offer 1.1 (resumed: the check resumes by itself at start, and a re-offer is answered
    "already in progress"), kill -9 the process while its health check runs."""
    with open(log, "w") as out:
        p = subprocess.Popen(cmd + ["--health", "hang"], stdout=out, stderr=subprocess.STDOUT, env=env(),
                             start_new_session=True)
    try:
        assert wait_until(lambda: "started" in log.read_text(), 30), log.read_text()[-3000:]
        if not resumed:
            assert offer(port, "1.1")["status"] == "ok"
        assert wait_until(lambda: '"health_check": "1.1"' in log.read_text(), 30), log.read_text()[-3000:]
        if resumed:
            again = offer(port, "1.1")
            assert again["status"] == "ok" and again["result"] == {"state": "ACTIVATING",
                                                                   "note": "already in progress"}, again
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(5)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert os.readlink(root / "cache" / "models" / MODEL / "current") == "1.1"  # swapped, never checked
    assert status(port)["job"]["state"] == "ACTIVATING"


def restart(cmd: list[str], *extra: str, timeout: float = 60) -> dict:
    out = subprocess.run(cmd + ["--timeout-s", "20", *extra], capture_output=True, text=True, timeout=timeout,
                         env=env())
    assert out.returncode == 0, ("no final state after the restart", out.stdout[-2000:], out.stderr[-4000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_kill9_during_health_check_then_healthy_restart_finishes_the_update(broker, tmp_path, setup):
    root, cmd = setup
    kill_during_health_check(broker.port, root, cmd, tmp_path / "run1.log")
    kill_during_health_check(broker.port, root, cmd, tmp_path / "run2.log", resumed=True)
    res = restart(cmd, "--health", "ok")
    rec = res["models"][MODEL]
    assert res["activated"] == [[MODEL, "1.1"]]  # the health check ran again at start
    assert rec["active"] == "1.1" and rec["floor"] == "1.1" and rec["last"]["state"] == "SUCCEEDED", rec
    st = status(broker.port)
    assert st["job"]["state"] == "SUCCEEDED" and st["job"]["rollout"] == "r-crash", st["job"]
    assert st["job"]["progress"]["check_attempts"] == 3, st["job"]  # the first check, then two resumed
    assert not (root / "cache" / "updates" / MODEL).exists()  # job finished: staging gone


def test_kill9_during_health_check_then_failing_check_rolls_back(broker, tmp_path, setup):
    root, cmd = setup
    kill_during_health_check(broker.port, root, cmd, tmp_path / "run1.log")
    res = restart(cmd, "--health", "fail")
    rec = res["models"][MODEL]
    assert res["activated"] == [[MODEL, "1.1"], [MODEL, "1.0"]]  # checked, failed, back on 1.0 (checked too)
    assert rec["active"] == "1.0" and rec.get("floor") is None, rec
    assert rec["last"]["state"] == "ROLLED_BACK" and "health check failed" in rec["last"]["reason"], rec
    assert not (root / "cache" / "models" / MODEL / "1.1").exists()
    assert status(broker.port)["job"]["state"] == "ROLLED_BACK"


def test_version_that_kills_the_process_on_every_start_is_rolled_back_not_crash_looped(broker, tmp_path, setup):
    """The check kills the process, and so does loading the active version at boot (the runtime loads its models
    before the agent starts): `guard_boot()` counts each start, and past MAX_CHECK_ATTEMPTS points `current` back
    before anything loads the version."""
    root, cmd = setup
    log = tmp_path / "run1.log"
    with open(log, "w") as out:
        p = subprocess.Popen(cmd + ["--health", "kill", "--load-at-boot"], stdout=out, stderr=subprocess.STDOUT,
                             env=env(), start_new_session=True)
    try:
        assert wait_until(lambda: "started" in log.read_text(), 30), log.read_text()[-3000:]
        assert offer(broker.port, "1.1")["status"] == "ok"
        assert p.wait(30) == -signal.SIGKILL  # killed by its health check
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    deaths = 1
    while deaths <= MAX_CHECK_ATTEMPTS:
        out = subprocess.run(cmd + ["--timeout-s", "20", "--health", "kill", "--load-at-boot"], capture_output=True,
                             text=True, timeout=60, env=env())
        if out.returncode != -signal.SIGKILL:
            break
        deaths += 1
    assert deaths == MAX_CHECK_ATTEMPTS and out.returncode == 0, (deaths, out.stdout[-2000:], out.stderr[-4000:])
    res = json.loads(out.stdout.strip().splitlines()[-1])
    rec = res["models"][MODEL]
    assert rec["active"] == "1.0" and rec["last"]["state"] == "ROLLED_BACK", rec
    assert f"{MAX_CHECK_ATTEMPTS} starts" in rec["last"]["reason"], rec
    assert not (root / "cache" / "models" / MODEL / "1.1").exists()
    assert not (root / "cache" / "updates" / MODEL).exists()
    st = status(broker.port)
    assert st["job"]["state"] == "ROLLED_BACK" and st["job"]["phase"] == "ACTIVATING", st["job"]
