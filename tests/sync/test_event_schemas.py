"""Every event and alert the runtime emits matches its JSON Schema in docs/schemas (draft 2020-12), on the device
(Event.to_dict()) and on the wire (the MQTT batch envelope), and carries no image data.

Real producers on short inputs: the store scene's people through the tracker, analytics and alert engine of the
shelf-camera and kiosk configs; shelf facings on rendered shelf frames; BlazePose presence on rendered store
frames; the try-on mirror on the mannequin source; model updates, the built-in ack and telemetry over a real
mosquitto into the reference consumer; a disk-budget gap in a real outbox. The end-to-end runs of the device
configs are tests/e2e/test_behaviour_e2e.py.
"""
from __future__ import annotations

import itertools
import json
import re
import sys
import time
import tomllib
from pathlib import Path

import numpy as np
import pytest
from jsonschema import Draft202012Validator

from edge.core.events import Event, ListSink
from payload_schemas import (Tap, assert_no_image_data, check_batch, check_events, errors, event_kinds, schemas,
                             stored_records)
from sync import payloads

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analytics"))  # facings_helpers (shelf frames)

REPO = Path(__file__).resolve().parents[2]


def wire_batches(events: list[Event], path: Path, device: str = "d001", store: str = "s001") -> list[dict]:
    """The events through a real outbox (nothing may be dead-lettered), then as the batches delivery would send:
    one per kind, in seq order."""
    from sync.outbox import RELIABLE, TELEMETRY, Outbox

    with Outbox(path) as ob:
        for e in events:
            ob.emit(e)
        assert ob.dead_letters() == [], ob.dead_letters()
        rows = ob.fetch(RELIABLE, 0, 100_000) + ob.fetch(TELEMETRY, 0, 100_000)
        out = []
        for kind, group in itertools.groupby(sorted(rows, key=lambda r: (r[2], r[0])), key=lambda r: r[2]):
            group = list(group)
            for i in range(0, len(group), 100):  # batch_max
                out.append(json.loads(payloads.batch(device, store, ob.epoch,
                                                     [(r[0], r[3]) for r in group[i:i + 100]], False)))
    return out


def check_on_wire(events: list[Event], tmp_path: Path) -> None:
    for b in wire_batches(events, tmp_path / "outbox.sqlite"):
        check_batch(b)


def kinds_of(events: list[Event]) -> set[str]:
    return {e.kind for e in events}


# ---------------------------------------------------------------------------------------------- the schemas
def test_schema_files_are_valid_draft_2020_12_and_cover_every_kind_in_the_code():
    for name, s in schemas().items():
        Draft202012Validator.check_schema(s)
        assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema", name
        assert s["$id"].endswith("/" + name), name
    kinds = set(event_kinds())
    # every literal kind the runtime builds an Event with (Event(...), make_event(...), the presence tracker's _emit)
    pattern = re.compile(r'\b(?:Event|make_event|_emit)\(\s*(?:kind=)?"([A-Za-z_][\w.-]*)"')
    found = {m for p in [*REPO.glob("edge/**/*.py"), *REPO.glob("sync/**/*.py")]
             for m in pattern.findall(p.read_text())}
    from edge.alerts.engine import TRANSITIONS

    found |= {f"alert_{t}" for t in TRANSITIONS} | {payloads.GAP_KIND}
    assert {"person_entered", "zone_entered", "facing_state", "tryon_session", "health"} <= found  # the scan works
    assert found <= kinds, f"event kinds without a schema: {sorted(found - kinds)}"
    assert kinds <= found, f"schemas of kinds nobody emits: {sorted(kinds - found)}"
    sync_doc = (REPO / "docs" / "SYNC.md").read_text()
    section = sync_doc[sync_doc.index("## JSON Schemas"):]
    assert all(f"`{k}`" in section for k in kinds), [k for k in kinds if f"`{k}`" not in section]
    assert all(f"schemas/{n}" in section for n in schemas()), "docs/SYNC.md links every schema file"
    alerts_doc = (REPO / "docs" / "ALERTS.md").read_text()  # the documented alert event is a valid one
    example = alerts_doc.split("<!-- event-example -->", 1)[1].split("```json", 1)[1].split("```", 1)[0]
    assert errors("event.schema.json", json.loads(example)) == []


