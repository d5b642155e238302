"""Start and stop paths of the runtime (edge/app/runner.py, edge/app/streams.py): a start that fails after the extra
cameras were built still stops cleanly and reports the start error; a stop requested while starting ends the start
before the next phase."""
from __future__ import annotations

import logging
import socket
import threading

import pytest

from edge.app.config import parse_config
from edge.app.runner import Runtime, StartError
from edge.core import decisions
from edge.core.decisions import read_decisions

RUNTIME_THREADS = {"service", "decision-log", "decision-summary", "privacy-retention", "streams"}


def _cfg(tmp_path, **extra) -> dict:
    return {"device": {"id": "rv-01", "store": "s1", "kind": "kiosk"}, "source": {"type": "demo"},
            "sync": {"broker": "", "outbox_path": str(tmp_path / "outbox.sqlite")},
            "decisions": {"path": str(tmp_path / "decisions")}, **extra}


def _stop_record(tmp_path) -> dict:
    (rec,) = [r for r in read_decisions(tmp_path / "decisions", kinds=["service"]) if r["subject"] == "stop"]
    return rec


def test_start_failing_after_the_cameras_were_built_stops_cleanly(tmp_path, caplog):
    """[[cameras]] and an HTTP port in use: the StartError reaches the caller (`edge run` exits 2 with the fix in
    the message) and the graceful stop runs to its end without a failed step: stop decision recorded, decision
    log closed, no thread of the run left."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    try:
        cfg = parse_config(_cfg(
            tmp_path, pose={"enabled": False}, http={"host": "127.0.0.1", "port": busy.getsockname()[1]},
            models={"person_detector": {"name": "nanodet_m_416", "backend": "openvino"}}, people={"tiles": [1, 1]},
            cameras=[{"id": "aisle", "source": {"type": "demo"}}]))
        rt = Runtime(cfg)
        with pytest.raises(StartError, match="http.port"):
            rt.run(threading.Event(), duration=30)
    finally:
        busy.close()
    assert rt.streams is not None  # the cameras were built before the HTTP server failed
    assert decisions.get_default() is None  # the decision log was closed
    assert _stop_record(tmp_path)["data"]["reason"].startswith("start failed: StartError")
    assert not RUNTIME_THREADS & {t.name for t in threading.enumerate() if t.is_alive()}
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name == "edge.app.runner"]


def test_stop_requested_while_starting_skips_the_remaining_phases(tmp_path):
    """A stop (SIGTERM) that arrives while the runtime starts ends the start at the next phase: the pose models
    are not loaded, the HTTP server and the camera never start, and the graceful stop is recorded."""
    cfg = parse_config(_cfg(tmp_path, http={"host": "127.0.0.1", "port": 0},
                            models={"pose_detector": {"name": "pose_detection", "backend": "openvino",
                                                      "precision": "fp32"},
                                    "pose_landmarks": {"name": "pose_landmark_full", "backend": "openvino",
                                                       "precision": "fp32"}}))
    rt = Runtime(cfg)
    stop = threading.Event()
    stop.set()
    rt.stop_reason = "SIGTERM"  # what `edge run`'s signal handler sets with the event
    assert rt.run(stop) == 0
    assert rt.stage is None and rt.http is None and rt.reader is None and rt.frames == 0
    assert not list(read_decisions(tmp_path / "decisions", kinds=["model_selected"]))
    assert _stop_record(tmp_path)["data"]["reason"] == "SIGTERM"
    assert decisions.get_default() is None


def test_the_run_lock_is_waited_for_then_a_second_holder_is_refused(tmp_path, monkeypatch):
    """`edge run` takes the device's run lock before it opens the outbox. A holder that lets go within
    RUN_LOCK_WAIT_S (an `edge data purge`) is waited for; one that keeps it (a second `edge run` on the same data)
    stops the start with a StartError naming its pid, the lock file and the fix (before, the run only warned and
    wrote beside the other process)."""
    import os
    import time

    from edge.app import runner
    from edge.app.data_cli import RunLock, lock_path

    cfg = parse_config(_cfg(tmp_path, pose={"enabled": False}))
    other = RunLock(lock_path(cfg))
    assert other.acquire()
    monkeypatch.setattr(runner, "RUN_LOCK_WAIT_S", 1.0)
    t0 = time.monotonic()
    with pytest.raises(StartError, match=rf"pid {os.getpid()}.*outbox_path"):
        Runtime(cfg, http=False).run(threading.Event(), max_frames=3)
    assert time.monotonic() - t0 >= 1.0
    assert not (tmp_path / "outbox.sqlite").exists()  # refused before the outbox was opened

    monkeypatch.setattr(runner, "RUN_LOCK_WAIT_S", 30.0)
    threading.Timer(1.0, other.release).start()  # the purge ends
    rt = Runtime(cfg, http=False)
    assert rt.run(threading.Event(), max_frames=3) == 0 and rt.frames >= 3
    again = RunLock(lock_path(cfg))  # released at the stop
    assert again.acquire()
    again.release()


@pytest.mark.parametrize("broken", ["outbox_is_a_folder", "missing_ca_file", "empty_password_file"])
def test_a_sync_that_cannot_start_is_a_start_error_naming_the_keys(tmp_path, broken):
    """An outbox path that is a folder, or a TLS CA file that is not there, used to end `edge run` with a
    traceback; it is a StartError (exit 2, one line) naming the [sync] keys and `edge doctor`, and nothing of the
    run is left: no thread, the run lock free."""
    from edge.app.data_cli import RunLock, lock_path

    sync = {"broker": "", "outbox_path": str(tmp_path / "outbox.sqlite")}
    if broken == "outbox_is_a_folder":
        (tmp_path / "outbox.sqlite").mkdir()
    elif broken == "missing_ca_file":
        sync.update(broker="127.0.0.1", port=1, tls=True, ca_file=str(tmp_path / "nope" / "ca.crt"))
    else:
        (tmp_path / "password").write_text("\n")
        sync.update(broker="127.0.0.1", port=1, username="u", password_file=str(tmp_path / "password"))
    cfg = parse_config({**_cfg(tmp_path, pose={"enabled": False}), "sync": sync})
    with pytest.raises(StartError, match=r"cannot start sync: .*\[sync\] outbox_path, ca_file.*edge doctor"):
        Runtime(cfg, http=False).run(threading.Event(), max_frames=3)
    assert not RUNTIME_THREADS & {t.name for t in threading.enumerate() if t.is_alive()}
    lock = RunLock(lock_path(cfg))
    assert lock.acquire()
    lock.release()
