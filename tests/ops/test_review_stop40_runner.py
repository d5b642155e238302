"""Start, stop and scheduling paths of `edge run` (edge/app/runner.py, edge/app/streams.py) found in the stop-40
review: a SIGTERM while the start waits for the run lock is a stop, not a start error; a model that is not built
ends the start with one line and exit status 2, not a traceback; a critical camera that is gone does not keep the
other cameras from batching."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from edge.app.config import parse_config
from edge.core.decisions import read_decisions

REPO = Path(__file__).resolve().parents[2]
EDGE = [sys.executable, "-m", "edge.app.cli"]


def _toml(tmp_path, extra: str = "") -> Path:
    path = tmp_path / "device.toml"
    path.write_text(f"""
[device]
id = "rv-40"
store = "s1"
kind = "kiosk"

[source]
type = "demo"

[http]
enabled = false

[sync]
broker = ""
outbox_path = "{tmp_path / 'data' / 'outbox.sqlite'}"

[decisions]
path = "{tmp_path / 'decisions'}"
{extra}
""")
    return path


def _edge_run(config: Path, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
    return subprocess.Popen([*EDGE, "run", "--config", str(config), *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_sigterm_while_waiting_for_the_run_lock_is_a_stop_not_a_start_error(tmp_path):
    """`systemctl stop` while `edge run` waits for the run lock (an `edge data purge` holds it) ended the process
    with `ERROR cannot start: another process holds ...` and exit status 2, so systemd marked the stopped unit
    failed and the log blamed a second `edge run`. It is a requested stop: exit 0, said as such, nothing opened."""
    from edge.app.data_cli import RunLock, lock_path

    config = _toml(tmp_path, '[pose]\nenabled = false\n')
    cfg = parse_config({"device": {"id": "rv-40", "store": "s1", "kind": "kiosk"},
                        "sync": {"broker": "", "outbox_path": str(tmp_path / "data" / "outbox.sqlite")}})
    purge = RunLock(lock_path(cfg))
    assert purge.acquire()
    try:
        proc = _edge_run(config, "--duration", "60")
        lines = []
        for line in proc.stdout:  # the start is waiting once it says so
            lines.append(line)
            if "waiting up to" in line:
                break
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        out = "".join(lines) + out
    finally:
        purge.release()
    assert proc.returncode == 0, out
    assert "cannot start" not in out and " ERROR " not in out, out
    assert "stop requested while waiting for the run lock" in out, out
    assert not (tmp_path / "data" / "outbox.sqlite").exists()  # nothing was opened


def test_a_model_that_is_not_built_ends_edge_run_with_one_line_and_exit_2(tmp_path):
    """A pose model missing from the cache (setup skipped `edge models build`, a wrong [models] cache_dir) ended
    `edge run` with a 30-line traceback and exit status 1, as a crash does. It is a start error like the others:
    one `cannot start:` line naming the model and the fix, exit status 2, and the graceful stop still recorded."""
    config = _toml(tmp_path, f"""
[models]
cache_dir = "{tmp_path / 'empty-cache'}"

[models.pose_detector]
name = "pose_detection"
backend = "onnxruntime"
precision = "fp32"