def test_the_checks_fail_on_bad_payloads():
    """A valid event passes; image data, extra or missing fields, wrong types, inconsistent alerts, oversized grids
    and unknown kinds are each reported."""
    from edge.analytics.zones import PolygonZone
    from edge.core.detections import Detections

    z = PolygonZone("door", [[0, 0], [100, 0], [100, 100], [0, 100]], enter_frames=1)
    det = Detections(np.array([[40, 20, 60, 50]]), np.array([0.9]), np.array([0]), tracker_id=np.array([7]))
    (ev,) = z.update(det, 1.0, 1_790_000_000.0)
    good = ev.to_dict()
    assert errors("event.schema.json", good) == []

    def bad(mutate) -> list[str]:
        rec = json.loads(json.dumps(good))
        mutate(rec)
        return errors("event.schema.json", rec)

    assert bad(lambda r: r["data"].update(image="iVBORw0KGgo" * 20))  # a field the schema does not know
    assert bad(lambda r: r["data"].pop("track_id"))
    assert bad(lambda r: r["data"].update(track_id="7"))
    assert bad(lambda r: r.update(kind="zone_entred"))
    assert bad(lambda r: r.update(stream="alerts"))
    with pytest.raises(AssertionError, match="image-like key"):
        assert_no_image_data({"data": {"crop": [1, 2]}})
    with pytest.raises(AssertionError, match="base64"):
        assert_no_image_data({"data": {"note": "A" * 100}})
    with pytest.raises(AssertionError, match="list of 65 items"):
        assert_no_image_data({"data": {"counts": [[0] * 65]}})
    heat = {"kind": "occupancy_heatmap", "stream": "events", "ts": 1.0, "event_id": "a" * 32,
            "data": {"source": "c", "t": 1.0, "t_wall": None, "heatmap": "floor", "cols": 2, "rows": 1,
                     "counts": [[1, 2, 3]], "total": 6, "frames": 3, "period_start_t": 0.0,
                     "period_start_t_wall": None, "period_end_t": 1.0, "period_s": 1.0, "unit": "person_frames"}}
    assert errors("event.schema.json", heat) == []  # the schema cannot relate counts to rows x cols ...
    with pytest.raises(AssertionError, match="rows x cols"):
        assert_no_image_data(heat)  # ... the image-data check does


# ---------------------------------------------------------------------------------- analytics and alerts
def store_scene_config():
    """[analytics] of device_configs/shelf-camera.toml plus the kiosk zone and kiosk help of kiosk.toml, and both
    devices' rules, on one stream. Changed for coverage: the heatmap period (60 s, so a period ends during the scene
    and another is flushed at the end) and the kiosk rule escalates after 5 s. The planogram (shelf facings, which
    judge the image, not people) is left out: the store scene has no shelf facings (see the facings test)."""
    from edge.app.config import parse_config

    shelf = tomllib.loads((REPO / "device_configs" / "shelf-camera.toml").read_text())
    kiosk = tomllib.loads((REPO / "device_configs" / "kiosk.toml").read_text())
    a = shelf["analytics"]
    a.pop("planogram", None)
    a["zones"] += kiosk["analytics"]["zones"]
    a["kiosk_help"] = kiosk["analytics"]["kiosk_help"]
    a["heatmaps"][0]["period_s"] = 60.0
    rules = [r for r in shelf["alerts"]["rules"] if r["metric"] in ("queue_length", "loitering")]
    rules += [{**r, "escalate_after_s": 5} for r in kiosk["alerts"]["rules"]]
    assert {r["id"] for r in rules} == {"queue_long", "loiter_window", "kiosk_help"}
    return parse_config({"device": shelf["device"], "source": {"width": 640, "height": 480, "fps": 10},
                         "pose": {"enabled": False}, "analytics": a, "alerts": {"rules": rules}},
                        "<shelf-camera + kiosk analytics>")


def truth_detections(tf, w: int = 640, h: int = 480):
    """The scene's people as a detector would report them: boxes clipped to the frame, people less than 30 %
    visible missed, wrists as COCO keypoints (for the shelf interaction); not tracked (the tracker runs)."""
    from edge.core.detections import COCO_KEYPOINTS, Detections

    boxes, kps = [], []
    for p in tf.people:
        x0, y0, x1, y1 = p.box
        b = [max(0.0, x0), max(0.0, y0), min(float(w), x1), min(float(h), y1)]
        if p.visible < 0.3 or b[2] - b[0] < 4 or b[3] - b[1] < 8:
            continue
        kp = np.zeros((len(COCO_KEYPOINTS), 3), np.float32)
        for name, (x, y) in zip(("left_wrist", "right_wrist"), p.wrists):
            if 0 <= x < w and 0 <= y < h:
                kp[COCO_KEYPOINTS.index(name)] = (x, y, 0.9)
        boxes.append(b)
        kps.append(kp)
    if not boxes:
        return Detections.empty(keypoint_names=COCO_KEYPOINTS)
    return Detections(np.array(boxes), np.full(len(boxes), 0.9), np.zeros(len(boxes)), np.stack(kps), None,
                      COCO_KEYPOINTS)


