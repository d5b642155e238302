"""The payload guard (edge/privacy/guard.py): what it refuses and lets through, and, through the real MQTT client
against a real mosquitto, that image payloads on every device stream and command result never reach the broker
while legitimate ones do."""
from __future__ import annotations

import base64
import json
import sqlite3
import time

import cv2
import numpy as np
import pytest

from edge.core.events import Event
from edge.privacy import guard
from edge.privacy.guard import check_payload, check_result, find_image_data

from payload_schemas import assert_no_image_data
from privacy_helpers import metric, wait_until


def _jpeg_b64(side: int = 48) -> str:
    img = (np.random.default_rng(0).random((side, side, 3)) * 255).astype(np.uint8)
    return base64.b64encode(cv2.imencode(".jpg", img)[1].tobytes()).decode()


def _png_b64_small() -> str:
    return base64.b64encode(cv2.imencode(".png", np.zeros((2, 2, 3), np.uint8))[1].tobytes()).decode()


def heatmap(rows: int = 64, cols: int = 64) -> dict:
    return {"name": "floor", "rows": rows, "cols": cols, "frames": 900, "heatmap": True,
            "counts": [[(r * cols + c) % 7 for c in range(cols)] for r in range(rows)]}


LEGIT = {
    "person event": {"track_id": 7, "t_wall": 1.8e9, "scope": "main", "zone": "door"},
    "largest heatmap": heatmap(),
    "sha256 and ids": {"sha256": "ab" * 32, "event_id": "0123456789abcdef0123456789abcdef", "sig": "A" * 88},
    "counts named like images": {"frames": 12, "faces_blurred": 3, "image": None, "mask": False},
    "polygon": {"polygon": [[470, 360], [630, 360], [630, 478], [470, 478]]},
    "long prose": {"reason": "circuit opened: " + "the landmark model failed 3 times in a row; " * 40},
}
REFUSED = {
    "bytes": ({"frame": b"\xff\xd8\xff\xe0" + bytes(100)}, "image-like key 'frame'"),
    "bytes without an image key": ({"blob": bytearray(b"\x89PNG" + bytes(50))}, "bytearray"),
    "numpy array": ({"x": np.zeros((48, 48), np.uint8)}, "array of shape"),
    "base64 JPEG": ({"evidence": _jpeg_b64()}, "base64/hex"),
    "tiny base64 PNG": ({"note": _png_b64_small()}, "PNG image"),
    "data URI": ({"note": "data:image/png;base64,iVBORw0KGgo="}, "data:image"),
    "hex dump": ({"note": "ff" * 300}, "base64/hex"),
    "image key": ({"thumbnail": "x"}, "image-like key 'thumbnail'"),
    "nested jpeg key": ({"evidence": {"JPEG": [1, 2, 3]}}, "image-like key 'JPEG'"),
    "pixel array": ({"grid": [[0] * 65 for _ in range(64)]}, "numeric array"),
    "flat pixels": ({"values": list(range(64 * 64 + 1))}, "numeric array"),
    "embedding": ({"embedding": [0.1] * 128}, "image-like key 'embedding'"),
}


def test_grid_limit_is_the_largest_configurable_heatmap():
    """GRID_MAX is the heatmap's configured maximum: a bigger grid allowed by the config would be refused."""
    from edge.analytics.config import HeatmapConfig

    for side in ("cols", "rows"):
        le = [m.le for m in HeatmapConfig.model_fields[side].metadata if hasattr(m, "le")]
        assert le == [guard.GRID_MAX], (side, le)


def test_no_schema_has_a_field_for_faces_embeddings_or_reidentification():
    """Every field of every sent payload is in docs/schemas: none of them may carry a face, an image, an embedding
    or an identity that links visits."""
    from payload_schemas import schemas

    forbidden = guard.IMAGE_KEYS | {"embedding", "embeddings", "face_id", "reid", "person_id", "identity",
                                    "appearance", "histogram", "feature", "features", "descriptor", "biometric"}
    names: set[str] = set()
    stack = list(schemas().values())
    while stack:
        o = stack.pop()
        if isinstance(o, dict):
            names.update(o.get("properties", {}))
            stack.extend(o.values())
        elif isinstance(o, list):
            stack.extend(o)
    assert len(names) > 100
    clash = {n for n in names if n.lower() in forbidden} - {"frames"}  # the heatmap's frame count
    assert not clash, clash


