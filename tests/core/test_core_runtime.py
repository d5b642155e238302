"""`edge run` end to end: demo source → pose → (try-on) → events in the local outbox; local HTTP."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import urllib.request

from edge.app.config import load_config


def outbox_events(path):
    with sqlite3.connect(path) as db:
        return [(stream, json.loads(body)) for stream, body in db.execute("SELECT stream, body FROM reliable")]


def test_edge_run_without_broker_puts_person_events_in_the_outbox(repo, tmp_path):
    """The quick-start path: kiosk config, no broker; people in the demo clips enter and leave."""
    cfg_text = (repo / "device_configs" / "kiosk.toml").read_text()
    cfg_text = cfg_text.replace('broker = ""', f'broker = ""\noutbox_path = "{tmp_path / "outbox.sqlite"}"')
    cfg_text = cfg_text.replace("fps = 30", "fps = 30\nrealtime = false\nloop = false")
    cfg = tmp_path / "kiosk.toml"
    cfg.write_text(cfg_text)
    r = subprocess.run([sys.executable, "-m", "edge.app.cli", "run", "--config", str(cfg), "--no-http"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    events = outbox_events(tmp_path / "outbox.sqlite")
    kinds = [e["kind"] for _, e in events]
    assert kinds.count("person_entered") >= 3  # one per demo clip at least
    assert kinds.count("person_entered") == kinds.count("person_left")  # every visit is closed
    for stream, e in events:
        assert stream == "events"
        assert set(e["data"]) >= {"track_id", "t_wall", "scope"}
        blob = json.dumps(e)
        assert len(blob) < 2000  # small JSON records, never frames


def test_mirror_runtime_serves_health_metrics_and_page(repo, tmp_path, running):
    cfg = load_config(repo / "device_configs" / "tryon-mirror.toml")
    cfg.source.realtime = True
    cfg.sync.outbox_path = str(tmp_path / "outbox.sqlite")
    with running(cfg, frames=20) as (rt, base):
        health = json.load(urllib.request.urlopen(base + "/healthz", timeout=5))
        assert health["status"] == "ok" and health["frames"] >= 20
        assert health["sync"]["connected"] is False  # no broker configured
        metrics = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
        assert "edge_frames_total" in metrics and "edge_tryon_motion_to_photon_seconds" in metrics
        assert "edge_outbox_depth{stream=\"events\"}" in metrics
        page = urllib.request.urlopen(base + "/", timeout=5)
        assert page.geturl().endswith("/mirror/") and b"<html" in page.read().lower()
        state = json.load(urllib.request.urlopen(base + "/mirror/api/state", timeout=5))
        assert state["renderer"] == "ok" and state["frames"] >= 20
        # the shipped mirror has gestures on: the hand models opened and the hands step reports its state
        assert state["gestures_error"] is None and state["gestures"] is not None
        assert state["gestures"]["reason"] in ("running", "over frame budget", "no shopper in the zone")
        with urllib.request.urlopen(base + "/preview.mjpg", timeout=5) as preview:  # composited frames, local only
            assert preview.headers["Content-Type"].startswith("multipart/x-mixed-replace")
            head = preview.read(4096)
            assert b"Content-Type: image/jpeg" in head and b"\xff\xd8" in head


def test_mirror_without_hand_models_runs_by_touch_and_says_why(repo, tmp_path, caplog, running):
    """Gestures are on in the shipped mirror config; a device whose cache lacks the hand models still runs the
    mirror (pose, try-on, page) and names the missing model and the fix, instead of failing to start."""
    from edge.core.paths import cache_dir

    real = cache_dir()
    cache = tmp_path / "cache"
    (cache / "models").mkdir(parents=True)
    for name in ("pose_detection", "pose_landmark_full"):  # the pose models only: no palm / hand landmark models
        (cache / "models" / name).symlink_to(real / "models" / name)
    for entry in ("keys", "backend_choice.json"):
        if (real / entry).exists():
            (cache / entry).symlink_to(real / entry)
    cfg = load_config(repo / "device_configs" / "tryon-mirror.toml")
    assert cfg.tryon.gestures.enabled
    cfg.models.cache_dir = str(cache)
    cfg.sync.outbox_path = str(tmp_path / "outbox.sqlite")
    with running(cfg, frames=10) as (rt, base):
        assert json.load(urllib.request.urlopen(base + "/healthz", timeout=5))["status"] == "ok"
        state = json.load(urllib.request.urlopen(base + "/mirror/api/state", timeout=5))
        assert state["renderer"] == "ok" and state["frames"] >= 10 and state["gestures"] is None
        assert "ModelNotBuilt" in state["gestures_error"] and "palm_detection_lite" in state["gestures_error"]
    assert any("edge models build" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")