def test_store_scene_analytics_and_alert_lifecycle_match_the_schemas(tmp_path):
    """One 100 s cycle of the scripted store scene (devtools/scenario.py) at 10 FPS: its people through ByteTrack,
    every analytics object of the two configs and the alert engine; staff act on the alerts as they come (the
    escalated kiosk alert is acknowledged, the loitering alert resolved by hand)."""
    from devtools import scenario
    from edge.alerts import AlertEngine
    from edge.analytics.composer import Analytics
    from edge.app.behaviour import BehaviourStage
    from edge.core.frames import Frame

    cfg = store_scene_config()
    sink = ListSink()
    stage = BehaviourStage(Analytics.from_config(cfg.analytics, sink, source="scene", frame_size=(640, 480)),
                           AlertEngine(cfg.alerts, sink, wall_clock=lambda: t_wall),
                           models={"nanodet_m_416.onnx": "openvino/int8"})
    sc = scenario.build(cycles=1)
    image = np.zeros((480, 640, 3), np.uint8)  # no facings here: the frame's pixels are not read
    t0_wall = 1_795_946_400.0
    seen = 0
    for i in range(sc.n_frames):
        t = i / sc.fps
        t_wall = t0_wall + t
        stage.update(Frame(image, i, 0.0, t_wall, "scene", t_media=t), truth_detections(sc.truth(i)))
        for e in sink.events[seen:]:
            if e.kind == "alert_escalated" and e.data["rule"] == "kiosk_help":
                stage.engine.ack(e.data["alert_id"], by="sam", note="on my way", via="api")
            elif e.kind == "alert_opened" and e.data["rule"] == "loiter_window":
                stage.engine.resolve(e.data["alert_id"], by="sam", note="just browsing", via="page")
        seen = len(sink.events)
    stage.close()  # flushes the heatmap's partial period

    assert kinds_of(sink.events) == {
        "zone_entered", "zone_left", "line_crossed", "queue_changed", "loitering", "product_interaction",
        "occupancy_heatmap", "help_requested", "help_resolved",
        "alert_opened", "alert_escalated", "alert_acked", "alert_resolved"}, kinds_of(sink.events)
    alerts: dict[str, list[str]] = {}
    for e in sink.events:
        if e.stream == "alerts":
            alerts.setdefault(e.data["rule"], []).append(e.data["transition"])
    assert alerts == {"queue_long": ["opened", "resolved"], "loiter_window": ["opened", "resolved"],
                      "kiosk_help": ["opened", "escalated", "acked", "resolved"]}, alerts
    resolved = {e.data["rule"]: e.data for e in sink.events if e.kind == "alert_resolved"}
    assert resolved["loiter_window"]["resolution"] == "staff" and resolved["queue_long"]["resolution"] == "cleared"
    assert resolved["kiosk_help"]["acked_by"] == "sam" and resolved["kiosk_help"]["escalated"] is True
    assert len([e for e in sink.events if e.kind == "occupancy_heatmap"]) == 2  # one period of 60 s + the flush
    assert check_events(e.to_dict() for e in sink.events) == len(sink.events)
    check_on_wire(sink.events, tmp_path)
    for a in [*stage.engine.active(), *stage.engine.recent_resolved()]:  # the staff page's JSON API view
        assert errors_of_def("alert.schema.json", "alert", a) == [], a


def errors_of_def(file: str, name: str, payload) -> list[str]:
    """Violations of one $defs entry of a schema file."""
    from payload_schemas import registry

    s = {"$schema": "https://json-schema.org/draft/2020-12/schema",
         "$ref": f"{schemas()[file]['$id']}#/$defs/{name}"}
    return [e.message for e in Draft202012Validator(s, registry=registry()).iter_errors(payload)]


