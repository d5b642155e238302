"""Second look at breakers, the local HTTP server and periodic tasks: an open time that shrank after a failed probe,
a server stopped before it started (the failed-start path hung), idle and slow connections that held a thread for
good, HEAD on the live preview streaming a body, a preview viewer left hanging after the server stopped, and a
periodic task whose period grew by the length of each run."""
from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest

from edge.core.http_server import LocalHttpServer

from test_ops_breaker import DEVICE, Clock
from waiting import wait_until



# ------------------------------------------------------------------------------------------ breaker
def test_open_s_above_max_open_s_is_a_config_error_not_a_shrinking_backoff():
    """With open_s above max_open_s (a per-model `open_s = 600` under the default cap of 300) a failed probe cut
    the open time to the cap, so the "doubled" backoff halved it: probes of a failing model came twice as often.
    Now such a policy is refused, naming the keys, at config check."""
    from pydantic import ValidationError

    from edge.app.config import ConfigError, parse_config
    from edge.core.breaker import OPEN, BreakerPolicy, CircuitBreaker

    with pytest.raises(ValidationError, match="max_open_s"):
        CircuitBreaker("m", "model", BreakerPolicy(max_errors=1, open_s=10, max_open_s=5), clock=Clock())
    with pytest.raises(ConfigError) as e:
        parse_config({**DEVICE, "breaker": {"models": {"pose_landmarks": {"open_s": 600}}}}, "dev.toml")
    assert "dev.toml" in str(e.value) and "breaker.models.pose_landmarks" in str(e.value)
    assert "max_open_s" in str(e.value)
    with pytest.raises(ConfigError, match="max_open_s"):
        parse_config({**DEVICE, "breaker": {"open_s": 30, "max_open_s": 10}}, "dev.toml")
    # equal is fine, and a table that raises the cap with open_s is fine too
    cfg = parse_config({**DEVICE, "breaker": {"models": {"pose_landmarks": {"open_s": 600, "max_open_s": 1200}}}})
    clock = Clock()
    b = CircuitBreaker("m", "model", cfg.breaker.policy("model", "pose_landmarks"), clock=clock)
    for _ in range(3):
        b.record(error="e")
    assert b.state == OPEN and b.last.open_for_s == 600
    clock.t += 600
    b.record(error="still")
    assert b.last.open_for_s == 1200  # doubled, never shorter


# ------------------------------------------------------------------------------------------ local HTTP
def _bound(port: int) -> bool:
    """Whether something still listens on 127.0.0.1:port (a new bind fails)."""
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
        return False
    except OSError:
        return True
    finally:
        s.close()


def test_a_server_stopped_before_it_started_does_not_hang_and_frees_its_port():
    """The runtime creates the server, mounts its pages, then starts it; a start that fails in between (a page's
    routes raising) stops what it made: stop() called socketserver's shutdown(), which waits for a serve_forever
    that never ran, so the graceful stop hung for good (outbox never flushed) with the port still bound."""
    srv = LocalHttpServer("127.0.0.1", 0, lambda: (True, {}))
    port = srv.port
    th = threading.Thread(target=srv.stop, daemon=True)
    th.start()
    th.join(5)
    assert not th.is_alive(), "stop() of a server that never started hangs"
    assert not _bound(port)
    srv.stop()  # twice is harmless


@pytest.fixture
def short_timeout(monkeypatch):
    from edge.core import http_server

    monkeypatch.setattr(http_server, "REQUEST_TIMEOUT_S", 1.0)
    srv = LocalHttpServer("127.0.0.1", 0, lambda: (True, {"ok": True})).start()
    yield srv
    srv.stop()


