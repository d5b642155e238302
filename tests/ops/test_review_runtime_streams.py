"""Metrics of the extra cameras (edge/app/streams.py): when a `[[cameras]]` camera stops delivering (a hung IP
camera), its `edge_stream_fps` falls to 0 instead of keeping the last rate seen while frames flowed."""
from __future__ import annotations

import urllib.request

from edge.app.config import parse_config

from test_ops_service import MjpegCamera
from waiting import wait_until


def _stream_fps(port: int, stream: str) -> float | None:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    name = f'edge_stream_fps{{stream="{stream}"}}'
    return next((float(line.split()[-1]) for line in text.splitlines() if line.startswith(name)), None)


def test_extra_camera_fps_metric_falls_to_zero_when_the_camera_hangs(tmp_path, running):
    cam = MjpegCamera()
    cfg = parse_config({"device": {"id": "rv-s1", "store": "s1", "kind": "kiosk"}, "pose": {"enabled": False},
                        "source": {"type": "demo"}, "http": {"port": 0, "host": "127.0.0.1"},
                        "models": {"person_detector": {"name": "nanodet_m_416", "backend": "openvino"}},
                        "people": {"tiles": [1, 1]},
                        "cameras": [{"id": "rv-hung-cam", "fps": 10,
                                     "source": {"type": "rtsp", "uri": cam.url, "fps": 15, "reconnect_s": 0.5}}],
                        "sync": {"broker": "", "outbox_path": str(tmp_path / "outbox.sqlite")},
                        "decisions": {"path": str(tmp_path / "decisions")}})
    try:
        with running(cfg, frames=1, timeout=90) as (rt, _):
            assert wait_until(lambda: rt.streams is not None and rt.streams.streams[0].stats.processed > 20, 90)
            port = rt.http.port
            assert wait_until(lambda: (_stream_fps(port, "rv-hung-cam") or 0) > 2, 10), \
                _stream_fps(port, "rv-hung-cam")
            cam.paused.set()
            assert wait_until(lambda: _stream_fps(port, "rv-hung-cam") == 0.0, 20), _stream_fps(port, "rv-hung-cam")
            assert rt.streams.health()["rv-hung-cam"]["fps"] == 0.0  # /healthz agrees
    finally:
        cam.close()
