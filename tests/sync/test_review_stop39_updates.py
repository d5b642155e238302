"""The update agent's agent.json under a failing write, and a fleet rollback killed half way (stop 39 review)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from models.zoo import ModelZoo
from sync.rollout import read_statuses
from sync.update_installer import ModelStore

from sync_helpers import wait_until
from test_review_stop38b_updates import device_cmd, env, fleet, run_until  # noqa: F401 - fixtures
from update_helpers import MODEL, command, opts


def test_agent_json_write_that_fails_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    """Disk full while the agent saves agent.json (here the file-size limit: the same OSError path): the save
    raises, agent.json keeps its last good content, and no half-written temporary is left holding the disk space
    (before, `.agent.json.<thread>.tmp` stayed until the next start, and nothing fsynced the write either)."""
    cache = tmp_path / "cache"
    store = ModelStore(ModelZoo(cache))
    name = sorted(store.zoo.names())[0]
    store.save_model(name, note="before")
    before = (store.dir / "agent.json").read_bytes()
    script = ("import resource, signal, sys\n"
              "from pathlib import Path\n"
              "from models.zoo import ModelZoo\n"
              "from sync.update_installer import ModelStore\n"
              "store = ModelStore(ModelZoo(Path(sys.argv[1])))\n"
              "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (len(open(store.dir / 'agent.json', 'rb').read()) + 64,"
              " resource.RLIM_INFINITY))\n"
              "try:\n"
              "    store.save_model(sys.argv[2], note='x' * 65536)\n"
              "except OSError as e:\n"
              "    print('raised', e.errno)\n"
              "    sys.exit(3)\n")
    r = subprocess.run([sys.executable, "-c", script, str(cache), name], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 3 and "raised" in r.stdout, r.stdout + r.stderr
    assert (store.dir / "agent.json").read_bytes() == before
    assert json.loads(before)["models"][name]["note"] == "before"
    assert [p.name for p in store.dir.iterdir() if p.name.endswith(".tmp")] == []


@pytest.mark.parametrize("kill, marker, current, activated", [
    (["--check", "1.0=hang"], '"health_check": "1.0"', "1.0", []),  # in the health check of 1.0
    (["--kill-on-point", "1.0"], '"point": "1.0"', "1.1", [[MODEL, "1.0"]]),  # before the swap back
], ids=["in-check-of-previous", "before-swap-back"])
def test_kill9_during_a_fleet_rollback_finishes_it_at_the_next_start(broker, tmp_path, device_cmd, kill,  # noqa: F811
                                                                     marker, current, activated):
    """1.1 installed and SUCCEEDED; the fleet rolls it back (the command answered "queued"); the process is killed
    before the rollback finished. Before, the accepted rollback lived only in memory: killed before the swap back
    the device stayed on the version the fleet rejected, and killed after it the rollback was never reported (the
    rollout waited in ROLLBACK_SENT) and 1.1 stayed on disk. The next start finishes it and reports ROLLED_BACK."""
    root, cmd = device_cmd
    cmd = cmd + ["--until", "ROLLED_BACK"]

    def succeed_then_roll_back() -> None:
        assert wait_until(lambda: (read_statuses(opts(broker.port), 0.3).get(("s001", "d001")) or {})
                          .get("job", {}).get("state") == "SUCCEEDED", 60)
        answer = command(broker.port, "model_rollback", {"name": MODEL, "version": "1.1", "rollout": "r-38b",
                                                         "reason": "rollout r-38b aborted"})
        assert answer["status"] == "ok" and answer["result"]["action"] == "queued", answer

    run_until(cmd + kill, tmp_path / "run1.log", marker, broker.port, then=succeed_then_roll_back)
    assert os.readlink(root / "cache" / "models" / MODEL / "current") == current
    out = subprocess.run(cmd + ["--timeout-s", "20"], capture_output=True, text=True, timeout=60, env=env())
    assert out.returncode == 0, (out.stdout[-2000:], out.stderr[-4000:])
    res = json.loads(out.stdout.strip().splitlines()[-1])
    rec = res["models"][MODEL]
    assert res["activated"] == activated, res
    assert rec["active"] == "1.0" and "fleet_rollback" not in rec, rec
    assert rec["last"]["state"] == "ROLLED_BACK" and rec["last"]["reason"] == "rollout r-38b aborted; back on 1.0"
    assert not (root / "cache" / "models" / MODEL / "1.1").exists()
    st = read_statuses(opts(broker.port), 0.5)[("s001", "d001")]
    assert st["job"]["state"] == "ROLLED_BACK" and st["job"]["version"] == "1.1", st["job"]


def test_a_job_the_fleet_canceled_before_a_crash_is_not_resumed(broker, tmp_path, fleet):  # noqa: F811
    """The fleet canceled a running download of 1.1 (answered "canceled") and the process died before the job saw
    the cancel: job.json still says DOWNLOADING. Before, the next start resumed the job and installed the version
    the fleet had just rejected; now the accepted rollback, kept in agent.json, cancels it at the start."""
    from sync.update_job import Job, RollbackArgs
    from update_helpers import Device

    _, pub, base = fleet
    dev = Device(broker.port, tmp_path / "dev", pub, base=base)
    store = dev.agent.store
    store.stage_dir(MODEL, "1.1").mkdir(parents=True)
    store.save_job(Job(MODEL, "1.1", "r-39", state="DOWNLOADING"))
    store.note_fleet_rollback(RollbackArgs(name=MODEL, version="1.1", rollout="r-39", reason="rollout r-39 aborted"))
    dev.start()
    try:
        assert wait_until(lambda: dev.last.get("state") in ("SUCCEEDED", "FAILED", "ROLLED_BACK"), 30)
        assert dev.last == {"version": "1.1", "state": "FAILED", "reason": "canceled by a fleet rollback"}, dev.last
        assert wait_until(lambda: "fleet_rollback" not in dev.agent.models()[MODEL], 10), dev.agent.models()
        assert dev.agent.active(MODEL) == "1.0" and dev.activated == []
        assert not store.stage_dir(MODEL, "1.1").exists()
    finally:
        dev.stop()


def test_a_rollback_the_worker_finished_first_leaves_no_record(tmp_path, monkeypatch):
    """The command thread wrote the accepted rollback to agent.json after handing it to the worker: descheduled
    there, the worker ran and cleared it first, and the late write left a record no run clears (a later legitimate
    install of that version would be rolled back at the next start). The record is written before the worker can
    take the rollback (here the command thread is held 1 s at its write)."""
    import shutil
    import time

    from sync.model_update import ModelUpdateAgent, UpdateOptions
    from sync.service import SyncService
    from sync.update_job import RollbackArgs
    from sync_helpers import device_settings
    from update_helpers import install_base, keys, manifest_dir, model_dir

    _, pub = keys(tmp_path / "keys")
    zoo = ModelZoo(tmp_path / "dev/cache", manifest_dir=manifest_dir(tmp_path / "dev/manifests"))
    install_base(zoo, model_dir(tmp_path / "v1.0"), "1.0")
    svc = SyncService(*device_settings(1, tmp_path / "dev/outbox.db"))  # no broker: the outbox keeps the events
    svc.outbox.open()
    agent = ModelUpdateAgent(svc.identity, zoo, svc, lambda n, v: True, UpdateOptions(public_key=pub))
    store = agent.store
    shutil.copytree(tmp_path / "v1.0", store.model_dir(MODEL) / "1.1")
    (store.model_dir(MODEL) / "1.1/built.json").write_text("{}")
    store.save_model(MODEL, previous="1.0", rollout="r1", floor="1.1")
    store.point(MODEL, "1.1")
    real = store.note_fleet_rollback

    def slow(a, *, to=None, done=False):
        if not done and to is None:
            time.sleep(1.0)  # the command thread held at its write
        real(a, to=to, done=done)
    monkeypatch.setattr(store, "note_fleet_rollback", slow)
    agent.start()
    try:
        assert agent._rollback(RollbackArgs(name=MODEL, version="1.1", rollout="r1", reason="aborted"))["action"] \
            == "queued"
        assert wait_until(lambda: store.record(MODEL).get("last", {}).get("state") == "ROLLED_BACK", 20)
    finally:
        agent.stop()
        svc.outbox.close()
    assert agent.active(MODEL) == "1.0" and "fleet_rollback" not in store.record(MODEL), store.record(MODEL)