@pytest.mark.parametrize("sent", [b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
                                  b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"],
                         ids=["silent", "half-a-request", "idle-keep-alive"])
def test_idle_or_slow_connections_are_closed_after_the_request_timeout(short_timeout, sent):
    """The handler had no socket timeout: a client that connects and says nothing, sends half a request
    (slowloris) or keeps an idle keep-alive connection held a thread and a socket for good (one per connection, no
    limit); now the server closes it after REQUEST_TIMEOUT_S of silence."""
    with socket.create_connection(("127.0.0.1", short_timeout.port), timeout=6) as s:
        s.sendall(sent)
        data, t0 = b"", time.monotonic()
        try:
            while chunk := s.recv(65536):
                data += chunk
        except TimeoutError:
            pytest.fail(f"the server kept a silent connection open ({time.monotonic() - t0:.1f} s)")
        assert time.monotonic() - t0 < 4
    if sent.endswith(b"\r\n\r\n"):
        assert data.startswith(b"HTTP/1.1 200") and b'"ok": true' in data  # answered, then closed when idle


def test_head_of_the_preview_is_headers_only():
    """HEAD /preview.mjpg ran the stream: frames were written after the headers of a HEAD answer (which has no body,
    so the client read them as the next response) and the request counted as a viewer, so every frame was encoded
    for nobody until the client left."""
    srv = LocalHttpServer("127.0.0.1", 0, lambda: (True, {})).start()
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            s.sendall(b"HEAD /preview.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
            head = s.recv(4096)
            assert head.startswith(b"HTTP/1.1 200") and b"multipart/x-mixed-replace" in head
            time.sleep(0.3)
            assert srv.preview.viewers == 0
            srv.preview.publish(np.zeros((8, 8, 3), np.uint8))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            rest = b""
            while chunk := s.recv(65536):
                rest += chunk
            assert rest.startswith(b"HTTP/1.1 200") and b"--frame" not in rest  # the next answer, no frames
    finally:
        srv.stop()


def test_preview_viewer_sees_the_end_when_the_server_stops():
    """The MJPEG answer has no length, so it ends when the connection closes; the handler left the connection open
    (HTTP/1.1 keep-alive) after the stream ended, so at a server stop a viewer hung until the socket timeout. Now
    the answer says `Connection: close` and the connection closes when the stream ends."""
    srv = LocalHttpServer("127.0.0.1", 0, lambda: (True, {})).start()
    stopped = False
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=8) as s:
            s.sendall(b"GET /preview.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
            head = s.recv(4096)
            assert head.startswith(b"HTTP/1.1 200") and b"connection: close" in head.lower()
            assert wait_until(lambda: srv.preview.viewers == 1, 5)
            srv.stop()
            stopped = True
            t0 = time.monotonic()
            try:
                while s.recv(65536):
                    pass
            except TimeoutError:
                pytest.fail("the viewer's connection stayed open after the stream ended")
            assert time.monotonic() - t0 < 5
    finally:
        if not stopped:
            srv.stop()


def test_an_ipv6_host_is_served():
    """`[http] host = "::1"` (or "::", every interface) failed the start with "Address family for hostname not
    supported" (the server was IPv4 only), which the runtime reported as a port problem."""
    srv = LocalHttpServer("::1", 0, lambda: (True, {"ok": True})).start()
    try:
        with socket.create_connection(("::1", srv.port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200") and b'"ok": true' in data
    finally:
        srv.stop()


# ------------------------------------------------------------------------------------------ atomic writes
def test_write_atomic_fsyncs_the_folders_it_creates(tmp_path, monkeypatch):
    """write_atomic creates missing folders (a fresh device's alert state, a new facing's reference) and fsynced
    only the file's own folder: the new folders' entries in their parents were not on disk, so a power cut soon
    after could lose the folder and the file with it. Now each folder it creates is fsynced in its parent."""
    from edge.core import files

    synced: list = []
    real = files.fsync_dir
    monkeypatch.setattr(files, "fsync_dir", lambda folder: (synced.append(str(folder)), real(folder)))
    files.write_atomic(tmp_path / "new" / "deeper" / "state.json", b"x")
    assert {str(tmp_path / "new" / "deeper"), str(tmp_path / "new"), str(tmp_path)} <= set(synced)
    synced.clear()
    files.write_atomic(tmp_path / "new" / "deeper" / "state.json", b"y")  # nothing created: the file's folder only
    assert synced == [str(tmp_path / "new" / "deeper")]


# ------------------------------------------------------------------------------------------ periodic tasks
def test_a_periodic_task_keeps_its_period_when_a_run_takes_time():
    """The loop waited interval_s after each run returned, so the period was interval_s + the run's length (a 0.3 s
    run every 0.5 s came every 0.8 s and drifted further at each run); now runs start on a fixed schedule, and a
    run longer than the period skips the missed starts instead of running back to back."""
    from edge.core.periodic import Periodic

    starts: list[float] = []

    class Work(Periodic):
        thread_name, interval_s = "r40-work", 0.5

        def run_once(self):
            starts.append(time.monotonic())
            time.sleep(1.2 if len(starts) == 3 else 0.3)  # the third run overruns two periods

    p = Work().start()
    try:
        assert wait_until(lambda: len(starts) >= 7, 10)
    finally:
        assert p.stop()
    gaps = np.diff(starts)
    assert all(0.4 <= g <= 0.65 for g in gaps[:2]), gaps  # on schedule, not 0.8 s
    assert 1.4 <= gaps[2] <= 1.65, gaps  # the overrun: the next start is the next slot on the schedule
    assert all(0.4 <= g <= 0.65 for g in gaps[3:6]), gaps  # back on a 0.5 s period, no burst of catch-up runs
