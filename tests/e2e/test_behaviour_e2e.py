"""End to end with the real CLI: `edge run` of device_configs/shelf-camera.toml and kiosk.toml, adapted to a
recorded clip of the scripted store scene (devtools/scenario.py) and a real mosquitto, into the reference cloud
consumer (sync/consumer.py). The consumer stores the expected staff alerts and events; every stored record, every
raw MQTT batch and every state message matches its JSON Schema (docs/schemas) and carries no image data.

tests/e2e/test_e2e_alerts.py runs kiosk.toml on the whole scene and checks when its alert opens and resolves; here the
kiosk's alert is acknowledged from the cloud (`ack_alert` over MQTT) while the clip plays, so the cloud sees the
whole lifecycle, and the shelf camera raises its queue alert from the person detector."""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import cv2

from edge.app.config import EdgeConfig
from payload_schemas import Tap, check_events, stored_records
from sync.client import ClientOptions
from sync.consumer import Consumer

START = "2026-11-29T10:00:00+00:00"


def cut(video: Path, out: Path, t0: float, t1: float, step: int = 1) -> Path:
    """Media t0..t1 s of `video` as a new MJPG AVI, every `step`-th frame (its frame rate divided by step, so media
    time stays the scene's). The clip's own media time starts at 0."""
    cap = cv2.VideoCapture(str(video))
    fps = cap.get(cv2.CAP_PROP_FPS)
    vw = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps / step, (640, 480))
    try:
        i = 0
        while True:
            ok, img = cap.read()
            if not ok or i >= t1 * fps:
                break
            if i >= t0 * fps and (i - round(t0 * fps)) % step == 0:
                vw.write(img)
            i += 1
    finally:
        cap.release()
        vw.release()
    return out


def replace(text: str, old: str, new: str) -> str:
    assert old in text, f"the device config no longer has {old!r}: update this test's adaptation"
    return text.replace(old, new, 1)


def device_config(repo: Path, tmp_path: Path, name: str, clip: Path, port: int, *, realtime: bool) -> Path:
    """The device config on the clip and the test broker (outbox, shelf references and telemetry in tmp_path)."""
    text = (repo / "device_configs" / name).read_text()
    text = replace(text, 'type = "demo"', f'type = "video"\nuri = "{clip}"\nloop = false\n'
                   f'realtime = {str(realtime).lower()}\nstart_time = "{START}"')
    text = replace(text, 'broker = ""', f'broker = "127.0.0.1"\nport = {port}\n'
                   f'outbox_path = "{tmp_path / "outbox.sqlite"}"\ntelemetry_interval_s = 2\n'
                   'reconnect_min_s = 0.1\nreconnect_max_s = 0.5')
    if "breaker" in EdgeConfig.model_fields:  # circuit breakers (edge/core/breaker.py)
        assert "[breaker]" not in text
        # the analytics breaker judges latency from capture; a recorded clip read as fast as two shared cores allow
        # queues frames, which is no staleness: it must not hold the alert rules under test
        text += "\n[breaker]\nhold_alerts = false\n"
    path = tmp_path / name
    path.write_text(text)
    return path


def start_device(cfg: Path, tmp_path: Path) -> subprocess.Popen:
    log = open(tmp_path / "device.log", "w")  # noqa: SIM115 - closed with the process below
    return subprocess.Popen([sys.executable, "-m", "edge.app.cli", "run", "--config", str(cfg), "--no-http"],
                            stdout=log, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, tmp_path: Path, timeout: float) -> str:
    try:
        proc.wait(timeout)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)
    out = (tmp_path / "device.log").read_text()
    assert proc.returncode == 0, out[-4000:]
    return out


def consumer(port: int, db: Path) -> Consumer:
    c = Consumer(ClientOptions("127.0.0.1", port, client_id="cloud", reconnect_min_s=0.1, reconnect_max_s=0.5), db,
                 ack_interval_s=0.05).start()
    assert c.client.wait_connected(5), c.client.last_error
    return c


