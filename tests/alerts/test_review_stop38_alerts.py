"""Review fixes of the alert engine and shelf facings: an acknowledged facing_empty alert restored after a restart
still retakes the facing's reference after the restock; the engine and its state file under restarts, clock jumps
and bad files."""
from __future__ import annotations

import sys
from pathlib import Path

from edge.alerts import AlertEngine, AlertsConfig
from edge.analytics.composer import Analytics
from edge.analytics.config import AnalyticsConfig
from edge.app.behaviour import BehaviourStage
from edge.core.events import ListSink
from edge.core.frames import Frame

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analytics"))  # the shelf image helpers

from facings_helpers import Clock, boxes, image, planogram, shelf  # noqa: E402

from alerts_helpers import FakeWall, wall  # noqa: E402

A1_EMPTY = {"id": "a1-empty", "metric": "facing_empty", "key": "A1", "for_s": 2, "clear_for_s": 1, "severity": "info"}


def shelf_stage(tmp_path) -> tuple[BehaviourStage, ListSink]:
    """The runtime's wiring of one camera: facings stored in tmp_path/shelf, alerts in tmp_path/alert-state.json (a
    restart is a new stage on the same folders)."""
    sink = ListSink()
    cfg = AnalyticsConfig.model_validate({"tracker": {"enabled": False},
                                          "planogram": planogram(reference_dir=str(tmp_path / "shelf"))})
    alerts = AlertsConfig.model_validate({"timezone": "UTC", "rules": [A1_EMPTY]})
    engine = AlertEngine(alerts, sink, wall_clock=FakeWall(wall(9)), state_path=tmp_path / "alert-state.json")
    return BehaviourStage(Analytics.from_config(cfg, sink, source="cam0"), engine), sink


def feed(st: BehaviourStage, seconds: float, t0: float, **frame) -> float:
    n = int(round(seconds * 5))
    for k in range(n):
        t = t0 + k / 5
        st.update(Frame(image(i=int(t * 5), **frame), int(t * 5), 0.0, 1_790_000_000.0 + t, "cam0", t_media=t),
                  boxes())
    return t0 + n / 5


def test_an_acked_facing_alert_restored_after_a_restart_still_retakes_the_reference_after_the_restock(tmp_path):
    st, sink = shelf_stage(tmp_path)
    t = feed(st, 2.0, 0.0)
    t = feed(st, 6.0, t, counts={"A1": (0, 0)})
    alert_id = next(e.data["alert_id"] for e in sink.events if e.kind == "alert_opened")
    st.engine.ack(alert_id, by="sam", via="page")  # on the way to the stock room ...
    assert st.analytics.facings["A1"].pending_reference == "restocked"

    st2, sink2 = shelf_stage(tmp_path)  # ... the device restarts
    assert [(a["alert_id"], a["state"]) for a in st2.engine.active()] == [(alert_id, "acked")]
    t = feed(st2, 3.0, 0.0, counts={"A1": (0, 0)})  # still empty: the empty facing is not learned
    assert [e for e in sink2.events if e.kind == "facing_reference"] == []
    assert st2.analytics.facings["A1"].pending_reference == "restocked"
    t = feed(st2, 3.0, t, counts={"A1": (4, 1)})  # restocked (packs a pixel or two off)
    assert [(e.data["facing"], e.data["reason"], e.data["by"], e.data["via"])
            for e in sink2.events if e.kind == "facing_reference"] == [("A1", "restocked", "sam", "ack")]
    feed(st2, 2.0, t, counts={"A1": (4, 1)})
    assert [(e.data["alert_id"], e.data["resolution"]) for e in sink2.events if e.kind == "alert_resolved"] == \
        [(alert_id, "cleared")]
    assert st2.analytics.facings["A1"].state == "full"


def test_a_retake_asked_before_the_first_frame_survives_loading_the_stored_references(tmp_path):
    Clock(shelf(reference_dir=str(tmp_path))).run(2.0)  # references stored
    s = shelf(reference_dir=str(tmp_path))
    s.retake_reference("A1", when="restocked", by="sam", via="ack")
    s.retake_reference("B2", by="hq", via="mqtt")
    c = Clock(s)
    c.run(0.2, counts={"A1": (0, 0)})  # the first frame loads the stored references
    assert s.facings["A1"].has_reference and s.facings["A1"].pending_reference == "restocked"
    assert s.facings["B2"].pending_reference == "now" and s.facings["B3"].pending_reference is None
    ev = c.run(2.0, counts={"A1": (0, 0)})  # A1 still empty: it waits for the restock
    assert [(e.data["facing"], e.data["reason"], e.data["via"]) for e in ev if e.kind == "facing_reference"] == \
        [("B2", "now", "mqtt")]
    ev = c.run(2.0)
    assert [(e.data["facing"], e.data["reason"], e.data["by"]) for e in ev if e.kind == "facing_reference"] == \
        [("A1", "restocked", "sam")]


