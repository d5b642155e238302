"""The restock workflow: the composer passes the frame to the facings, facing values reach the alert engine,
acknowledging a facing_empty alert retakes the facing's reference after the restock, and the shelf_reference
command handler."""
from __future__ import annotations

import pytest

from edge.alerts import AlertEngine, AlertsConfig
from edge.analytics.composer import Analytics
from edge.analytics.config import AnalyticsConfig
from edge.analytics.facings import shelf_reference_handler
from edge.app.behaviour import BehaviourStage
from edge.core.events import ListSink
from edge.core.frames import Frame

from facings_helpers import Clock, boxes, image, planogram, shelf

ZONE = {"name": "aisle", "polygon": [[0, 300], [640, 300], [640, 480], [0, 480]]}
RULES = {"rules": [
    {"id": "a1-empty", "metric": "facing_empty", "key": "A1", "for_s": 2, "clear_for_s": 1, "severity": "info"},
    {"id": "cam", "metric": "camera_moved", "key": "aisle-1", "clear_for_s": 1},
]}


def stage() -> tuple[BehaviourStage, ListSink]:
    sink = ListSink()
    cfg = AnalyticsConfig.model_validate({"tracker": {"enabled": False}, "zones": [ZONE], "planogram": planogram()})
    alerts = AlertsConfig.model_validate(RULES)
    alerts.validate_against({**cfg.alert_keys()})
    return BehaviourStage(Analytics.from_config(cfg, sink, source="cam0"), AlertEngine(alerts, sink)), sink


def feed(st: BehaviourStage, seconds: float, t0: float, dets=None, **frame) -> float:
    n = int(round(seconds * 5))
    for k in range(n):
        t = t0 + k / 5
        st.update(Frame(image(i=int(t * 5), **frame), int(t * 5), 0.0, 1_790_000_000.0 + t, "cam0", t_media=t),
                  dets if dets is not None else boxes())
    return t0 + n / 5


def test_composer_passes_the_image_only_to_objects_that_need_it():
    sink = ListSink()
    cfg = AnalyticsConfig.model_validate({"tracker": {"enabled": False}, "zones": [ZONE], "planogram": planogram()})
    a = Analytics.from_config(cfg, sink, source="cam0")
    assert list(a.planograms) == ["aisle-1"] and len(a.facings) == 18 and list(a.zones) == ["aisle"]
    c = Clock(a)  # Analytics.update(dets, t, t_wall, image=...): zones get no image, facings do
    c.run(2.0, boxes((300, 200, 340, 470)))
    assert {e.kind for e in sink.events} >= {"facing_reference", "facing_state"}
    assert all(e.data["source"] == "cam0" for e in sink.events)
    no_shelf = Analytics.from_config(AnalyticsConfig.model_validate({"zones": [ZONE]}), sink)
    assert no_shelf.planograms == {} and no_shelf.facings == {}


def test_facing_empty_alert_ack_retakes_the_reference_after_restock():
    st, sink = stage()
    t = feed(st, 2.0, 0.0)
    v = st.values(t)
    assert v[("facing_empty", "A1")].value is False and v[("camera_moved", "aisle-1")].value is False
    assert st.live()["facings"]["A1"] == "full"
    t = feed(st, 6.0, t, counts={"A1": (0, 0)})  # persistence 2 s, then the rule's for_s 2 s
    opened = [e for e in sink.events if e.kind == "alert_opened"]
    assert [e.data["rule"] for e in opened] == ["a1-empty"]
    ev = opened[0].data["evidence"]
    assert ev["shelf"] == "A1" and ev["detail"]["state"] == "empty" and ev["detail"]["sku"] == "SKU-0000"
    # staff acknowledge on their way to the stock room: the empty facing is not learned as the reference
    out = st.engine.ack(opened[0].data["alert_id"], by="sam", via="page")
    assert out.changed and st.analytics.facings["A1"].pending_reference == "restocked"
    t = feed(st, 3.0, t, counts={"A1": (0, 0)})
    assert not any(e.kind == "facing_reference" and e.data["t"] > 2.0 for e in sink.events)
    t = feed(st, 3.0, t, counts={"A1": (4, 1)})  # restocked
    ref = [e for e in sink.events if e.kind == "facing_reference" and e.data["t"] > 2.0]
    assert [(e.data["facing"], e.data["reason"], e.data["by"], e.data["via"]) for e in ref] == \
        [("A1", "restocked", "sam", "ack")]
    t = feed(st, 2.0, t, counts={"A1": (4, 1)})
    resolved = [e for e in sink.events if e.kind == "alert_resolved"]
    assert [e.data["resolution"] for e in resolved] == ["cleared"]


def test_camera_moved_reading_and_unknown_facings_are_no_data():
    st, sink = stage()
    t = feed(st, 2.0, 0.0)
    t = feed(st, 3.0, t, camera=(16.0, -10.0, 1.5))
    v = st.values(t)
    assert v[("camera_moved", "aisle-1")].value is True and v[("facing_empty", "A1")] is None
    assert [e.data["rule"] for e in sink.events if e.kind == "alert_opened"] == ["cam"]
    assert st.live()["facings"]["B2"] == "unknown"
    assert sorted(st.retake_reference(None, by="sam")) == sorted(st.analytics.facings)


def test_shelf_reference_command_handler():
    s1, s2 = shelf(camera="aisle-1"), shelf(camera="aisle-2", facings=planogram()["facings"][:2])
    for s in (s1, s2):
        Clock(s).run(2.0)
    handler = shelf_reference_handler(lambda: {"aisle-1": s1, "aisle-2": s2}, error=RuntimeError)
    assert handler({"facing": "B3", "camera": "", "by": "hq"}) == {
        "pending": ["B3"], "cameras": ["aisle-1"], "taken": "at the next frame with nobody in front of the facing"}
    assert s1.facings["B3"].pending_reference == "now" and s1.facings["B3"]._pending_by == "hq"
    out = handler({"facing": "all", "camera": "aisle-2", "by": ""})
    assert out["pending"] == ["A1", "A2"] and out["cameras"] == ["aisle-2"]
    assert s2.facings["A1"]._pending_via == "mqtt" and s2.facings["A1"]._pending_by == "cloud"
    assert len(handler({"facing": "", "camera": "", "by": ""})["pending"]) == 20
    with pytest.raises(RuntimeError, match="no facing 'Z9'"):
        handler({"facing": "Z9"})
    with pytest.raises(RuntimeError, match="no camera 'aisle-9'"):
        handler({"facing": "", "camera": "aisle-9"})
    with pytest.raises(RuntimeError, match="no shelf facings"):
        shelf_reference_handler({}, error=RuntimeError)({"facing": ""})
    # the retake then happens on the next clear frames
    ev = Clock(s1, t=10.0).run(2.0)
    assert sum(e.kind == "facing_reference" and e.data["via"] == "mqtt" for e in ev) == 18


def test_shelf_reference_args_schema():
    from pydantic import ValidationError

    from sync.commands import SCHEMAS

    schema = SCHEMAS["shelf_reference"]
    assert schema.model_validate({"facing": "A3"}).model_dump() == {"facing": "A3", "camera": "", "by": ""}
    with pytest.raises(ValidationError):
        schema.model_validate({"facing": 3})
    with pytest.raises(ValidationError):
        schema.model_validate({"facings": "A3"})
