"""`edge doctor`: report contents and exit code, on the real backends, EGL, model cache and a real socket."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import pytest


def doctor(*args, env=None):
    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "edge.app.cli", "doctor", *args], capture_output=True, text=True,
                          env=e, timeout=180)


def _config(tmp_path, broker="", port=1883, tryon=False):
    p = tmp_path / "dev.toml"
    p.write_text(f'[device]\nid = "d1"\nstore = "s1"\nkind = "{"tryon-mirror" if tryon else "kiosk"}"\n'
                 f'[tryon]\nenabled = {"true" if tryon else "false"}\n'
                 f'[sync]\nbroker = "{broker}"\nport = {port}\n')
    return p


def test_doctor_healthy_device(zoo, tmp_path):
    out = tmp_path / "r.json"
    r = doctor("--json", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    rep = json.loads(out.read_text())
    assert rep["ok"] is True and rep["problems"] == []
    for b in ("onnxruntime", "openvino", "tflite"):
        assert rep["backends"][b]["usable"], rep["backends"][b]
    assert rep["backends"]["tflite"]["version"].startswith("ai-edge-litert")
    assert rep["egl"]["ok"] and rep["egl"]["renderer"], rep["egl"]
    built = {(a["name"], a["backend"], a["precision"]): a["status"] for a in rep["models"]["artifacts"]}
    assert built[("pose_landmark_full", "onnxruntime", "fp32")] == "verified"
    assert all(x["status"].startswith("ok") for x in rep["models"]["required"] if x["required"])
    assert rep["broker"] == {"configured": False, "reachable": None,
                             "note": "no broker configured: events stay in the local outbox"}
    assert set(rep["cpu"]["flags"]) >= {"avx2", "avx512f", "avx512_vnni", "avx_vnni"}
    assert "healthy: ready to run" in r.stdout
    assert "no broker configured: events stay in the local outbox" in r.stdout


def test_doctor_broker_reachable_and_unreachable(zoo, tmp_path):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    try:
        r = doctor("--config", str(_config(tmp_path, "127.0.0.1", port)), "--json", "-")
        rep = json.loads(r.stdout)
        assert rep["broker"]["reachable"] is True and r.returncode == 0
    finally:
        srv.close()
    r = doctor("--config", str(_config(tmp_path, "127.0.0.1", port)))  # nothing listens now
    assert r.returncode == 0, r.stdout  # events wait in the outbox: a warning, not a failure
    assert f"warning: broker 127.0.0.1:{port} unreachable" in r.stdout


def test_doctor_empty_cache_is_not_ready(tmp_path):
    r = doctor("--egl-timeout", "60", env={"STOREFRONT_EDGE_CACHE": str(tmp_path / "empty")})
    assert r.returncode == 1
    assert "PROBLEM: model pose_detection has no verified artefact" in r.stdout
    assert "run `edge models build`" in r.stdout and "NOT READY" in r.stdout


@pytest.mark.parametrize("tryon", [False, True])
def test_doctor_egl_failure_matters_only_for_tryon(zoo, tmp_path, tryon):
    # a 1 ms budget makes the EGL probe fail for real (timeout path)
    r = doctor("--config", str(_config(tmp_path, tryon=tryon)), "--egl-timeout", "0.001")
    assert "EGL:         NO  EGL context creation hung" in r.stdout
    if tryon:
        assert r.returncode == 1 and "PROBLEM: EGL:" in r.stdout and "try-on needs it" in r.stdout
    else:
        assert r.returncode == 0 and "warning: EGL:" in r.stdout


def test_doctor_bad_config_is_reported(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('[device]\nid = "d1"\nstore = "s1"\nkind = "kiosk"\nbogus = 1\n')
    r = doctor("--config", str(p), "--egl-timeout", "0.001")
    assert r.returncode == 1 and f"PROBLEM: {p}: device.bogus" in r.stdout