def test_shelf_facing_events_and_alerts_match_the_schemas(tmp_path):
    """Shelf frames (devtools/shelf_scenario.py via tests/analytics/facings_helpers.py) at 5 FPS through a
    BehaviourStage with the scene's planogram: startup reference, an empty facing, its alert acknowledged on the
    staff page, the restock (reference retaken via the acknowledgement), the camera bumped and put back, and a
    retake over MQTT."""
    from facings_helpers import boxes, image, planogram

    from edge.alerts import AlertEngine, AlertsConfig
    from edge.analytics.composer import Analytics
    from edge.analytics.config import AnalyticsConfig
    from edge.app.behaviour import BehaviourStage
    from edge.core.frames import Frame

    sink = ListSink()
    acfg = AnalyticsConfig.model_validate({"tracker": {"enabled": False}, "planogram": planogram()})
    rules = AlertsConfig.model_validate({"rules": [
        {"id": "a1-empty", "metric": "facing_empty", "key": "A1", "for_s": 2, "clear_for_s": 1, "severity": "info"},
        {"id": "cam", "metric": "camera_moved", "key": "aisle-1", "clear_for_s": 1}]})
    st = BehaviourStage(Analytics.from_config(acfg, sink, source="aisle-cam"), AlertEngine(rules, sink))
    t = 0.0

    def feed(seconds: float, **frame) -> None:
        nonlocal t
        for _ in range(int(round(seconds * 5))):
            st.update(Frame(image(i=int(t * 5), **frame), int(t * 5), 0.0, 1_790_000_000.0 + t, "aisle-cam",
                            t_media=t), boxes())
            t += 0.2

    feed(2.0)
    feed(6.0, counts={"A1": (0, 0)})
    (opened,) = [e for e in sink.events if e.kind == "alert_opened"]
    st.engine.ack(opened.data["alert_id"], by="sam", via="page")
    feed(5.0, counts={"A1": (4, 1)})
    feed(3.0, camera=(16.0, -10.0, 1.5))
    feed(3.0)
    st.retake_reference("B2", by="hq", via="mqtt")
    feed(1.0)

    assert {"facing_reference", "facing_state", "camera_moved", "alert_opened", "alert_acked",
            "alert_resolved"} <= kinds_of(sink.events), kinds_of(sink.events)
    states = [e.data for e in sink.events if e.kind == "facing_state"]
    assert any(s["state"] == "empty" and isinstance(s["cues"], dict) for s in states)
    assert any(s["state"] == "unknown" and s["cues"] is None and s["needs_action"] is None for s in states)
    assert [e.data["moved"] for e in sink.events if e.kind == "camera_moved"] == [True, False]
    refs = {(e.data["reason"], e.data["via"]) for e in sink.events if e.kind == "facing_reference"}
    assert {("startup", ""), ("restocked", "ack"), ("now", "mqtt")} <= refs, refs
    assert check_events(e.to_dict() for e in sink.events) == len(sink.events)
    check_on_wire(sink.events, tmp_path)


# ------------------------------------------------------------------------------------ pose and try-on
def test_presence_events_from_blazepose_match_the_schema(tmp_path):
    """BlazePose on the first 6 s of the store scene (two near shoppers cross the door); people still in the
    frame leave when the run stops, as the runtime does (frame_seq -1)."""
    from devtools import scenario
    from edge.app.config import ModelsSection
    from edge.core.frames import Frame
    from edge.pose.config import PoseConfig
    from edge.pose.events import PresenceTracker
    from edge.pose.pipeline import PosePipeline
    from edge.pose.types import PoseResult

    sink = ListSink()
    presence = PresenceTracker(sink, source="video:store.avi")
    pipe = PosePipeline((PoseConfig(max_people=2, segmentation=False), ModelsSection()))
    t0_wall = 1_795_946_400.0
    try:
        for i, (img, _) in enumerate(itertools.islice(scenario.build(cycles=1).frames(), 60)):
            frame = Frame(img, i, 0.0, t0_wall + i / 10, "scene", t_media=i / 10)
            presence.update(pipe.process(frame), frame.t_wall)
    finally:
        pipe.close()
    presence.update(PoseResult(-1, 5.9, (0, 0), clock="media"), t0_wall + 5.9)
    assert kinds_of(sink.events) == {"person_entered", "person_left"}, [e.kind for e in sink.events]
    assert check_events(e.to_dict() for e in sink.events) == len(sink.events)
    check_on_wire(sink.events, tmp_path)


def test_tryon_session_events_from_the_mirror_match_the_schema(tmp_path, monkeypatch):
    """The try-on mirror pipeline on the mannequin source: a T-shirt, then a jacket in two colours."""
    monkeypatch.setenv("PYOPENGL_PLATFORM", "egl")
    monkeypatch.setenv("STOREFRONT_EDGE_CACHE", str(tmp_path / "cache"))  # garments and shaders built here
    from devtools.mannequin import MannequinSource, TruthPose
    from edge.tryon.config import TryOnConfig
    from edge.tryon.garments import Catalog
    from edge.tryon.pipeline import TryOnPipeline

    sink = ListSink()
    pipe = TryOnPipeline(TryOnConfig(), MannequinSource(320, 240, fps=30, n_cycle=4), TruthPose(), sink,
                         catalog=Catalog(cache_dir=tmp_path / "cache" / "garments")).start()
    try:
        assert pipe.wait_frame(-1, timeout=30) is not None
        time.sleep(1.3)
        pipe.select("JKT-002", "black")
        time.sleep(0.8)
        pipe.select("JKT-002", "tan")
        time.sleep(0.8)
    finally:
        pipe.stop()
    assert [(e.kind, e.data["end_reason"]) for e in sink.events] == [("tryon_session", "garment_changed"),
                                                                     ("tryon_session", "stopped")]
    assert check_events(e.to_dict() for e in sink.events) == 2
    check_on_wire(sink.events, tmp_path)