@pytest.mark.parametrize("name", LEGIT)
def test_legitimate_payloads_pass(name):
    obj = LEGIT[name]
    assert find_image_data(obj) is None
    assert check_payload(json.dumps(obj).encode()) is None
    assert check_payload(json.dumps(obj).encode(), thorough=False) is None


@pytest.mark.parametrize("name", REFUSED)
def test_image_data_is_refused_and_named(name):
    obj, why = REFUSED[name]
    reason = find_image_data({"v": 1, "data": obj})
    assert reason is not None and why in reason, reason
    if not any(isinstance(v, (bytes, bytearray, np.ndarray)) for v in obj.values()):
        raw = json.dumps({"v": 1, "data": obj}).encode()
        assert why in (check_payload(raw) or ""), name
        if name not in ("pixel array", "flat pixels"):  # numbers are checked per record (thorough), see delivery
            assert check_payload(raw, thorough=False) is not None


def test_binary_payloads_are_refused():
    jpeg = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    assert "not JSON" in check_payload(jpeg)
    assert "not JSON" in check_payload(b"{" + jpeg)
    assert check_payload(b"") is None  # clearing a retained message


def test_only_a_sealed_image_in_an_ok_snapshot_result_passes():
    sealed = guard.seal(_jpeg_b64(64))
    other = _jpeg_b64(40)
    ok = {"v": 1, "id": "1", "cmd": "snapshot", "status": "ok", "result": {"format": "jpeg", "image": sealed}}
    assert check_payload(json.dumps(ok)) is None
    assert check_result("snapshot", {"image": sealed, "faces_blurred": 2}) is None
    # the same sealed string anywhere else, an unsealed image, another command, extra image data: refused
    assert check_payload(json.dumps({**ok, "cmd": "ping"})) is not None
    assert check_payload(json.dumps({**ok, "result": {"image": other}})) is not None
    assert check_payload(json.dumps({**ok, "result": {"image": sealed, "crop": other}})) is not None
    assert check_payload(json.dumps({**ok, "result": {"thumbnail": sealed}})) is not None
    assert check_payload(json.dumps({"v": 1, "events": [{"data": {"image": sealed}}]})) is not None
    assert check_result("ping", {"image": sealed}) is not None


