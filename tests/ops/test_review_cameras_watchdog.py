"""The systemd watchdog and the extra cameras (edge/app/service.py, edge/app/streams.py): a camera whose reader knows
it lost its source (unplugged, unreachable: it reconnects) is `source lost`, not a stall, so the pings go on (a
restart cannot bring a camera back, and would cost the other cameras their state); a stream whose reader says it
is fine but delivers nothing for stall_s (a hang) still stops them. Real readers, sources, detector and StreamSet;
systemd's side is the notify-socket double."""
from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from edge.app.config import ModelRef, parse_config
from edge.app.service import ServiceConfig, ServiceSupervisor
from edge.app.streams import StreamSet
from edge.core import decisions
from edge.core.decisions import DecisionLog, DecisionLogConfig, read_decisions
from edge.core.events import ListSink

from systemd_double import NotifySocket
from waiting import wait_until

STALL_S = 0.6


@pytest.fixture(scope="module")
def people():
    from edge.people import open_detector
    from models.zoo import ModelZoo

    det = open_detector(ModelZoo(), ModelRef(name="nanodet_m_416", backend="openvino"), tiles=(1, 1), threshold=0.3)
    yield det
    det.session.close()


def _images(folder, n: int = 2):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((240, 320, 3), 60 * i, np.uint8))
    return folder


def _camera(cam_id: str, folder, fps: float) -> dict:
    """An extra camera on an image folder played in real time at `fps` (a missing folder: the source is lost)."""
    return {"id": cam_id, "fps": 5, "source": {"type": "images", "uri": str(folder), "fps": fps, "realtime": True,
                                               "width": 320, "height": 240, "reconnect_s": 0.2}}


def _run(tmp_path, people, cameras: list[dict]):
    """The cameras' StreamSet, started, and a supervisor watching it (READY sent once every camera with a source
    processed a frame); the caller stops both."""
    cfg = parse_config({"device": {"id": "rv-wd", "store": "s1", "kind": "shelf-camera"},
                        "models": {"person_detector": {"name": "nanodet_m_416"}}, "cameras": cameras}, "<test>")
    ss = StreamSet.from_config(cfg, people.frame_detections, ListSink()).start()
    sock = NotifySocket(tmp_path)
    sup = ServiceSupervisor(ServiceConfig(stall_s=STALL_S), ss.progress, threading.Event(), lost=ss.lost,
                            env={"NOTIFY_SOCKET": sock.env_value, "WATCHDOG_USEC": "200000"}).start()
    assert wait_until(lambda: all(s.stats.processed or s.reader.error for s in ss.streams), 60), ss.health()
    sup.ready()
    return ss, sup, sock


def _source_up(stream: str) -> float | None:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("edge_source_up", {"source": stream})


@pytest.fixture
def dlog(tmp_path):
    log = DecisionLog.from_config(DecisionLogConfig(), tmp_path / "decisions").open()
    decisions.set_default(log)
    yield log
    decisions.set_default(None)
    log.close()


def _service_records(dlog, tmp_path) -> list[dict]:
    dlog.flush()
    return list(read_decisions(tmp_path / "decisions", kinds=["service"]))


def test_an_unplugged_camera_is_source_lost_and_the_pings_go_on(tmp_path, people, dlog):
    """One camera's folder is missing (its reader retries): no stall, pings for longer than stall_s, /healthz and
    metrics say source lost, one decision; the folder appears: frames again, one decision that it ended."""
    missing = tmp_path / "unplugged"
    ss, sup, sock = _run(tmp_path, people, [_camera("up", _images(tmp_path / "up"), 4),
                                            _camera("unplugged", missing, 4)])
    try:
        assert wait_until(lambda: "unplugged" in sup.lost, 10), sup.health()
        t_lost = time.monotonic()
        # pings go on well past stall_s after the loss (before: the camera counted as stalled and they stopped)
        assert wait_until(lambda: sock.times("WATCHDOG", "1", since=t_lost + 3 * STALL_S), 15), sup.health()
        assert sup.stalled == {} and "not found" in sup.health()["source_lost"]["unplugged"]["error"]
        assert ss.health()["unplugged"]["state"] == "error"  # /healthz: degraded (edge/app/runner.py)
        assert wait_until(lambda: _source_up("unplugged") == 0.0 and _source_up("up") == 1.0, 10)
        _images(missing)  # plugged in again
        assert wait_until(lambda: not sup.lost and ss.streams[1].stats.processed > 0, 15), sup.health()
        assert wait_until(lambda: _source_up("unplugged") == 1.0, 10)
        assert sup.stalled == {}
    finally:
        sup.close()
        ss.stop()
        sock.close()
    recs = [r for r in _service_records(dlog, tmp_path) if r["subject"] != "ready"]
    assert [r["subject"] for r in recs] == ["source_lost", "source_back"], recs
    assert "not found" in recs[0]["data"]["streams"]["unplugged"] and "not a stall" in recs[0]["reason"]
    assert recs[1]["data"]["then"] == {"unplugged": "frames"}
    assert not sock.protocol_errors