# ------------------------------------------------------------------------------------------------ sync
def test_sync_records_over_mosquitto_match_the_schemas(broker, tmp_path):
    """A device (SyncService + model-update agent) on a real mosquitto: a model update that fails its
    post-activation health check and is rolled back, the built-in `ack_alert`, periodic telemetry; the reference
    consumer stores them and a second subscriber keeps every raw batch and state message. Records, envelopes and
    states all match their schemas."""
    from sync import topics
    from sync.client import ClientOptions
    from sync.rollout import publish_model
    from sync_helpers import requester, start_consumer, wait_until
    from update_helpers import MODEL, Device, keys, model_dir

    db = tmp_path / "cloud.sqlite"
    priv, pub = keys(tmp_path / "keys")
    t = topics.DeviceTopics("s001", "d001")
    with Tap(broker.port) as tap:
        consumer = start_consumer(broker.port, db)
        dev = Device(broker.port, tmp_path / "dev", pub, base=model_dir(tmp_path / "v1.0", seed=0), healthy=False,
                     sync={"telemetry_interval_s": 0.3}).start()
        try:
            publish_model(ClientOptions("127.0.0.1", broker.port), MODEL, "1.1", model_dir(tmp_path / "v1.1", seed=2),
                          priv, chunk_size=64 << 10)
            with requester(broker.port, [f"{t.base}/cmd_result/+"]) as r:
                ids = [r.send(t.cmd("model_update"), {"name": MODEL, "version": "1.1"}),
                       r.send(t.cmd("ack_alert"), {"event_id": "ba7dff8869254352a9b032bcd749668f", "by": "hq-ops",
                                                   "note": "seen"})]
                got = r.wait(ids, 10)
            assert all(got[i] and got[i][0]["status"] == "ok" for i in ids), got
            assert wait_until(lambda: {"model_update", "model_rollback", "alert_acked"}
                              <= {r["kind"] for r in stored_records(db)} and "telemetry" in tap.channels(), 30)
        finally:
            dev.stop()
            consumer.stop()
        time.sleep(0.3)  # the graceful stop's offline state
    records = stored_records(db)
    assert check_events(records) == len(records) > 0
    updates = [r["data"]["state"] for r in records if r["kind"] == "model_update"]
    assert updates[-1] == "ROLLED_BACK", updates
    (rb,) = [r["data"] for r in records if r["kind"] == "model_rollback"]
    assert rb["trigger"] == "health_check" and rb["to"] == "1.0"
    (ack,) = [r for r in records if r["kind"] == "alert_acked"]
    assert ack["stream"] == "events" and ack["data"]["by"] == "hq-ops"
    n = tap.check()
    assert n["batches"] >= 4 and n["states"] >= 2, n  # model_update, model_rollback, alert_acked, health; on + off


def test_gap_records_of_a_full_outbox_match_the_schema(tmp_path):
    """A device offline with a tiny disk budget drops its oldest events for `_gap` records; the batches that
    would carry them match the envelope schema."""
    from sync.outbox import Outbox

    with Outbox(tmp_path / "o.sqlite", max_bytes=6000) as ob:
        for i in range(60):
            ob.emit(Event("queue_changed", {"queue": "checkout", "length": i % 5, "previous_length": 0,
                                            "service_rate_per_min": None, "wait_estimate_s": None,
                                            "source": "cam", "t": float(i), "t_wall": 1.0e9 + i}))
        rows = ob.fetch("reliable", 0, 1000)
        epoch = ob.epoch
    gaps = [json.loads(r[3]) for r in rows if r[2] == payloads.GAP_KIND]
    assert gaps and all(g["data"]["reason"] == "disk_budget" for g in gaps)
    for kind, group in itertools.groupby(rows, key=lambda r: r[2]):
        check_batch(json.loads(payloads.batch("d001", "s001", epoch, [(r[0], r[3]) for r in group], False)))
