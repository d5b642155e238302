"""Shelf references on disk hold the facings and nothing else (a shopper no detector found, anywhere else in the
view, is never written), they are not written at all when nothing masks people, and `edge data purge` removes them.
Real OpenCV images of the procedural shelf (facings_helpers)."""
from __future__ import annotations

import logging
import time

import cv2
import numpy as np

from edge.core.frames import Frame

from facings_helpers import Clock, boxes, image, planogram, shelf, states

# an undetected shopper, still, where no facing is: on the shelf edge between rows A and B and down the left border
SHOPPER = (slice(165, 186), slice(250, 420))
FAR_AWAY = (slice(30, 470), slice(0, 18))


def with_shopper(img: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng(7)
    out = img.copy()
    for sl in (SHOPPER, FAR_AWAY):
        h, w = out[sl].shape[:2]
        out[sl] = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    return out


def feed(s, seconds: float, t0: float = 0.0, dets=None, **frame) -> tuple[list, float]:
    ev, t = [], t0
    for k in range(int(round(seconds * 5))):
        ev += s.update(dets if dets is not None else boxes(), t, 1_790_000_000.0 + t,
                       image=with_shopper(image(i=k, **frame)))
        t += 0.2
    return ev, t


def kept_mask(margin: int = 8) -> np.ndarray:
    """Pixels a stored reference may hold: each facing's polygon grown by the margin, within its bounding box."""
    out = np.zeros((480, 640), bool)
    for f in planogram()["facings"]:
        p = np.asarray(f["polygon"], np.float64)
        x0, y0 = int(np.floor(p[:, 0].min())), int(np.floor(p[:, 1].min()))
        x1, y1 = int(np.ceil(p[:, 0].max())), int(np.ceil(p[:, 1].max()))
        m = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillPoly(m, [np.round((p - (x0, y0)) * 16).astype(np.int32)], 1, shift=4)
        out[y0:y1, x0:x1] |= cv2.dilate(m, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)) > 0
    return out


def test_stored_reference_holds_only_the_facings(tmp_path):
    s = shelf(reference_dir=str(tmp_path))
    ev, _ = feed(s, 3.0)
    assert [e.data["stored"] for e in ev if e.kind == "facing_reference"] == [True] * len(s.facings)
    saved = cv2.imread(str(tmp_path / "reference.png"))
    valid = cv2.imread(str(tmp_path / "valid.png"), cv2.IMREAD_GRAYSCALE)
    assert saved is not None and valid is not None
    assert not saved[SHOPPER].any() and not saved[FAR_AWAY].any()  # the undetected shopper is not on disk
    outside = ~kept_mask()
    assert not saved[outside].any() and not valid[outside].any()  # nothing but the facings (and a margin)
    frame = with_shopper(image(i=0)).astype(np.int16)
    inside = ~outside & (valid > 127)
    assert inside.mean() > 0.5 and np.abs(saved[inside].astype(np.int16) - frame[inside]).mean() < 8  # the shelf


def test_reloaded_reference_judges_and_aligns_without_the_rest_of_the_view(tmp_path):
    feed(shelf(reference_dir=str(tmp_path)), 3.0)
    # restart: the facings are judged from disk (not retaken), the shelf around them is learnt again in memory
    again = shelf(reference_dir=str(tmp_path))
    ev, t = feed(again, 4.0)
    assert [e for e in ev if e.kind == "facing_reference"] == [] and again.alignment.ok
    assert all(f.has_reference and f.state == "full" for f in again.facings.values())
    ev, t = feed(again, 5.0, t, counts={"B4": (0, 0)})
    assert states(ev) == [("B4", "empty")]
    # restart with the camera drifted a little: aligned on the stored facings, measured through the warp
    drifted = shelf(reference_dir=str(tmp_path))
    ev, t = feed(drifted, 6.0, camera=(3.0, -2.0, 0.3))
    assert [e for e in ev if e.kind in ("facing_reference", "camera_moved")] == []
    assert drifted.alignment.ok and 2.5 < drifted.alignment.shift_px < 5.0
    ev, t = feed(drifted, 5.0, t, camera=(3.0, -2.0, 0.3), counts={"B4": (0, 0)})
    assert states(ev) == [("B4", "empty")]
    # restart with the camera bumped while the device was off: a moved camera, every facing unknown
    bumped = shelf(reference_dir=str(tmp_path))
    c = Clock(bumped)
    ev = c.run(3.0, camera=(16.0, -10.0, 1.5))
    assert [e.data["moved"] for e in ev if e.kind == "camera_moved"] == [True]
    assert all(f.state == "unknown" for f in bumped.facings.values())
    ev = c.run(6.0)  # put back
    assert [e.data["moved"] for e in ev if e.kind == "camera_moved"] == [False]
    assert all(f.state == "full" for f in bumped.facings.values())


def behaviour(tmp_path, detector=None):
    from edge.alerts import AlertEngine, AlertsConfig
    from edge.analytics.composer import Analytics
    from edge.analytics.config import AnalyticsConfig
    from edge.app.behaviour import BehaviourStage
    from edge.core.events import ListSink

    sink = ListSink()
    acfg = AnalyticsConfig.model_validate({"tracker": {"enabled": False},
                                          "planogram": planogram(reference_dir=str(tmp_path))})
    return BehaviourStage(Analytics.from_config(acfg, sink, source="aisle-cam"),
                          AlertEngine(AlertsConfig.model_validate({"rules": []}), sink), detector=detector), sink


