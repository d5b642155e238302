"""When frames stop (a hung IP camera), `/healthz` fps and `edge_pipeline_fps` fall to 0 within a second or two,
instead of keeping the last rate seen while frames flowed."""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

from edge.app import runner as R
from edge.app.config import parse_config

from test_ops_service import MjpegCamera
from waiting import wait_until


def _health(port: int) -> dict:
    try:
        return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5).read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())


def _fps_metric(port: int) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    kiosk = 'edge_pipeline_fps{pipeline="kiosk"}'  # other runtimes of this test process keep their own labels
    return float(next(line.split()[-1] for line in text.splitlines() if line.startswith(kiosk)))


def test_fps_falls_to_zero_when_the_camera_hangs(tmp_path):
    cam = MjpegCamera()
    cfg = parse_config({"device": {"id": "k9", "store": "s1", "kind": "kiosk"}, "pose": {"enabled": False},
                        "source": {"type": "rtsp", "uri": cam.url, "fps": 15, "reconnect_s": 0.5},
                        "http": {"port": 0, "host": "127.0.0.1"},
                        "sync": {"broker": "", "outbox_path": str(tmp_path / "outbox.sqlite")},
                        "decisions": {"path": str(tmp_path / "decisions")}})
    rt, stop = R.Runtime(cfg), threading.Event()
    th = threading.Thread(target=rt.run, args=(stop,), daemon=True)
    th.start()
    try:
        assert wait_until(lambda: rt.http is not None and rt.frames > 20, 60), rt.frames
        port = rt.http.port
        assert _health(port)["fps"] > 5 and _fps_metric(port) > 5
        cam.paused.set()
        assert wait_until(lambda: _health(port)["fps"] == 0.0 and _fps_metric(port) == 0.0, 5), \
            (_health(port), _fps_metric(port))
    finally:
        stop.set()
        th.join(30)
        cam.close()
