"""Several cameras in one process: a camera whose file is missing keeps retrying while the others go on; each
extra camera runs its own analytics and alert rules over the shared person detector; /healthz reports per stream;
config errors name the camera key."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from edge.app.config import ConfigError, load_config

CAMERAS = """
[models.person_detector]
name = "nanodet_m_416"
backend = "openvino"   # the backend that batches a fixed-batch model (batch-polymorphic copy)

[people]
tiles = [1, 1]     # one detector run per frame keeps this test short
max_batch = 4      # frames of cameras due together run as one detector call

[[cameras]]
id = "entrance"
fps = 50
motion_gating = true
critical = true
[cameras.source]
type = "video"
uri = "{video}"
loop = false
realtime = false
start_time = "2026-11-29T10:00:00+00:00"
[[cameras.analytics.zones]]
name = "kiosk"
polygon = [[470, 360], [630, 360], [630, 478], [470, 478]]
[[cameras.analytics.kiosk_help]]
name = "kiosk"
zone = "kiosk"
after_s = 30
[[cameras.alerts.rules]]
id = "entrance_kiosk_help"
metric = "help_requested"
key = "kiosk"

[[cameras]]
id = "unplugged"
[cameras.source]
type = "video"
uri = "{missing}"
reconnect_s = 0.5
"""


def get_health(url: str) -> dict:
    """/healthz body; it answers 503 (with the same JSON) while the device is degraded."""
    try:
        return json.loads(urllib.request.urlopen(url, timeout=2).read())
    except urllib.error.HTTPError as e:
        return json.loads(e.read())
    except OSError:
        return {}


def write_config(repo, tmp_path, video, port: int | None = None):
    text = (repo / "device_configs" / "kiosk.toml").read_text()
    text = text.replace('broker = ""', f'broker = ""\noutbox_path = "{tmp_path / "outbox.sqlite"}"')
    text = text.replace("port = 8081", f"port = {port or 0}")
    text += CAMERAS.format(video=video, missing=tmp_path / "nope.avi")
    cfg = tmp_path / "multi.toml"
    cfg.write_text(text)
    return cfg


def test_extra_cameras_run_their_own_alerts_while_a_broken_one_retries(repo, tmp_path, store_video):
    cfg = write_config(repo, tmp_path, store_video, port=18431)
    proc = subprocess.Popen([sys.executable, "-m", "edge.app.cli", "run", "--config", str(cfg), "--duration", "400"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    health = {}
    try:
        deadline = time.monotonic() + 400
        while time.monotonic() < deadline and proc.poll() is None:
            health = get_health("http://127.0.0.1:18431/healthz") or health
            if health.get("streams", {}).get("entrance", {}).get("state") == "ended":
                break
            time.sleep(1.0)
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    streams = health["streams"]
    assert streams["unplugged"]["state"] == "error" and "not found" in streams["unplugged"]["error"]
    assert health["status"] == "degraded"  # a camera is down: the device says so
    assert "entrance (50 FPS, critical), unplugged (5 FPS); batches of up to 4 frames" in err  # [people] max_batch
    ent = streams["entrance"]
    assert ent["critical"] is True and streams["unplugged"]["critical"] is False
    assert ent["processed"] >= 900 and ent["gated"] > 0 and ent["detected"] > 0  # the whole clip, gating on
    with sqlite3.connect(tmp_path / "outbox.sqlite") as db:
        rows = [json.loads(b) for (b,) in db.execute("SELECT body FROM reliable ORDER BY rowid")]
    opened = [r for r in rows if r["kind"] == "alert_opened"]
    assert [o["data"]["rule"] for o in opened] == ["entrance_kiosk_help"], opened
    assert opened[0]["data"]["evidence"]["detail"]["camera"] == "entrance"
    assert 50 <= opened[0]["data"]["opened_t"] <= 65  # media time of the recording, not processing time
    zone_events = [r for r in rows if r["kind"] == "zone_entered" and r["data"]["source"] == "entrance"]
    assert zone_events, "the extra camera's analytics emit events under its camera id"


def test_camera_config_errors_name_the_key(repo, tmp_path, store_video):
    cfg = write_config(repo, tmp_path, store_video)
    text = cfg.read_text().replace('id = "unplugged"', 'id = "entrance"').replace('key = "kiosk"\n\n[[cameras]]',
                                                                                   'key = "kiosks"\n\n[[cameras]]')
    cfg.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    msg = str(e.value)
    assert "cameras.1.id" in msg and "cameras.0.alerts.rules.0.key" in msg
    cfg.write_text(text.replace('[models.person_detector]\nname = "nanodet_m_416"\nbackend = "openvino"', ""))
    with pytest.raises(ConfigError, match=r"\[models.person_detector\] is not set"):
        load_config(cfg)