def run_stage(st, seconds: float) -> None:
    for k in range(int(round(seconds * 5))):
        t = k / 5
        st.process(Frame(with_shopper(image(i=k)), k, 0.0, 1_790_000_000.0 + t, "aisle-cam", t_media=t), None)


def test_without_a_person_detector_or_pose_references_stay_in_memory(tmp_path, caplog):
    st, sink = behaviour(tmp_path)
    with caplog.at_level(logging.INFO):
        run_stage(st, 3.0)
    shelf_ = st.analytics.planograms["aisle-1"]
    assert all(f.has_reference and f.state == "full" for f in shelf_.facings.values())  # judged in memory
    refs = [e.data for e in sink.events if e.kind == "facing_reference"]
    assert len(refs) == len(shelf_.facings) and not any(r["stored"] for r in refs)  # the event says so
    assert list(tmp_path.iterdir()) == []  # nothing written
    assert shelf_.not_persisted and "in memory only" in caplog.text
    # with a person detector the same stage writes them
    st2, sink2 = behaviour(tmp_path / "with-detector", detector=lambda frame: boxes())
    run_stage(st2, 3.0)
    assert (tmp_path / "with-detector" / "reference.png").exists()
    assert all(e.data["stored"] for e in sink2.events if e.kind == "facing_reference")


def test_a_reference_that_cannot_be_written_is_reported_as_not_stored(tmp_path, caplog):
    blocked = tmp_path / "refs"
    blocked.write_text("a file where the reference folder should be")
    s = shelf(reference_dir=str(blocked))
    with caplog.at_level(logging.WARNING):
        ev, _ = feed(s, 3.0)
    refs = [e.data for e in ev if e.kind == "facing_reference"]
    assert len(refs) == len(s.facings) and not any(r["stored"] for r in refs)
    assert all(f.has_reference for f in s.facings.values())  # still judged, from memory
    assert "could not save the reference" in caplog.text


def purge_config(repo, tmp_path):
    from edge.app.config import load_config

    text = (repo / "device_configs" / "shelf-camera.toml").read_text()
    text = text.replace('broker = ""', f'broker = ""\noutbox_path = "{tmp_path / "outbox.sqlite"}"')
    text = text.replace("[analytics.planogram]", f'[analytics.planogram]\nreference_dir = "{tmp_path / "refs"}"', 1)
    p = tmp_path / "shelf.toml"
    p.write_text(text)
    return load_config(p)


def test_purge_removes_shelf_references(repo, tmp_path):
    from edge.app.data_cli import purge

    cfg = purge_config(repo, tmp_path)
    assert cfg.analytics.planogram.facings
    feed(shelf(reference_dir=str(tmp_path / "refs")), 3.0)
    assert (tmp_path / "refs" / "reference.png").exists()
    dry = purge(cfg, all_=True, dry_run=True)
    assert dry["shelf_references"] == 1 and (tmp_path / "refs" / "reference.png").exists()
    kept = purge(cfg, older_than="2d")  # a reference saved just now is younger than the cutoff
    assert kept["shelf_references"] == 0 and (tmp_path / "refs" / "reference.png").exists()
    counts = purge(cfg)  # the plain purge removes them too: they are retaken at the next clear view
    assert counts["shelf_references"] == 1
    assert not any((tmp_path / "refs" / n).exists() for n in ("reference.png", "valid.png", "reference.json"))
    assert purge(cfg, all_=True)["shelf_references"] == 0
    # retaken at the next clear view
    s = shelf(reference_dir=str(tmp_path / "refs"))
    ev, _ = feed(s, 3.0)
    assert {e.data["reason"] for e in ev if e.kind == "facing_reference"} == {"startup"}
    assert (tmp_path / "refs" / "reference.png").exists()
    assert time.time() - (tmp_path / "refs" / "reference.png").stat().st_mtime < 60


def test_a_whole_view_reference_of_an_older_version_is_rewritten_with_the_facings_only(tmp_path):
    import json

    feed(shelf(reference_dir=str(tmp_path)), 3.0)
    meta = json.loads((tmp_path / "reference.json").read_text())
    meta["v"] = 1
    meta.pop("panel_lab")
    (tmp_path / "reference.json").write_text(json.dumps(meta))
    cv2.imwrite(str(tmp_path / "reference.png"), with_shopper(image(i=0)))  # what version 1 stored: the view
    cv2.imwrite(str(tmp_path / "valid.png"), np.full((480, 640), 255, np.uint8))
    again = shelf(reference_dir=str(tmp_path))
    ev, _ = feed(again, 4.0)
    assert [e for e in ev if e.kind == "facing_reference"] == []  # loaded, not retaken
    assert all(f.has_reference and f.state == "full" for f in again.facings.values())
    saved = cv2.imread(str(tmp_path / "reference.png"))
    assert not saved[SHOPPER].any() and not saved[~kept_mask()].any()
    assert json.loads((tmp_path / "reference.json").read_text())["v"] == 2
