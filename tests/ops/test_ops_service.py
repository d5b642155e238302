"""`edge run` as a systemd service (edge/app/service.py, deploy/systemd/): the sd_notify protocol against a real
AF_UNIX datagram socket, watchdog pings only while frames flow, a stalled camera restarted by the watchdog, the RSS
budget's clean exit, and a graceful stop that flushes the outbox into a real Mosquitto and publishes offline.

There is no systemd on the test machine (PID 1 is not systemd; `systemctl --user` finds no bus), so systemd's side
is the test double in systemd_double.py; `systemd-analyze verify` checks the shipped unit where it runs."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from edge.app.service import (EXIT_RSS_BUDGET, Notifier, ServiceConfig, ServiceSupervisor, notify_address,
                              watchdog_interval)
from edge.core.decisions import DecisionLog, DecisionLogConfig, read_decisions
from edge.core import decisions

from ops_util import REPO, StreamFeed, wait_until
from systemd_double import NotifySocket, ServiceManager

PY = sys.executable
UNIT = REPO / "deploy" / "systemd" / "storefront-edge.service"


def list_decisions(folder: Path) -> list[dict]:
    return list(read_decisions(folder))


# ---------------------------------------------------------------------------------------------- protocol
@pytest.mark.parametrize("abstract", [False, True])
def test_notifier_speaks_sd_notify_to_a_path_or_abstract_socket(tmp_path, abstract):
    sock = NotifySocket(tmp_path, abstract=abstract)
    try:
        assert sock.env_value.startswith("@" if abstract else "/")
        n = Notifier.from_env({"NOTIFY_SOCKET": sock.env_value})
        assert n.enabled and n.notify("READY=1", "STATUS=running: two\nlines")
        assert sock.wait_for("READY", "1", 5) is not None
        assert sock.values("STATUS") == ["running: two lines"]  # a newline inside a value never splits it
        assert sock.messages[0][1] == os.getpid()  # sent from this (the main) process
        assert not sock.protocol_errors
        n.close()
    finally:
        sock.close()


def test_notify_environment_parsing():
    assert notify_address("@sd-notify") == "\0sd-notify" and notify_address("/run/systemd/notify") == \
        "/run/systemd/notify"
    assert notify_address("") is None and notify_address("vsock:2:1234") is None
    assert not Notifier.from_env({}).notify("READY=1")  # no socket: a no-op (a terminal, a test)
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0  # half of WatchdogSec
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}) == 1.0
    assert watchdog_interval({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None  # meant for another pid
    assert watchdog_interval({"WATCHDOG_USEC": "x"}) is None and watchdog_interval({}) is None
    bad = Notifier("/nonexistent/dir/notify.sock")
    assert not bad.notify("WATCHDOG=1") and not bad.notify("WATCHDOG=1") and bad.errors == 2  # never raises


def test_supervisor_pings_only_while_every_stream_makes_progress(tmp_path):
    """Two streams; one stops: WATCHDOG=1 stops, STATUS says which, a `service` decision is recorded; it recovers:
    the pings resume."""
    sock = NotifySocket(tmp_path)
    log = DecisionLog.from_config(DecisionLogConfig(), tmp_path / "decisions").open()
    decisions.set_default(log)
    feed = StreamFeed(("main", "cam2"))
    flowing = feed.flowing
    stop = threading.Event()
    sup = ServiceSupervisor(ServiceConfig(stall_s=0.6, status_interval_s=0.2), feed.progress, stop,
                            env={"NOTIFY_SOCKET": sock.env_value, "WATCHDOG_USEC": "400000"}).start()
    try:
        assert sup.ping_s == 0.2
        time.sleep(0.3)
        assert sock.times("WATCHDOG") == []  # no keep-alive before READY (systemd arms the watchdog at READY)
        sup.ready()
        t_ready = sock.wait_for("READY", "1", 5)
        assert t_ready is not None and sup.cold_start_s is not None
        time.sleep(1.0)
        assert len(sock.times("WATCHDOG", "1", since=t_ready)) >= 3  # frames flow: a ping every 0.2 s
        flowing["cam2"] = False
        t_stall = time.monotonic()
        assert wait_until(lambda: "cam2" in sup.stalled, 5)
        time.sleep(1.0)
        pings = sock.times("WATCHDOG", "1", since=t_stall)
        assert pings and max(pings) <= t_stall + 0.6 + 0.3, "pings went on while cam2 was stalled"
        assert any(v.startswith("stalled: cam2") for v in sock.values("STATUS"))
        assert "main" not in sup.stalled and sup.health()["stalled"]["cam2"] > 0.6
        flowing["cam2"] = True
        t_back = time.monotonic()
        assert wait_until(lambda: len(sock.times("WATCHDOG", "1", since=t_back)) >= 2, 5)  # pings resume
        sup.stopping("test")
        assert sock.wait_for("STOPPING", "1", 5) is not None
    finally:
        feed.close()
        sup.close()
        decisions.set_default(None)
        log.close()
        sock.close()
    recs = [r for r in list_decisions(tmp_path / "decisions") if r["kind"] == "service"]
    assert [r["subject"] for r in recs] == ["ready", "stall", "recovered"], recs
    assert "cam2" in recs[1]["data"]["streams"] and "systemd restarts" in recs[1]["reason"]
    assert not sock.protocol_errors


# ---------------------------------------------------------------------------------------------- real runs
def _device_toml(tmp: Path, *, source: str, service: str = "", sync: str = 'broker = ""', kind: str = "kiosk",
                 device: str = "svc-01") -> Path:
    """A device config: pose on OpenVINO FP32 (compiled-model cache in tmp), outbox and decisions in tmp."""
    ov = tmp / "ov-cache"
    text = f"""
