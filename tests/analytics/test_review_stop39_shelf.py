"""Review of the shelf facings (stop 39): defects a store would hit, each shown on real OpenCV images of the
procedural shelf (facings_helpers) before it was fixed."""
from __future__ import annotations

import json

import pytest
from facings_helpers import Clock, boxes, planogram, shelf, states

PERSON = (40.0, 90.0, 210.0, 480.0)  # in front of A1/A2, B1/B2, C1/C2 (as in test_facings.py)


def _five_points(poly: list) -> list:
    """The same rectangle with one more vertex (the middle of its top edge)."""
    (x0, y0), (x1, _), (_, y1) = poly[0], poly[1], poly[2]
    return [[x0, y0], [(x0 + x1) / 2, y0], [x1, y0], [x1, y1], [x0, y1]]


def test_restart_after_a_facing_polygon_gained_a_vertex_keeps_the_other_references(tmp_path):
    """Guards: after a planogram edit that gave one facing's polygon another vertex, the first frame after the
    restart raised (numpy could not compare the stored 4-point polygon with the new 5-point one), so no stored
    reference was loaded and every facing, empty ones included, was retaken as full at the next clear view."""
    s = shelf(reference_dir=str(tmp_path))
    Clock(s).run(3.0)
    assert all(f.has_reference for f in s.facings.values())
    edited = [{**f, "polygon": _five_points(f["polygon"])} if f["id"] == "A1" else f for f in planogram()["facings"]]
    again = shelf(reference_dir=str(tmp_path), facings=edited)
    c = Clock(again)
    ev = c.run(2.0, counts={"B3": (0, 0)})  # B3 was emptied while the device was off
    assert [e.data["facing"] for e in ev if e.kind == "facing_reference"] == ["A1"]  # only the edited facing
    ev = c.run(4.0, counts={"B3": (0, 0)})
    assert ("B3", "empty") in states(c.events) and again.facings["B3"].state == "empty"


def test_unreadable_stored_facing_entries_are_retaken_not_a_crash(tmp_path):
    """Guards: a reference.json whose facing entry lacks its polygon (hand-edited, written by a broken tool) made
    every frame's first update raise instead of retaking that facing."""
    s = shelf(reference_dir=str(tmp_path))
    Clock(s).run(3.0)
    meta = json.loads((tmp_path / "reference.json").read_text())
    del meta["facings"]["A1"]["polygon"]
    meta["facings"]["A2"]["polygon"] = "not a polygon"
    (tmp_path / "reference.json").write_text(json.dumps(meta))
    again = shelf(reference_dir=str(tmp_path))
    ev = Clock(again).run(2.0)
    assert sorted(e.data["facing"] for e in ev if e.kind == "facing_reference") == ["A1", "A2"]
    assert all(f.has_reference for f in again.facings.values())


@pytest.mark.parametrize("damage", [[1, 2, 3], {"size": 7}, {"panel_lab": [1, 2]}], ids=["list", "size", "panel"])
def test_a_damaged_reference_json_is_retaken_not_a_crash(tmp_path, damage):
    """Guards: a reference.json whose top level is not an object, whose size is not a list or whose back-panel
    colour is not 3 numbers raised on the first frame (a frame error: nothing measured) instead of being treated
    like an unreadable file: the view and every facing are taken afresh."""
    s = shelf(reference_dir=str(tmp_path))
    Clock(s).run(3.0)
    meta = json.loads((tmp_path / "reference.json").read_text())
    (tmp_path / "reference.json").write_text(json.dumps(damage if isinstance(damage, list) else {**meta, **damage}))
    again = shelf(reference_dir=str(tmp_path))
    ev = Clock(again).run(3.0)
    assert sorted(e.data["facing"] for e in ev if e.kind == "facing_reference") == sorted(again.facings)
    assert all(f.has_reference for f in again.facings.values())

def test_ack_of_a_low_alert_does_not_learn_the_low_facing_as_reference():
    """Guards: for a facing whose alert_on includes "low" (the shipped shelf-camera.toml's A2), acknowledging its
    facing_empty alert on the way to the stock room retook the reference at once, because a low facing 'no longer
    looks empty': the half-stocked shelf became the full reference and the alert cleared without a restock."""
    s = shelf(facings=[{**f, "alert_on": ["empty", "low"]} if f["id"] == "A2" else f
                       for f in planogram()["facings"]])
    c = Clock(s)
    c.run(2.0)
    c.run(5.0, counts={"A2": (1, 0)})
    assert s.facings["A2"].state == "low" and s.facings["A2"].needs_action is True
    s.retake_reference("A2", when="restocked", by="sam", via="ack")
    ev = c.run(4.0, counts={"A2": (1, 0)})  # still low: staff are in the stock room
    assert [e for e in ev if e.kind == "facing_reference"] == []
    assert s.facings["A2"].pending_reference == "restocked" and s.facings["A2"].state == "low"
    ev = c.run(2.0, counts={"A2": (4, 1)})  # restocked: now it is retaken
    assert [e.data["reason"] for e in ev if e.kind == "facing_reference"] == ["restocked"]
    assert states(ev) == [("A2", "full")]