def wait_for(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return bool(pred())


def lifecycles(records: list[dict]) -> dict[str, list[str]]:
    """Rule -> its alert's transitions, in the order the cloud stored them."""
    out: dict[str, list[str]] = {}
    for r in records:
        if r["stream"] == "alerts":
            out.setdefault(r["data"]["rule"], []).append(r["data"]["transition"])
    return out


def test_shelf_camera_queue_alert_and_events_reach_the_cloud_schema_valid(repo, tmp_path, store_video, broker):
    """shelf-camera.toml on 48 s of the scene (media 20-68 s, at 5 FPS): four shoppers queue at checkout from
    ~36 s until the second is served at ~56 s. The config's comment says how to see far, small people: the NanoDet
    person detector with its tracker scores; that is the only change besides the source, the broker, shelf
    references kept in memory and (see device_config) the breaker not holding the rules. The queue
    rule (>= 4 for 8 s, clears below 3 after 3 s) opens once and resolves by itself; the cloud has the alert with its
    evidence, the zone / queue / presence / heatmap events, and telemetry."""
    clip = cut(store_video, tmp_path / "checkout.avi", 20.0, 68.0, step=2)
    cfg = device_config(repo, tmp_path, "shelf-camera.toml", clip, broker.port, realtime=False)
    text = cfg.read_text()
    text = replace(text, "[pose]", '[models.person_detector]\nname = "nanodet_m_416"\n\n[pose]')
    text = replace(text, "min_hits = 3 ", "high_score = 0.4\nlow_score = 0.3\nnew_track_score = 0.4\nmin_hits = 3 ")
    if "[analytics.planogram]" in text:  # shelf references in memory only (not in the user's data folder)
        text = replace(text, "[analytics.planogram]\n", '[analytics.planogram]\nreference_dir = ""\n')
    cfg.write_text(text)
    db = tmp_path / "cloud.sqlite"
    with Tap(broker.port) as tap:
        c = consumer(broker.port, db)
        try:
            finish(start_device(cfg, tmp_path), tmp_path, 300)
            assert wait_for(lambda: "occupancy_heatmap" in {r["kind"] for r in stored_records(db)}, 20)  # the last
        finally:
            c.stop()
    records = stored_records(db)
    assert check_events(records) == len(records)
    alerts = lifecycles(records)
    assert alerts.get("queue_long") == ["opened", "resolved"], alerts
    assert set(alerts) <= {"queue_long", "loiter_window"}, alerts  # the far loiterer's track may break under people
    opened = next(r["data"] for r in records if r["kind"] == "alert_opened" and r["data"]["rule"] == "queue_long")
    assert opened["value"] >= 4 and len(opened["evidence"]["track_ids"]) >= 4, opened
    assert 20.0 <= opened["opened_t"] <= 30.0, opened["opened_t"]  # media time of the clip (scene 40-50 s)
    assert any("nanodet" in m for m in opened["evidence"]["models"]), opened["evidence"]
    assert opened["evidence"]["queue"] == "checkout"
    kinds = {r["kind"] for r in records}
    assert {"zone_entered", "zone_left", "queue_changed", "person_entered", "person_left",
            "occupancy_heatmap"} <= kinds, kinds
    n = tap.check()
    assert "telemetry" in tap.channels() and n["records"] >= len(records) and n["states"] >= 2, n


def test_kiosk_help_alert_acknowledged_from_the_cloud_schema_valid(repo, tmp_path, store_video, broker):
    """kiosk.toml on 60 s of the scene (media 26-86 s, 10 FPS, played in real time): a shopper waits 45 s at the
    kiosk and leaves at about 74 s (the kiosk zone's handover_s holds `customer_left` 5 s after exit_s). When the cloud has the `kiosk_help` alert it acknowledges it over MQTT (`ack_alert` with the event id it
    stored); the device's alert engine takes it (ack_via mqtt), and the alert still resolves by itself when the
    shopper leaves. The cloud stores opened, acked and resolved, the help events, and presence."""
    from sync import topics
    from sync.request import Requester

    clip = cut(store_video, tmp_path / "kiosk.avi", 26.0, 86.0)
    cfg = device_config(repo, tmp_path, "kiosk.toml", clip, broker.port, realtime=True)
    db = tmp_path / "cloud.sqlite"
    t = topics.DeviceTopics("s001", "kiosk-01")
    with Tap(broker.port) as tap:
        c = consumer(broker.port, db)
        proc = start_device(cfg, tmp_path)
        try:
            def opened() -> list[dict]:
                return [r for r in stored_records(db) if r["kind"] == "alert_opened"]
            assert wait_for(lambda: opened() or proc.poll() is not None, 120) and opened(), "no alert reached the cloud"
            with Requester(ClientOptions("127.0.0.1", broker.port), [f"{t.base}/cmd_result/+"]) as r:
                cid = r.send(t.cmd("ack_alert"), {"event_id": opened()[0]["event_id"], "by": "hq-ops",
                                                  "note": "calling the floor"})
                (res,) = r.wait([cid], 10)[cid]
            assert res["status"] == "ok" and res["result"]["state"] == "acked" and res["result"]["changed"], res
            finish(proc, tmp_path, 120)
            assert wait_for(lambda: lifecycles(stored_records(db)).get("kiosk_help") == ["opened", "acked", "resolved"],
                            20), lifecycles(stored_records(db))
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(30)
            c.stop()
    records = stored_records(db)
    assert check_events(records) == len(records)
    assert lifecycles(records) == {"kiosk_help": ["opened", "acked", "resolved"]}
    by_kind = {r["kind"]: r["data"] for r in records if r["stream"] == "alerts"}
    acked, resolved = by_kind["alert_acked"], by_kind["alert_resolved"]
    assert (acked["ack_via"], acked["acked_by"], acked["ack_note"]) == ("mqtt", "hq-ops", "calling the floor")
    assert resolved["resolution"] == "cleared" and resolved["acked_by"] == "hq-ops"  # acked, then it cleared
    assert acked["alert_id"] == resolved["alert_id"] == by_kind["alert_opened"]["alert_id"]
    kinds = {r["kind"] for r in records}
    assert {"help_requested", "help_resolved", "zone_entered", "zone_left", "person_entered"} <= kinds, kinds
    n = tap.check()
    assert n["records"] >= len(records) and n["states"] >= 2, n
