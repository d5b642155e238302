"""A frame whose processing raises is skipped, counted and logged; the runtime goes on (kiosk and shelf-camera
devices run pose on the runtime's own thread: before, one backend error there ended `edge run`)."""
from __future__ import annotations

import threading
import tomllib
from pathlib import Path

from edge.app.config import parse_config
from edge.app import runner as R
from edge.core.metrics import FRAME_ERRORS

REPO = Path(__file__).resolve().parents[2]


def test_a_frame_that_raises_is_skipped_not_fatal(tmp_path, monkeypatch, caplog):
    data = tomllib.loads((REPO / "device_configs" / "kiosk.toml").read_text())
    data["sync"] = {"broker": "", "outbox_path": str(tmp_path / "outbox.sqlite")}
    data["decisions"] = {"path": str(tmp_path / "decisions")}
    data["breaker"] = {"model_fallbacks": []}  # no fallback: the error reaches the stage
    data["models"]["pose_landmarks"].update(backend="onnxruntime")
    data["http"] = {"enabled": False}
    data["source"]["realtime"] = False
    cfg = parse_config(data)
    build = R.Runtime._build_pose_stage

    def faulty(self, sink, name):  # the 20th landmark inference fails, as a backend hiccup would
        stage = build(self, sink, name)
        session = stage.pose.sessions[1].primary
        real, n = session.run, [0]

        def run(feeds):
            n[0] += 1
            if n[0] == 20:
                raise RuntimeError("backend hiccup")
            return real(feeds)

        session.run = run
        return stage

    monkeypatch.setattr(R.Runtime, "_build_pose_stage", faulty)
    before = FRAME_ERRORS.labels("RuntimeError")._value.get()
    rt = R.Runtime(cfg, http=False)
    assert rt.run(threading.Event(), max_frames=60) == 0
    assert rt.frames == 60 and rt.frame_errors == 1  # the bad frame skipped, the run went on to 60
    assert FRAME_ERRORS.labels("RuntimeError")._value.get() == before + 1
    _, body = rt.health()
    assert body["frame_errors"] == 1 and body["last_frame_error"] == "RuntimeError: backend hiccup"
    assert any("skipped" in r.getMessage() and r.exc_info for r in caplog.records)


def test_a_busy_http_port_stops_the_start_cleanly_naming_the_key(tmp_path):
    """`edge run` whose [http] port is taken: exit 2 with `http.port` and the fix, after a clean stop (the stop is
    in the decision log), not a traceback from a half-started runtime."""
    import json
    import socket
    import subprocess
    import sys

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    text = (REPO / "device_configs" / "kiosk.toml").read_text()
    text = text.replace("port = 8081", f'port = {port}\nhost = "127.0.0.1"')
    text = text.replace('broker = ""', f'broker = ""\noutbox_path = "{tmp_path / "outbox.sqlite"}"')
    text += f'\n[decisions]\npath = "{tmp_path / "decisions"}"\n'
    cfg = tmp_path / "kiosk.toml"
    cfg.write_text(text)
    try:
        r = subprocess.run([sys.executable, "-m", "edge.app.cli", "run", "--config", str(cfg), "--max-frames", "5"],
                           capture_output=True, text=True, timeout=300, cwd=REPO)
    finally:
        busy.close()
    assert r.returncode == 2, r.stderr[-3000:]
    assert f"http.port: cannot serve on 127.0.0.1:{port}" in r.stderr and "fix:" in r.stderr, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    stops = [json.loads(line) for f in (tmp_path / "decisions").glob("*.jsonl") for line in f.read_text().splitlines()
             if '"stop"' in line]
    assert stops and "start failed" in stops[-1]["reason"], stops