[device]
id = "{device}"
store = "s001"
kind = "{kind}"

{source}

[models.pose_detector]
name = "pose_detection"
backend = "openvino"
precision = "fp32"
[models.pose_detector.openvino]
cache_dir = "{ov}"

[models.pose_landmarks]
name = "pose_landmark_full"
backend = "openvino"
precision = "fp32"
[models.pose_landmarks.openvino]
cache_dir = "{ov}"

[pose]
max_people = 1
segmentation = false

[sync]
{sync}
outbox_path = "{tmp / 'data' / 'outbox.sqlite'}"
telemetry_interval_s = 0

[service]
{service}
"""
    path = tmp / "device.toml"
    path.write_text(text)
    return path


def _edge_run(config: Path, *extra: str) -> list[str]:
    return [PY, "-m", "edge.app.cli", "run", "--config", str(config), "--no-http", *extra]


class MjpegCamera:
    """An IP camera serving MJPEG over HTTP (multipart/x-mixed-replace) at 15 FPS; `pause()` keeps its connections
    open but sends nothing (a hung camera), `resume()` sends again."""

    def __init__(self):
        import cv2

        img = np.zeros((480, 640, 3), np.uint8)
        img[::40] = 255
        self.jpeg = cv2.imencode(".jpg", img)[1].tobytes()
        self.paused = threading.Event()
        self.frames = 0
        cam = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                try:
                    while True:
                        if cam.paused.is_set():
                            time.sleep(0.05)
                            continue
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                         % len(cam.jpeg) + cam.jpeg + b"\r\n")
                        cam.frames += 1
                        time.sleep(1 / 15)
                except OSError:
                    pass
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/cam.mjpg"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_watchdog_restarts_a_service_whose_camera_stalls(tmp_path):
    """`edge run` under the systemd double (WatchdogSec=1, Restart=on-failure) on an MJPEG camera: READY after the
    first frame, WATCHDOG=1 while frames flow; the camera hangs (connection open, no data): after stall_s the pings
    stop, the double's watchdog kills it (SIGABRT) and starts it again; the camera is back: READY and pings from the
    new process; systemctl stop: STOPPING=1 and exit 0."""
    cam = MjpegCamera()
    cfg = _device_toml(tmp_path, source=f'[source]\ntype = "rtsp"\nuri = "{cam.url}"\nfps = 15\nreconnect_s = 0.5',
                       service="stall_s = 1.0\nstatus_interval_s = 0.5")
    sock = NotifySocket(tmp_path)
    mgr = ServiceManager(_edge_run(cfg), sock, watchdog_s=1.0, start_timeout_s=120, max_starts=2,
                         cwd=str(REPO)).start()
    try:
        assert wait_until(lambda: mgr.starts and mgr.starts[0].ready is not None, 120), mgr.starts and \
            mgr.starts[0].output[-30:]
        first = mgr.starts[0]
        time.sleep(2.0)
        pings = sock.times("WATCHDOG", "1", pid=first.pid, since=first.ready)
        assert len(pings) >= 3, (pings, first.output[-20:])  # every 0.5 s while frames flow
        cam.paused.set()
        t_pause = time.monotonic()
        assert wait_until(lambda: first.killed_by_watchdog is not None, 30), first.output[-30:]
        last_ping = max(sock.times("WATCHDOG", "1", pid=first.pid))
        # pings stopped once the camera stalled for stall_s (1 s: well before the reader's 4 s RTSP read timeout,
        # after which it knows the source is lost and the pings would go on: a restart cannot fix a camera)
        assert last_ping <= t_pause + 1.0 + 0.6 + 0.5
        assert first.killed_by_watchdog - last_ping >= 1.0  # killed by the watchdog, only after WatchdogSec
        assert any(v.startswith("stalled: main") for v in sock.values("STATUS"))
        cam.paused.clear()
        assert wait_until(lambda: len(mgr.starts) == 2 and mgr.starts[1].ready is not None, 120), \
            mgr.starts[-1].output[-30:]
        second = mgr.starts[1]
        assert first.exit_status == -signal.SIGABRT and second.pid != first.pid
        assert wait_until(lambda: len(sock.times("WATCHDOG", "1", pid=second.pid)) >= 2, 10)
        assert mgr.stop(60) == 0
        assert sock.wait_for("STOPPING", "1", 5, pid=second.pid) is not None
    finally:
        mgr.stop(10)
        cam.close()
        sock.close()
    assert not sock.protocol_errors
    recs = [r for r in list_decisions(tmp_path / "data" / "decisions-svc-01") if r["kind"] == "service"]
    subjects = [r["subject"] for r in recs]
    assert subjects.count("ready") == 2 and "stall" in subjects and subjects[-1] == "stop", subjects
    assert any("no frame for" in r["reason"] for r in recs if r["subject"] == "stall")


def test_rss_budget_exits_cleanly_for_a_restart(tmp_path):
    """A budget below what the process needs: after rss_over_checks checks it logs, records the decision, stops
    gracefully (STOPPING=1) and exits with EXIT_RSS_BUDGET, which Restart=on-failure restarts."""
    cfg = _device_toml(tmp_path, source='[source]\ntype = "demo"',
                       service="rss_budget_mb = 64\nrss_check_s = 0.2\nrss_over_checks = 3")
    sock = NotifySocket(tmp_path)
    mgr = ServiceManager(_edge_run(cfg), sock, watchdog_s=5.0, max_starts=2, cwd=str(REPO)).start()
    try:
        assert wait_until(lambda: len(mgr.starts) == 2 and mgr.starts[1].exit_status is not None, 180), \
            [s.output[-20:] for s in mgr.starts]
    finally:
        mgr.stop(10)
        sock.close()
    for st in mgr.starts:
        assert st.ready is not None and st.exit_status == EXIT_RSS_BUDGET, st.output[-20:]
        assert sock.wait_for("STOPPING", "1", 1, pid=st.pid) is not None
        assert any("over the 64 MB budget" in line for line in st.output)
    recs = [r for r in list_decisions(tmp_path / "data" / "decisions-svc-01") if r["kind"] == "service"]
    rss = [r for r in recs if r["subject"] == "rss_budget"]
    assert len(rss) == 2 and rss[0]["data"]["rss_mb"] > 64 and rss[0]["data"]["exit_status"] == EXIT_RSS_BUDGET
    stops = [r for r in recs if r["subject"] == "stop"]
    assert len(stops) == 2 and stops[0]["data"]["reason"] == "RSS budget"


def test_graceful_stop_flushes_the_outbox_and_publishes_offline(tmp_path):
    """SIGTERM to a kiosk synced to a real Mosquitto: the person still in view leaves at shutdown (person_left is
    emitted during the stop), the outbox is flushed to the cloud consumer, then the retained state says offline
    (reason "stopped"); nothing is left undelivered on the device."""
    from devtools.broker import Broker
    from sync.client import ClientOptions
    from sync.consumer import Consumer

    broker = Broker(tmp_path / "broker").start()
    consumer = Consumer(ClientOptions("127.0.0.1", broker.port, client_id="svc-cloud"), tmp_path / "cloud.sqlite",
                        ack_interval_s=0.05).start()
    cfg = _device_toml(tmp_path, source='[source]\ntype = "demo"',
                       sync=f'broker = "127.0.0.1"\nport = {broker.port}',
                       service="stop_flush_s = 10")
    sock = NotifySocket(tmp_path)
    env = {**os.environ, "NOTIFY_SOCKET": sock.env_value}
    proc = subprocess.Popen(_edge_run(cfg), env=env, cwd=str(REPO), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    db = sqlite3.connect(tmp_path / "cloud.sqlite", timeout=30)
    try:
        assert consumer.client.wait_connected(10)
        assert sock.wait_for("READY", "1", 120, pid=proc.pid) is not None
        assert wait_until(lambda: db.execute("SELECT COUNT(*) FROM events WHERE kind = 'person_entered'")
                          .fetchone()[0] >= 1, 60), "no person_entered reached the cloud"
        assert db.execute("SELECT COUNT(*) FROM events WHERE kind = 'person_left'").fetchone()[0] == 0
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out[-3000:]
        assert sock.wait_for("STOPPING", "1", 1, pid=proc.pid) is not None
        assert wait_until(lambda: db.execute("SELECT COUNT(*) FROM events WHERE kind = 'person_left'")
                          .fetchone()[0] >= 1, 5), "person_left (emitted while stopping) was not flushed"
        state = db.execute("SELECT status, payload FROM states WHERE device = 'svc-01'").fetchone()
        assert state[0] == "offline" and json.loads(state[1]).get("reason") == "stopped", state
    finally:
        if proc.poll() is None:
            proc.kill()
        consumer.stop()
        broker.close()
        sock.close()
    dev = sqlite3.connect(tmp_path / "data" / "outbox.sqlite")
    try:
        assert dev.execute("SELECT COUNT(*) FROM reliable").fetchone()[0] == 0  # everything acked by the cloud
    finally:
        dev.close()
    stop = [r for r in list_decisions(tmp_path / "data" / "decisions-svc-01") if r["subject"] == "stop"][-1]
    assert stop["data"]["reason"] == "SIGTERM" and stop["data"]["undelivered_after"] == 0, stop
    assert "offline state published" in stop["reason"]


# ---------------------------------------------------------------------------------------------- the unit file
def test_shipped_unit_is_a_hardened_notify_service_with_a_watchdog():
    text = UNIT.read_text()
    keys = {}
    for line in text.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            k, v = line.split("=", 1)
            keys.setdefault(k.strip(), []).append(v.strip())
    assert keys["Type"] == ["notify"] and keys["NotifyAccess"] == ["main"]
    assert keys["Restart"] == ["on-failure"] and float(keys["WatchdogSec"][0].rstrip("s")) > 0
    assert keys["ProtectSystem"] == ["strict"] and keys["NoNewPrivileges"] == ["yes"]
    assert "ReadWritePaths" in keys and keys["ExecStart"][0].split()[1:3] == ["run", "--config"]
    assert str(EXIT_RSS_BUDGET) in keys.get("RestartForceExitStatus", [""])[0]
    # the stop timeout covers the graceful stop (flush + offline + update agent)
    assert float(keys["TimeoutStopSec"][0].rstrip("s")) >= ServiceConfig().stop_flush_s + 15
    verify = shutil.which("systemd-analyze")
    if verify is None:
        pytest.skip("systemd-analyze not installed: unit checked by its keys only")
    r = subprocess.run([verify, "verify", "--man=no", str(UNIT)], capture_output=True, text=True, timeout=60)
    problems = [line for line in (r.stdout + r.stderr).splitlines()
                if UNIT.name in line and "Command /opt/storefront-edge" not in line
                and "not executable" not in line and "No such file" not in line]
    assert not problems, r.stdout + r.stderr


def test_coldstart_bench_times_one_start_to_ready(tmp_path):
    """`edge bench coldstart`'s building blocks: the device config rewritten for the bench (every shipped config
    round-trips through its TOML writer) and one start timed to READY=1 with its phases."""
    import tomllib

    from devtools.bench.coldstart import _dump, bench_config, one_start

    for f in (REPO / "device_configs").glob("*.toml"):
        assert tomllib.loads(_dump(tomllib.loads(f.read_text()))) == tomllib.loads(f.read_text()), f
    cfg = bench_config(REPO / "device_configs" / "kiosk.toml", tmp_path, tmp_path / "ov", "openvino", "fp32")
    data = tomllib.loads(cfg.read_text())
    assert data["sync"]["broker"] == "" and data["models"]["pose_landmarks"]["openvino"]["cache_dir"] == \
        str(tmp_path / "ov")
    r = one_start(cfg, 120)
    assert r["exit"] == 0 and 0 < r["imports_s"] < r["ready_s"] and r["cpu_s"] > 0, r
    assert list(r["phases_s"]) == ["interpreter and imports", "sync and decision log", "loading models",
                                   "try-on renderer and cameras", "waiting for the first frame"], r
    assert abs(sum(r["phases_s"].values()) - r["ready_s"]) < 0.01
    assert any((tmp_path / "ov").iterdir())  # the compiled-model cache was filled
