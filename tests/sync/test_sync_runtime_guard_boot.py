"""The runtime's boot guard (edge.app.runner.Runtime._guard_boot): a landmark model update that was swapped in and
killed the process on MAX_CHECK_ATTEMPTS starts (its health check never finished) is pointed back to the previous
version before the real kiosk runtime loads any model, and the update agent then reports it ROLLED_BACK."""
from __future__ import annotations

import json
import logging
import os
import shutil
import threading

from models.zoo import ModelZoo
from sync.update_installer import MAX_CHECK_ATTEMPTS, ModelStore
from sync.update_job import ACTIVATING, Job

from sync_helpers import wait_until
from test_sync_shadow import MODEL, _device_cache, kiosk_with_updates

BAD = "0.10.21-r9"


def crash_looped_cache(tmp_path):
    """A private cache whose `current` landmark version is BAD: swapped in by an update job (ACTIVATING, never
    health-checked) that already died on MAX_CHECK_ATTEMPTS starts. BAD's model files are garbage, so loading it
    fails (ModelCorrupt): only a guard that runs before the models load keeps the device up."""
    cache = _device_cache(tmp_path)
    mdir = cache / "models" / MODEL
    prev = next(p.name for p in mdir.iterdir())
    bad = mdir / BAD
    bad.mkdir()
    for f in (mdir / prev).iterdir():
        if f.name == "built.json":
            shutil.copy2(f, bad / f.name)
        else:
            (bad / f.name).write_bytes(b"\x00garbage" * 64)
    os.symlink(BAD, mdir / "current")
    stage = cache / "updates" / MODEL / BAD
    stage.mkdir(parents=True)
    (stage / "job.json").write_text(json.dumps(Job(MODEL, BAD, "r-crash", state=ACTIVATING).to_dict()))
    (stage / "checks.json").write_text(json.dumps({"starts": [f"start{i}" for i in range(MAX_CHECK_ATTEMPTS)]}))
    (cache / "updates" / "agent.json").write_text(json.dumps(
        {"models": {MODEL: {"previous": prev, "installed": [BAD]}}, "pending": {}, "seq": 0}))
    return cache, prev


def test_runtime_points_a_crash_looping_update_back_before_loading_it(repo, tmp_path, broker, caplog):
    from edge.app.runner import Runtime

    cache, prev = crash_looped_cache(tmp_path)
    cfg = kiosk_with_updates(repo, tmp_path, broker.port, cache)
    rt = Runtime(cfg, http=False)
    stop = threading.Event()
    result: list = []
    th = threading.Thread(target=lambda: result.append(rt.run(stop, duration=120)))
    with caplog.at_level(logging.INFO):
        th.start()
        try:
            assert wait_until(lambda: rt.frames >= 5 or not th.is_alive(), 90), "no frames"
            assert rt.frames >= 5, (result, rt.stop_reason)  # the device runs: the broken version was never loaded
            assert prev in rt.stage.pose.sessions[1].info.path
            store = ModelStore(ModelZoo(cache))
            assert wait_until(lambda: ModelStore(ModelZoo(cache)).record(MODEL).get("last", {}).get("state")
                              == "ROLLED_BACK", 60), store.record(MODEL)
        finally:
            stop.set()
            th.join(timeout=60)
    assert not th.is_alive()
    assert os.readlink(cache / "models" / MODEL / "current") == prev
    rec = ModelStore(ModelZoo(cache)).record(MODEL)
    assert f"{MAX_CHECK_ATTEMPTS} starts" in rec["last"]["reason"], rec
    assert not (cache / "models" / MODEL / BAD).exists()  # the rolled-back version is removed
    assert "back on its previous version (the update crashed the runtime on every start)" in caplog.text
