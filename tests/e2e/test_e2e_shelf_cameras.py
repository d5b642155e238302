"""Shelf facings on several cameras in one process (`edge run` in a subprocess, recorded clips): each camera judges
its own facings and raises its own facing_empty alerts while a camera whose file is missing keeps retrying;
/healthz reports every stream's state; each camera's planogram defaults to the camera id (alert key, reference
folder)."""
from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time

from shelf_clips import facings_toml, write_clip
from test_e2e_cameras import get_health

DEVICE = """
[device]
id = "shelf-08"
store = "s001"
kind = "shelf-camera"

[source]
type = "video"
uri = "{clip}"
fps = 5
loop = true          # the main camera runs until the test stops it
realtime = true
start_time = "2026-11-29T10:00:00+00:00"

[pose]
enabled = false

[models.person_detector]
name = "nanodet_m_416"

[people]
tiles = [1, 1]       # one detector run per frame keeps this test short

[http]
port = {port}

[sync]
broker = ""
outbox_path = "{outbox}"

{main_facings}
[[alerts.rules]]
id = "a1-empty"
metric = "facing_empty"
key = "A1"

[[alerts.rules]]
id = "aisle-1-moved"
metric = "camera_moved"
key = "aisle-1"

[[cameras]]
id = "aisle-2"
fps = 50
[cameras.source]
type = "video"
uri = "{clip}"
loop = false
realtime = false
start_time = "2026-11-29T10:00:00+00:00"
{aisle2_facings}
[[cameras.alerts.rules]]
id = "a5-empty"
metric = "facing_empty"
key = "A5"
for_s = 1

[[cameras]]
id = "aisle-3"
fps = 50
[cameras.source]
type = "video"
uri = "{clip}"
loop = false
realtime = false
start_time = "2026-11-29T10:00:00+00:00"
{aisle3_facings}
[[cameras.alerts.rules]]
id = "b2-empty"
metric = "facing_empty"
key = "B2"
for_s = 1

[[cameras.alerts.rules]]
id = "aisle-3-moved"
metric = "camera_moved"
key = "aisle-3"      # the planogram's camera defaults to the camera id

[[cameras]]
id = "unplugged"
[cameras.source]
type = "video"
uri = "{missing}"
reconnect_s = 0.5
{unplugged_facings}
[[cameras.alerts.rules]]
id = "c1-empty"
metric = "facing_empty"
key = "C1"
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_shelf_cameras_judge_their_facings_while_a_broken_one_retries(tmp_path):
    clip = write_clip(tmp_path / "shelf.avi", 15.0, {"A5": 3.0, "B2": 4.0})
    port, outbox = free_port(), tmp_path / "outbox.sqlite"
    text = DEVICE.format(clip=clip, port=port, outbox=outbox, missing=tmp_path / "nope.avi",
                         main_facings=facings_toml("analytics", ["A1", "A2"], camera="aisle-1"),
                         aisle2_facings=facings_toml("cameras.analytics", ["A4", "A5"]),
                         aisle3_facings=facings_toml("cameras.analytics", ["B1", "B2"]),
                         unplugged_facings=facings_toml("cameras.analytics", ["C1"]))
    cfg = tmp_path / "shelves.toml"
    cfg.write_text(text)
    env = {**os.environ, "STOREFRONT_EDGE_DATA": str(tmp_path / "data")}
    proc = subprocess.Popen([sys.executable, "-m", "edge.app.cli", "run", "--config", str(cfg), "--duration", "300"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    health = {}
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            health = get_health(f"http://127.0.0.1:{port}/healthz") or health
            streams = health.get("streams", {})
            if all(streams.get(c, {}).get("state") == "ended" for c in ("aisle-2", "aisle-3")):
                break
            time.sleep(1.0)
    finally:
        proc.send_signal(signal.SIGTERM)  # a graceful stop: the outbox is complete
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    streams = health["streams"]
    assert set(streams) == {"aisle-2", "aisle-3", "unplugged"}
    assert streams["unplugged"]["state"] == "error" and "not found" in streams["unplugged"]["error"], streams
    assert streams["unplugged"]["processed"] == 0
    assert health["status"] == "degraded"  # a camera is down: the device says so
    for cam in ("aisle-2", "aisle-3"):  # the others went through their whole clip
        assert streams[cam]["state"] == "ended" and streams[cam]["processed"] >= 70, streams[cam]
    assert health["frames"] > 0 and health["source_error"] is None  # the main camera too

    with sqlite3.connect(outbox) as db:
        rows = [json.loads(b) for (b,) in db.execute("SELECT body FROM reliable ORDER BY rowid")]
    refs = {(r["data"]["camera"], r["data"]["facing"]) for r in rows
            if r["kind"] == "facing_reference" and r["data"]["reason"] == "startup"}
    assert refs == {("aisle-1", "A1"), ("aisle-1", "A2"), ("aisle-2", "A4"), ("aisle-2", "A5"),
                    ("aisle-3", "B1"), ("aisle-3", "B2")}, refs  # nothing from the unplugged camera
    states = [(r["data"]["camera"], r["data"]["facing"], r["data"]["previous"], r["data"]["state"]) for r in rows
              if r["kind"] == "facing_state"]
    assert {s for s in states if s[2] == "unknown"} == {(c, f, "unknown", "full") for c, f in refs}, states
    changes = [s for s in states if s[2] != "unknown"]
    assert sorted(changes) == [("aisle-2", "A5", "full", "empty"), ("aisle-3", "B2", "full", "empty")], states
    opened = {r["data"]["rule"]: r["data"] for r in rows if r["kind"] == "alert_opened"}
    assert set(opened) == {"a5-empty", "b2-empty"}, opened
    assert opened["a5-empty"]["evidence"]["detail"]["camera"] == "aisle-2"
    assert opened["b2-empty"]["evidence"]["detail"]["camera"] == "aisle-3"
    assert 3.0 < opened["a5-empty"]["opened_t"] < 15.0  # media time of the clip, not processing time
    for cam in ("aisle-1", "aisle-2", "aisle-3"):  # each planogram keeps its own reference
        assert (tmp_path / "data" / "shelf" / cam / "reference.png").exists(), cam
    assert not (tmp_path / "data" / "shelf" / "shelf").exists()
