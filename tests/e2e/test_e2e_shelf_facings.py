"""A device whose only analytics are shelf facings runs the shelf stage end to end (recorded clip → facings →
facing_empty alert → outbox), and the retake seams refuse an unknown facing: 404 from the real staff page server,
an error result from the `shelf_reference` command over a real mosquitto."""
from __future__ import annotations

import json
import sqlite3
import threading
import time
import urllib.error
import urllib.request

import pytest

from edge.app.config import load_config
from edge.app.runner import Runtime, main_has_analytics, wants_behaviour
from sync import topics
from sync.client import ClientOptions
from sync.request import Requester

from shelf_clips import facings_toml, write_clip

DEVICE = """
[device]
id = "shelf-07"
store = "s001"
kind = "shelf-camera"

[source]
type = "video"
uri = "{clip}"
fps = 5
loop = false
realtime = true
start_time = "2026-11-29T10:00:00+00:00"

[pose]
enabled = false

[http]
port = 0

[sync]
broker = "127.0.0.1"
port = {port}
outbox_path = "{outbox}"
telemetry_interval_s = 0
reconnect_min_s = 0.1
reconnect_max_s = 0.5

[[alerts.rules]]
id = "a2-empty"
title = "Shelf A2 needs restocking"
metric = "facing_empty"
key = "A2"
for_s = 1
severity = "info"
"""


def post(url: str, body: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def wait_for(cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.2)
    return False


def outbox_rows(path) -> list[dict]:
    with sqlite3.connect(path) as db:
        return [json.loads(b) for (b,) in db.execute("SELECT body FROM reliable ORDER BY rowid")]


@pytest.fixture
def facings_only(tmp_path, broker, monkeypatch):
    """The config (no zones, no pose, no person detector: only [analytics.planogram] facings) and its outbox."""
    monkeypatch.setenv("STOREFRONT_EDGE_DATA", str(tmp_path / "data"))  # shelf references go here
    clip = write_clip(tmp_path / "shelf.avi", 30.0, {"A2": 3.0})  # played in real time
    text = DEVICE.format(clip=clip, port=broker.port, outbox=tmp_path / "outbox.sqlite")
    text += facings_toml("analytics", ["A1", "A2"], camera="aisle-7")
    path = tmp_path / "facings.toml"
    path.write_text(text)
    return load_config(path), tmp_path / "outbox.sqlite"


def test_facings_only_config_runs_the_shelf_stage_and_refuses_unknown_facings(facings_only, broker, tmp_path):
    cfg, outbox = facings_only
    assert main_has_analytics(cfg) and wants_behaviour(cfg)
    rt = Runtime(cfg, http=True)
    stop = threading.Event()
    th = threading.Thread(target=lambda: setattr(rt, "rc", rt.run(stop, duration=60)), daemon=True)
    th.start()
    try:
        assert wait_for(lambda: rt.http is not None and rt.stage is not None and rt.frames > 0, 30), "no frames"
        assert rt.stage.behaviour is not None, "a config with only facings must run the behaviour stage"
        facings = rt.stage.behaviour.analytics.facings
        assert wait_for(lambda: all(f.has_reference for f in facings.values()), 20), "no startup references"
        base = f"http://127.0.0.1:{rt.http.httpd.server_address[1]}"
        # the staff page's Retake reference: unknown facing -> 404 naming the known ones; nothing is retaken
        code, body = post(base + "/api/shelf/reference", {"facing": "Z9", "by": "sam"})
        assert code == 404 and body["error"] == "no facing 'Z9' on this device (facings: A1, A2)", body
        code, body = post(base + "/api/shelf/reference", {"facing": "A1", "by": "sam"})
        assert (code, body) == (200, {"pending": ["A1"]})
        assert wait_for(lambda: facings["A1"].pending_reference is None, 20), "the page's retake was not taken"
        # the same seam over MQTT: an error result for the unknown facing, ok for a known one
        t = topics.DeviceTopics("s001", "shelf-07")
        assert rt.sync.client.wait_connected(10), rt.sync.client.last_error
        with Requester(ClientOptions("127.0.0.1", broker.port), [f"{t.base}/cmd_result/+"]) as r:
            time.sleep(0.3)  # the device's SUBACK for cmd/+
            bad = r.send(t.cmd("shelf_reference"), {"facing": "Z9", "by": "hq"})
            ok = r.send(t.cmd("shelf_reference"), {"facing": "A1", "camera": "aisle-7", "by": "hq"})
            got = r.wait([bad, ok], 15)
        assert got[bad][0]["status"] == "error", got[bad]
        assert got[bad][0]["reason"] == "no facing 'Z9' on this device (facings: A1, A2)"
        assert got[ok][0]["status"] == "ok" and got[ok][0]["result"]["pending"] == ["A1"], got[ok]
        assert wait_for(lambda: facings["A1"].pending_reference is None, 20), "the command's retake was not taken"
        # the emptied facing reaches the alert engine (A2 is empty from 3 s of media time on)
        assert wait_for(lambda: any(a["rule"] == "a2-empty" for a in rt.stage.behaviour.engine.active()), 40), \
            rt.stage.behaviour.live()
        with urllib.request.urlopen(base + "/api/alerts", timeout=10) as resp:
            live = json.loads(resp.read())["live"]
        assert live["facings"]["A2"] == "empty" and live["facings"]["A1"] == "full", live
    finally:
        stop.set()
        th.join(30)
    assert not th.is_alive() and rt.rc == 0
    rows = outbox_rows(outbox)
    refs = [(r["data"]["facing"], r["data"]["reason"], r["data"]["via"]) for r in rows
            if r["kind"] == "facing_reference"]
    assert ("A1", "startup", "") in refs and ("A2", "startup", "") in refs, refs
    assert ("A1", "now", "page") in refs and ("A1", "now", "mqtt") in refs, refs  # both retakes were taken
    assert not any(r["data"]["facing"] == "Z9" for r in rows if r["kind"] == "facing_reference")
    states = [(r["data"]["facing"], r["data"]["state"]) for r in rows if r["kind"] == "facing_state"]
    assert ("A2", "empty") in states and ("A1", "empty") not in states, states
    opened = [r["data"] for r in rows if r["kind"] == "alert_opened"]
    assert [o["rule"] for o in opened] == ["a2-empty"], opened
    assert opened[0]["evidence"]["detail"]["state"] == "empty"
    # no person detector, no pose: nothing masks people, so the references were kept in memory only
    assert not (tmp_path / "data" / "shelf" / "aisle-7" / "reference.png").exists()