def test_a_restock_retake_of_a_facing_without_a_reference_takes_it_when_measurable():
    """In memory only (no reference_dir) a restart has no reference to judge a restock against: the facing's
    reference is taken as at any start, not left without one (unknown) forever."""
    s = shelf(reference_dir="")
    s.retake_reference("A1", when="restocked", by="sam", via="ack")
    ev = Clock(s).run(2.0)
    assert ("A1", "startup") in [(e.data["facing"], e.data["reason"]) for e in ev if e.kind == "facing_reference"]
    assert s.facings["A1"].has_reference and s.facings["A1"].state == "full"


HELP = {"id": "kiosk-help", "metric": "help_requested", "key": "kiosk", "clear_for_s": 3, "cooldown_s": 60}
H = ("help_requested", "kiosk")
NOON = wall(12)


def engine_at(path, *rules) -> tuple[AlertEngine, ListSink]:
    """A real engine on the state file `path` (a restart is a new engine on the same file)."""
    sink = ListSink()
    cfg = AlertsConfig.model_validate({"timezone": "UTC", "rules": list(rules)})
    return AlertEngine(cfg, sink, wall_clock=FakeWall(NOON), state_path=path), sink


def test_an_on_ack_hook_added_after_the_ack_is_called_once(tmp_path):
    """The runtime opens the engines (restoring acked alerts, taking the cloud's queued acks) before the pipeline
    that adds the hook exists: the hook still sees those acknowledgements, once each."""
    a, _ = engine_at(tmp_path / "state.json", A1_EMPTY, HELP)
    a.update({("facing_empty", "A1"): True, H: True}, 0.0, NOON)
    a.update({("facing_empty", "A1"): True, H: True}, 2.0, NOON + 2)
    facing_id = next(x["alert_id"] for x in a.active() if x["rule"] == "a1-empty")
    a.ack(facing_id, by="sam", via="page")

    b, _ = engine_at(tmp_path / "state.json", A1_EMPTY, HELP)  # restored acked
    help_id = next(x["alert_id"] for x in b.active() if x["rule"] == "kiosk-help")
    b.ack(help_id, by="cloud", via="mqtt")  # acked before the hook is there
    seen: list[dict] = []
    b.on_ack.append(seen.append)
    b.on_ack.append(lambda x: 1 / 0)  # a failing hook stops neither the others nor the engine
    for t in (0.0, 1.0, 2.0):
        b.update({("facing_empty", "A1"): True, H: True}, t, NOON + t)
    assert sorted((x["alert_id"], x["acked_by"], x["state"]) for x in seen) == \
        sorted([(facing_id, "sam", "acked"), (help_id, "cloud", "acked")])


def test_a_state_file_that_could_not_be_saved_is_saved_once_the_disk_has_room(tmp_path):
    """A save that failed (disk full, here: the folder is a file) leaves an older state on disk; it is saved again
    while the alerts run, so a restart after the disk was freed continues the alert opened meanwhile."""
    folder = tmp_path / "data"
    folder.write_text("not a folder")
    a, sink = engine_at(folder / "alert-state.json", HELP)
    a.update({H: True}, 0.0, NOON)
    (alert_id,) = [x["alert_id"] for x in a.active()]
    folder.unlink()
    folder.mkdir()  # the disk has room again; no transition follows
    for t in range(1, 15):
        a.update({H: True}, float(t), NOON + t)
    b, sink_b = engine_at(folder / "alert-state.json", HELP)
    assert [x["alert_id"] for x in b.active()] == [alert_id]


def test_a_state_file_with_an_infinite_cooldown_is_damaged(tmp_path):
    """The engine never writes an infinity: a file with one is moved aside, not a cooldown that silences the rule
    for good (and that no save could write back)."""
    path = tmp_path / "alert-state.json"
    path.write_text('{"v": 1, "saved_at": %f, "cooldowns": {"kiosk-help": Infinity}}' % NOON)
    a, sink = engine_at(path, HELP)
    assert list(tmp_path.glob("alert-state.json.damaged-*"))
    a.update({H: True}, 0.0, NOON)
    assert [e.kind for e in sink.events] == ["alert_opened"]
    assert engine_at(path, HELP)[0].active() != []  # and it was saved