# ------------------------------------------------------------------------------------------------ real broker
def test_image_payloads_on_every_stream_and_command_result_never_reach_the_broker(broker, tmp_path, decision_log):
    """A device (SyncService, the real paho client, a real mosquitto) emits legitimate and image-carrying events,
    alerts and telemetry, publishes state and model-update status with and without image data, and answers
    commands whose handlers return images. A second client subscribed to everything records what the broker
    delivered: no image data, except the sealed snapshot; every legitimate record reaches the cloud consumer."""
    from paho.mqtt.subscribeoptions import SubscribeOptions

    from edge.core.device import DeviceIdentity
    from sync import payloads, topics
    from sync.client import ClientOptions, MqttClient
    from sync.config import SyncConfig
    from sync.consumer import Consumer
    from sync.outbox import REDACTED
    from sync.request import Requester
    from sync.service import SyncService

    t = topics.DeviceTopics("s001", "d001")
    b64 = _jpeg_b64()
    sealed = guard.seal(_jpeg_b64(56))
    handlers = {
        "reload_config": lambda a: {"frame": b"\xff\xd8\xff" + bytes(2000)},
        "leak_b64": lambda a: {"evidence": b64},
        "leak_pixels": lambda a: {"grid": [[128] * 100 for _ in range(100)]},
        "leak_key": lambda a: {"crop": "0,0,10,10"},
        "legit": lambda a: {"heatmap": heatmap(), "note": "ok"},
        "snapshot": lambda a: {"format": "jpeg", "image": b64 if a["camera"] == "raw" else sealed},
    }
    before = {c: metric("edge_privacy_refused_total", channel=c)
              for c in ("events", "alerts", "telemetry", "state", "update", "cmd_result")}
    seen: list[tuple[str, bytes]] = []
    spy = MqttClient(ClientOptions("127.0.0.1", broker.port, client_id="spy", reconnect_min_s=0.1,
                                   subscriptions=[("retail/v1/#", SubscribeOptions(qos=1))]))
    spy.on_message = lambda msg: seen.append((msg.topic, bytes(msg.payload)))
    spy.start()
    assert spy.wait_connected(5)
    consumer = Consumer(ClientOptions("127.0.0.1", broker.port, client_id="cloud", reconnect_min_s=0.1),
                        tmp_path / "cloud.sqlite", ack_interval_s=0.05)
    consumer.start()
    cfg = SyncConfig.model_validate({"broker": "127.0.0.1", "port": broker.port, "telemetry_interval_s": 0,
                                     "outbox_path": str(tmp_path / "outbox.sqlite"), "reconnect_min_s": 0.1,
                                     "ack_timeout_s": 1.5})
    svc = SyncService(DeviceIdentity(id="d001", store="s001", kind="kiosk"), cfg, commands=handlers)
    svc.start()
    try:
        assert svc.client.wait_connected(5) and consumer.client.wait_connected(5)
        time.sleep(0.2)
        legit = [Event("person_entered", {"track_id": 1, "t_wall": time.time(), "scope": "main"}),
                 Event("occupancy_heatmap", heatmap()),
                 Event("alert_opened", {"rule": "queue", "value": 5, "evidence": {"queue_length": 5}}, stream="alerts"),
                 Event("health", {"uptime_s": 1.0, "load1": 0.5}, stream="telemetry")]
        bad = [Event("zone_entered", {"track_id": 2, "image": b64}),
               Event("person_left", {"track_id": 3, "note": b64}),
               Event("occupancy_heatmap", {"counts": [[1] * 80 for _ in range(80)], "rows": 80, "cols": 80}),
               Event("zone_left", {"frame": b"\xff\xd8\xff" + bytes(64)}),  # not JSON-able: dead-lettered at emit
               Event("alert_opened", {"rule": "queue", "evidence": {"crop": b64}}, stream="alerts"),
               Event("health", {"uptime_s": 2.0, "frame": [[0] * 100] * 100}, stream="telemetry")]
        for ev in bad[:3] + legit[:2] + bad[3:] + legit[2:]:
            svc.outbox.emit(ev)
        svc.outbox.emit(Event("person_left", {"track_id": 1, "t_wall": time.time(), "scope": "main"}))  # after them
        svc.set_state(thumbnail=b64)  # refused: the retained state keeps its last good value
        svc.set_state(models={"pose_landmark_full.onnx": "fp32"})  # fine, but carries the thumbnail: refused too
        with svc._state_lock:
            svc._state.pop("thumbnail")
        svc.set_state(models={"pose_landmark_full.onnx": "fp32"})
        assert svc.client.publish(t.update, payloads.dumps({"seq": 1, "image": b64}).encode(), retain=True) is None
        assert svc.client.publish(t.update, payloads.dumps({"seq": 2, "job": None}).encode(), retain=True)
        with Requester(ClientOptions("127.0.0.1", broker.port), [f"{t.base}/cmd_result/+"]) as r:
            ids = {name: r.send(t.cmd(name), {}) for name in ("reload_config", "leak_b64", "leak_pixels", "leak_key",
                                                              "legit", "snapshot")}
            ids["raw_snapshot"] = r.send(t.cmd("snapshot"), {"camera": "raw"})
            ids["ping"] = r.send(t.cmd("ping"), {"echo": "hi"})  # built-ins: legitimate results
            ids["ack_alert"] = r.send(t.cmd("ack_alert"), {"event_id": "a1b2c3", "by": "staff-7"})
            ids["set_log_level"] = r.send(t.cmd("set_log_level"), {"level": "INFO", "logger": "sf.test.privacy"})
            got = r.wait(list(ids.values()), 10)
        res = {name: got[i][0] for name, i in ids.items()}
        for name in ("reload_config", "leak_b64", "leak_pixels", "leak_key", "raw_snapshot"):
            assert res[name]["status"] == "error" and "privacy guard" in res[name]["reason"], res[name]
            assert res[name]["result"] == {}
        assert res["legit"]["status"] == "ok" and res["legit"]["result"]["heatmap"]["rows"] == 64
        assert all(res[n]["status"] == "ok" for n in ("ping", "ack_alert", "set_log_level")), res
        assert res["snapshot"]["status"] == "ok" and res["snapshot"]["result"]["image"] == sealed

        def stored() -> set[str]:
            with sqlite3.connect(tmp_path / "cloud.sqlite") as c:
                return {k for (k,) in c.execute("SELECT kind FROM events")}
        assert wait_until(lambda: {"person_entered", "occupancy_heatmap", "alert_opened", "person_left",
                                   "alert_acked"} <= stored()
                          and any("/telemetry" in tp for tp, _ in seen), 15), (stored(), [tp for tp, _ in seen])
        assert wait_until(lambda: sum(svc.outbox.depth().values()) == 0, 10), svc.outbox.depth()  # acked, gaps too
    finally:
        svc.stop()
        consumer.stop()
        time.sleep(0.2)
        spy.stop()

    # what the broker delivered: no image data anywhere (the sealed snapshot image aside)
    assert len(seen) >= 8
    for topic, raw in seen:
        obj = json.loads(raw) if raw else {}
        channel = topic.split("/")[4]
        if channel in ("events", "alerts", "telemetry"):
            for rec in obj["events"]:
                assert_no_image_data(rec, f"{rec['kind']} on {topic}")
                assert rec["kind"] != "zone_entered" and rec["kind"] != "zone_left"
        elif channel == "cmd_result" and obj.get("cmd") == "snapshot" and obj["status"] == "ok":
            assert obj["result"].pop("image") == sealed
            assert_no_image_data(obj, topic)
        else:
            assert_no_image_data(obj, topic)
    assert b64.encode() not in b"".join(raw for _, raw in seen)
    states = [json.loads(raw) for tp, raw in seen if tp.endswith("/state")]
    assert states and all("thumbnail" not in s for s in states) and states[-1]["status"] == "offline"
    assert any(s.get("models") for s in states)
    updates = [json.loads(raw) for tp, raw in seen if tp.endswith("/update")]
    assert [u["seq"] for u in updates] == [2]

    # counted per channel, recorded in the decision log, dead letters keep no image
    after = {c: metric("edge_privacy_refused_total", channel=c) - before[c] for c in before}
    assert after["events"] >= 2 and after["alerts"] >= 1 and after["telemetry"] >= 1, after
    assert after["state"] >= 2 and after["update"] >= 1 and after["cmd_result"] >= 5, after
    decision_log.flush()
    from edge.core.decisions import read_decisions

    recs = [r for r in read_decisions(decision_log.folder) if r["kind"] == "privacy_refused"]
    assert {r["subject"] for r in recs} >= {"events", "alerts", "telemetry", "state", "update", "cmd_result"}
    assert all(b64[:40] not in json.dumps(r) for r in recs)
    with sqlite3.connect(tmp_path / "outbox.sqlite") as c:
        dead = c.execute("SELECT kind, body, reason FROM dead_letter").fetchall()
    assert len(dead) == 6, dead
    assert all(body == REDACTED for _, body, _ in dead), dead
    assert sum(reason.startswith("privacy guard") for _, _, reason in dead) == 5
