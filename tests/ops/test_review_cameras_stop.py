"""Stopping the extra cameras (edge/app/streams.py StreamSet.stop) with several hung IP cameras: every reader is
asked to stop before any is waited for, so hung cameras do not add up their join times (systemd's
TimeoutStopSec must still cover the outbox flush), and every reader thread is joined."""
from __future__ import annotations

import contextlib
import socket
import threading

from edge.app.config import parse_config
from edge.app.streams import StreamSet
from edge.core.events import ListSink

from waiting import wait_until

N = 4


def _no_frames(frame):
    raise AssertionError("a silent camera delivered a frame")


def test_stop_asks_every_hung_camera_before_waiting_for_any(tmp_path):
    """N RTSP cameras that accept the connection and say nothing: each reader blocks in the driver's open (it
    ignores the stop request until the connection ends). stop() has asked all of them while all are still blocked;
    the test then ends the connections (and refuses new ones), and stop() returns with every reader joined."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(N)
    held = []  # accepted connections, kept open and silent

    def accept():
        with contextlib.suppress(OSError):  # closed at the end of the test
            for _ in range(N):
                held.append(srv.accept()[0])
    threading.Thread(target=accept, daemon=True).start()
    port = srv.getsockname()[1]
    cfg = parse_config({"device": {"id": "rv-stop", "store": "s1", "kind": "shelf-camera"},
                        "models": {"person_detector": {"name": "nanodet_m_416"}},
                        "cameras": [{"id": f"hung{i}", "source": {"type": "rtsp", "reconnect_s": 60,
                                                                  "uri": f"rtsp://127.0.0.1:{port}/c{i}"}}
                                    for i in range(N)]}, "<test>")
    ss = StreamSet.from_config(cfg, _no_frames, ListSink()).start()
    readers = [s.reader for s in ss.streams]
    stopper = threading.Thread(target=ss.stop, daemon=True)
    try:
        # a reader is inside the driver's open; the others wait for it (OpenCV opens FFmpeg streams one at a time)
        assert wait_until(lambda: held, 10)
        stopper.start()
        assert wait_until(lambda: all(r._stop.is_set() for r in readers), 30)
        blocked = [r._thread.is_alive() for r in readers]  # when the last one was asked
        assert blocked == [True] * N, blocked  # sequential stops: a reader is asked only after the previous ended
    finally:
        for conn in held:
            conn.close()  # the cameras hang up: each blocked open fails at once
        srv.close()
        if stopper.ident is None:
            ss.stop()
        else:
            stopper.join(30)
    assert not stopper.is_alive()
    assert [r._thread.is_alive() for r in readers] == [False] * N  # all joined within stop()