def test_a_hung_camera_still_stops_the_pings_while_another_is_source_lost(tmp_path, people, dlog):
    """A camera whose reader reports no error but delivers nothing for stall_s (a slide show paced 50 s apart: a
    hang as the supervisor sees it) is a stall: the pings stop; the lost one is reported apart, never as stalled."""
    ss, sup, sock = _run(tmp_path, people, [_camera("up", _images(tmp_path / "up"), 4),
                                            _camera("hung", _images(tmp_path / "hung"), 0.02),
                                            _camera("unplugged", tmp_path / "missing", 4)])
    try:
        assert wait_until(lambda: "hung" in sup.stalled, 10), sup.health()
        t_stall = time.monotonic()
        time.sleep(3 * STALL_S)
        assert sock.times("WATCHDOG", "1", since=t_stall) == []  # no ping while it stalls
        assert set(sup.stalled) == {"hung"} and set(sup.lost) == {"unplugged"}
    finally:
        sup.close()
        ss.stop()
        sock.close()
    subjects = [r["subject"] for r in _service_records(dlog, tmp_path)]
    assert subjects.count("stall") == 1 and subjects.count("source_lost") == 1 and "recovered" not in subjects


def test_a_reconnected_source_that_delivers_nothing_becomes_a_stall(tmp_path, dlog):
    """The reader's error clears (it reopened its source) but no frame follows: source lost until stall_s after the
    reconnect, then a stall (the driver hangs after the reopen), and the pings stop."""
    sock = NotifySocket(tmp_path)
    last = {"main": time.monotonic(), "cam2": time.monotonic()}
    errors = {"cam2": "cannot open rtsp 'rtsp://cam2/' (unreachable)"}
    done = threading.Event()

    def main_frames():
        while not done.is_set():
            last["main"] = time.monotonic()
            time.sleep(0.02)
    threading.Thread(target=main_frames, daemon=True).start()
    sup = ServiceSupervisor(ServiceConfig(stall_s=STALL_S), lambda: dict(last), threading.Event(),
                            lost=lambda: dict(errors), env={"NOTIFY_SOCKET": sock.env_value,
                                                            "WATCHDOG_USEC": "200000"}).start()
    try:
        sup.ready()
        assert wait_until(lambda: "cam2" in sup.lost, 5)
        t_lost = time.monotonic()
        assert wait_until(lambda: sock.times("WATCHDOG", "1", since=t_lost + 2 * STALL_S), 10)
        errors.clear()  # reconnected
        assert wait_until(lambda: "cam2" in sup.stalled, 10), sup.health()
        t_stall = time.monotonic()
        assert not sup.lost
        time.sleep(3 * STALL_S)
        assert sock.times("WATCHDOG", "1", since=t_stall) == []
    finally:
        done.set()
        sup.close()
        sock.close()
    recs = [r for r in _service_records(dlog, tmp_path) if r["subject"] != "ready"]
    assert [r["subject"] for r in recs] == ["source_lost", "source_back", "stall"], recs
    assert recs[1]["data"]["then"] == {"cam2": "stalled"}


def test_edge_run_reports_an_unplugged_extra_camera_as_source_lost(tmp_path, running):
    """The real Runtime wires its readers into the supervisor: an extra camera whose image folder is missing is
    `source lost` in /healthz's service block while the main camera runs, and no stream counts as stalled."""
    import json
    import urllib.request

    cfg = parse_config({"device": {"id": "rv-rt", "store": "s1", "kind": "shelf-camera"},
                        "source": {"type": "demo", "fps": 10},
                        "pose": {"enabled": False},
                        "models": {"person_detector": {"name": "nanodet_m_416", "backend": "openvino"}},
                        "sync": {"outbox_path": str(tmp_path / "outbox.sqlite")},
                        "service": {"stall_s": 1.0},
                        "cameras": [_camera("unplugged", tmp_path / "missing", fps=5)]}, "<test>")
    with running(cfg, frames=5) as (rt, base):
        assert wait_until(lambda: "unplugged" in rt.service.lost and rt.frames > 20, 60), rt.service.lost
        assert rt.service.stalled == {}  # a restart would not bring the camera back: not a stall
        body = json.loads(urllib.request.urlopen(f"{base}/healthz", timeout=5).read())
        assert "unplugged" in body["service"]["source_lost"], body