[models.pose_landmarks]
name = "pose_landmark_full"
backend = "onnxruntime"
precision = "fp32"
""")
    proc = _edge_run(config, "--max-frames", "3")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, out
    assert "Traceback" not in out, out
    (line,) = [ln for ln in out.splitlines() if "cannot start" in ln]
    assert "ERROR" in line and "pose_detection" in line and "edge models build" in line, line
    (stop,) = [r for r in read_decisions(tmp_path / "decisions", kinds=["service"]) if r["subject"] == "stop"]
    assert stop["data"]["reason"].startswith("start failed: ModelNotBuilt"), stop


def test_a_critical_camera_that_is_gone_does_not_stop_the_other_cameras_batching(tmp_path):
    """An analytics batch must end before the next frame of a critical camera is due. A critical camera whose
    source was unplugged (or ended) keeps its last due time, far in the past: every analytics batch counted as
    running past it, so the other cameras went one frame at a time for as long as it was gone (throughput lost
    on the devices that batch because they need to). A critical frame not expected any more (more than one period
    overdue, as _reserved judges it) no longer bounds the batch; one due soon still does."""
    import numpy as np

    from edge.app.streams import StreamSet
    from edge.core.events import ListSink
    from edge.core.frames import Frame

    cams = [{"id": "mirror", "fps": 10, "critical": True, "source": {"type": "images", "uri": str(tmp_path / "no")}}]
    cams += [{"id": f"a{i}", "fps": 5, "source": {"type": "demo"}} for i in range(3)]
    cfg = parse_config({"device": {"id": "rv-40", "store": "s1", "kind": "shelf-camera"},
                        "models": {"person_detector": {"name": "nanodet_m_416"}},
                        "sync": {"broker": "", "outbox_path": str(tmp_path / "outbox.sqlite")}, "cameras": cams})
    ss = StreamSet.from_config(cfg, lambda f: None, ListSink(), detect_batch=lambda fs: [], max_batch=8)
    mirror, analytics = ss.streams[0], ss.streams[1:]
    assert mirror.critical
    ss.cost.observe(1, 0.040)
    ss.cost.observe(2, 0.060)
    ss.cost.observe(3, 0.080)
    image = np.zeros((480, 640, 3), np.uint8)
    now = time.monotonic()
    for s in analytics:
        s.pending, s.pending_detect = Frame(image, 1, now, time.time(), s.id), True  # 200 ms of slack each

    mirror.next_due = now - 30.0  # its last frame was taken 30 s ago: the camera is gone
    assert [s.id for s in ss._batch(ss._due(now), now)] == ["a0", "a1", "a2"]
    mirror.next_due = now + 0.05  # back: its next frame is due in 50 ms, before a batch of 2 (60 ms) would end
    assert [s.id for s in ss._batch(ss._due(now), now)] == ["a0"]
    mirror.next_due = now - 0.02  # due 20 ms ago (less than its 100 ms period): expected any moment
    assert [s.id for s in ss._batch(ss._due(now), now)] == ["a0"]


def test_a_camera_health_read_while_its_worker_records_frames_never_raises(tmp_path):
    """/healthz and the supervisor's STATUS line read each camera's health (its fps) on their own threads while the
    streams worker appends the time of every processed frame. The fps was computed by iterating that deque in
    Python, so now and then the read raised `RuntimeError: deque mutated during iteration`: a /healthz answered
    500, a STATUS probe failure logged with its traceback. Here a thread records frames as the worker does (real
    Stream of a real config) while health is read for 2 s, with frequent thread switches: no read may raise."""
    import threading

    from edge.app.streams import StreamSet
    from edge.core.events import ListSink

    cfg = parse_config({"device": {"id": "rv-40", "store": "s1", "kind": "shelf-camera"},
                        "models": {"person_detector": {"name": "nanodet_m_416"}},
                        "sync": {"broker": "", "outbox_path": str(tmp_path / "outbox.sqlite")},
                        "cameras": [{"id": "aisle", "fps": 30, "source": {"type": "demo"}}]})
    (stream,) = StreamSet.from_config(cfg, lambda f: None, ListSink()).streams
    done = threading.Event()

    def worker() -> None:  # what StreamSet._finish does per processed frame
        while not done.is_set():
            stream.stats.done_t.append(time.monotonic())
            stream.stats.latency_ms.append(20.0)
            time.sleep(0)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch often: the race shows within the 2 s, not once in hours
    th = threading.Thread(target=worker)
    th.start()
    errors, reads, end = [], 0, time.monotonic() + 2.0
    try:
        while time.monotonic() < end:
            try:
                stream.health()
                reads += 1
            except RuntimeError as e:
                errors.append(str(e))
    finally:
        done.set()
        th.join(5)
        sys.setswitchinterval(interval)
    assert reads > 100 and not errors, f"{len(errors)} of {reads + len(errors)} reads raised: {errors[:1]}"