def test_reference_retaken_event_carries_the_new_measurement():
    """Guards: a facing emptied, restocked by staff standing in front of it and then retaken by the button was
    reported `full` (reason "reference retaken") with the cues of its last measurement before the restock (fill
    0.0): the event, and the staff page's fill, said an empty facing was full."""
    s = shelf()
    c = Clock(s)
    c.run(2.0)
    c.run(5.0, counts={"A1": (0, 0)})
    assert s.facings["A1"].state == "empty"
    s.retake_reference("A1", by="sam", via="page")
    c.run(1.0, boxes(PERSON), person=PERSON, counts={"A1": (4, 1)})  # restocking, in front of the facing
    ev = c.run(2.0, counts={"A1": (4, 1)})
    full = [e for e in ev if e.kind == "facing_state" and e.data["facing"] == "A1"]
    assert [(e.data["state"], e.data["reason"]) for e in full] == [("full", "reference retaken")]
    assert full[0].data["cues"]["fill"] >= 0.95 and full[0].data["cues"]["ssim"] > 0.9


def test_retake_of_every_facing_asked_before_the_first_frame_survives_the_stored_reference(tmp_path):
    """Guards: a retake of every facing asked between start and the first frame (the staff button, a queued
    shelf_reference command) lost its whole-view part when the stored references loaded: with the camera moved
    while the device was off, the device stayed `camera moved` with every facing unknown instead of accepting the
    new view as it does without a restart."""
    s = shelf(reference_dir=str(tmp_path))
    Clock(s).run(3.0)
    again = shelf(reference_dir=str(tmp_path))
    assert sorted(again.retake_reference(None, by="hq", via="mqtt")) == sorted(again.facings)
    c = Clock(again)
    ev = c.run(4.0, camera=(16.0, -10.0, 1.5))  # bumped while the device was off
    assert not again.camera_moved and [e.data["moved"] for e in ev if e.kind == "camera_moved"] == []
    refs = [e for e in ev if e.kind == "facing_reference"]
    assert len(refs) == len(again.facings) and {(e.data["reason"], e.data["by"]) for e in refs} == {("now", "hq")}
    assert all(f.state == "full" for f in again.facings.values())


def test_time_without_frames_does_not_count_towards_persistence():
    """Guards: a facing emptied 1 s before a 60 s camera outage (persistence 2 s) was reported empty on the first
    frame after it: the 60 s without frames counted as 60 s of clear view of the empty facing."""
    s = shelf()
    c = Clock(s)
    c.run(3.0)
    c.run(1.0, counts={"B3": (0, 0)})
    assert s.facings["B3"].state == "full"
    c.t += 60.0  # no frame for a minute
    c.run(1.0, counts={"B3": (0, 0)})
    assert s.facings["B3"].state == "full", "the outage counted as clear view"
    c.run(3.0, counts={"B3": (0, 0)})
    assert s.facings["B3"].state == "empty"


def test_a_view_that_never_aligns_nor_settles_makes_the_facings_unknown():
    """Guards: a shaking camera (the view never aligns with the reference and is never still, so `camera_moved`
    is never raised) kept every facing's last state for good; the states go unknown after unknown_after_s."""
    s = shelf(unknown_after_s=3.0)
    c = Clock(s)
    c.run(3.0)
    assert {f.state for f in s.facings.values()} == {"full"}
    for k in range(25):  # 5 s of a camera swinging 30 px from frame to frame
        c.run(0.2, camera=(30.0 if k % 2 else -30.0, 0.0, 0.0))
    assert not s.camera_moved
    assert {f.state for f in s.facings.values()} == {"unknown"}


def test_the_shelf_camera_demo_shows_a_still_shelf_not_a_moved_camera(repo, tmp_path, running):
    """`edge run --config device_configs/shelf-camera.toml` on its built-in demo: the scene was a swaying photo
    filling the frame, so 8 s in the facings' alignment called it a moved camera and a first-time user's staff page
    opened "Shelf camera moved". The demo is a still shelf with shoppers in front: a full cycle of its people (two
    clips) passes with the reference taken and no camera_moved."""
    from edge.app.config import load_config

    cfg = load_config(repo / "device_configs" / "shelf-camera.toml")
    cfg.source.realtime = False
    cfg.sync.outbox_path = str(tmp_path / "outbox.sqlite")
    cfg.decisions.path = str(tmp_path / "decisions")
    cfg.analytics.planogram.reference_dir = str(tmp_path / "shelf")
    with running(cfg, frames=900, timeout=240) as (rt, _):
        (stage,) = [rt.stage.behaviour]
        planogram = next(iter(stage.analytics.planograms.values()))
        assert rt.frames >= 900, f"only {rt.frames} frames in 240 s"
        assert all(f.has_reference for f in planogram.facings.values()), (
            planogram._ref_bgr is not None, planogram.alignment, {k: (f.state, f.occluded, f._stable) for k, f in planogram.facings.items()})
        assert not planogram.camera_moved, planogram.alignment.reason
