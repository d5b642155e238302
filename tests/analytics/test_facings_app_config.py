"""Shelf facings through the device config loader (edge/app/config.py): planogram errors name the file, the full key
and the fix, for the main camera and each [[cameras]] entry; facing_empty / camera_moved rules validate against
the facings of their own camera; a config with only facings runs the behaviour stage; the shipped shelf-camera
config has a valid planogram."""
from __future__ import annotations

import subprocess
import sys

import pytest

from edge.app.config import ConfigError, has_analytics, load_config
from edge.app.runner import main_has_analytics, wants_behaviour

HEAD = """
[device]
id = "shelf-09"
store = "s001"
kind = "shelf-camera"

[source]
type = "demo"
width = {width}
height = {height}
"""

A1 = [[21, 28], [119, 28], [119, 163], [21, 163]]
A2 = [[121, 28], [219, 28], [219, 163], [121, 163]]  # touches A1
OVER_A1 = [[100, 28], [200, 28], [200, 163], [100, 163]]  # overlaps A1 by 19 x 135 px
OUTSIDE = [[560, 28], [660, 28], [660, 163], [560, 163]]  # x 660 is outside a 640 px frame
RIGHT = [[250, 28], [350, 28], [350, 163], [250, 163]]  # x 350 is outside a 320 px frame


def facing(table: str, fid: str, polygon, sku: str = "4006381333931") -> str:
    return f'\n[[{table}.planogram.facings]]\nid = "{fid}"\nsku = "{sku}"\npolygon = {polygon}\n'


def camera(cid: str, body: str = "") -> str:
    return f'\n[[cameras]]\nid = "{cid}"\n[cameras.source]\ntype = "video"\nuri = "/dev/null/{cid}.avi"\n{body}'


def rule(table: str, rid: str, metric: str, key: str) -> str:
    return f'\n[[{table}.rules]]\nid = "{rid}"\nmetric = "{metric}"\nkey = "{key}"\n'


DETECTOR = '\n[models.person_detector]\nname = "nanodet_m_416"\n'


def write(tmp_path, text: str, width: int = 640, height: int = 480):
    p = tmp_path / "device.toml"
    p.write_text(HEAD.format(width=width, height=height) + text)
    return p


def problems(path) -> list[str]:
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert all(line.startswith(f"{path}: ") for line in str(e.value).splitlines())  # every line names the file
    return e.value.problems


def test_overlapping_facings_name_the_full_key(tmp_path):
    p = write(tmp_path, DETECTOR + camera("aisle-2", facing("cameras.analytics", "A1", A1)
                                          + facing("cameras.analytics", "A2", OVER_A1))
              + camera("aisle-3", facing("cameras.analytics", "B1", A1) + facing("cameras.analytics", "B2", A2)
                       + facing("cameras.analytics", "B3", OVER_A1)))
    [p0, p1] = problems(p)
    assert p0.startswith("cameras.0.analytics.planogram.facings.1.polygon: (facing 'A2') overlaps "
                         "cameras.0.analytics.planogram.facings.0.polygon (facing 'A1') by about "), p0
    assert p1.startswith("cameras.1.analytics.planogram.facings.2.polygon: (facing 'B3') overlaps "
                         "cameras.1.analytics.planogram.facings.0.polygon (facing 'B1')"), p1
    assert all(q.endswith("(fix: move the shared edge so the polygons only touch)") for q in (p0, p1))


def test_polygons_outside_the_frame_are_errors_of_their_camera(tmp_path):
    """The frame size comes from each stream's source config: 640x480 fits the main camera's facings, a 320x240
    camera does not fit a polygon to x 350."""
    p = write(tmp_path, facing("analytics", "A1", A1) + facing("analytics", "A9", OUTSIDE) + DETECTOR
              + camera("aisle-2", 'width = 320\nheight = 240\n' + facing("cameras.analytics", "B1", A1)
                       + facing("cameras.analytics", "B2", RIGHT)))
    assert problems(p) == [
        "analytics.planogram.facings.1.polygon: point 1 [660, 28] is outside the 640x480 frame ([source] "
        "width/height) (2 points) (fix: use frame pixels of the configured size)",
        "cameras.0.analytics.planogram.facings.1.polygon: point 1 [350, 28] is outside the 320x240 frame "
        "(cameras.0.source width/height) (2 points) (fix: use frame pixels of the configured size)",
    ]
    # the same planogram on a larger main frame is fine
    p = write(tmp_path, facing("analytics", "A1", A1) + facing("analytics", "A9", OUTSIDE), width=800, height=600)
    assert [f.id for f in load_config(p).analytics.planogram.facings] == ["A1", "A9"]


def test_duplicate_facing_ids_name_both_keys(tmp_path):
    p = write(tmp_path, facing("analytics", "A1", A1) + facing("analytics", "A1", A2))
    assert problems(p) == ["analytics.planogram.facings.1.id: 'A1' is already used by analytics.planogram.facings.0;"
                           " facing ids must be unique (fix: rename one of them)"]
    # across cameras too: the staff page's Retake button and shelf_reference name a facing by its id alone
    p = write(tmp_path, facing("analytics", "A1", A1) + DETECTOR
              + camera("aisle-2", facing("cameras.analytics", "A1", A1)))
    [msg] = problems(p)
    assert msg.startswith("cameras.0.analytics.planogram.facings.0.id: facing 'A1' is already "
                          "analytics.planogram.facings.0.id (fix: "), msg


def test_planogram_cameras_default_to_the_camera_id_and_must_differ(tmp_path):
    p = write(tmp_path, facing("analytics", "A1", A1) + DETECTOR
              + camera("aisle-2", facing("cameras.analytics", "B1", A1))
              + camera("aisle-3", facing("cameras.analytics", "C1", A1)))
    cfg = load_config(p)
    assert [cfg.analytics.planogram.camera] + [c.analytics.planogram.camera for c in cfg.cameras] == \
        ["shelf", "aisle-2", "aisle-3"]
    p = write(tmp_path, facing("analytics", "A1", A1) + DETECTOR
              + camera("aisle-2", '[cameras.analytics.planogram]\ncamera = "shelf"\n'
                       + facing("cameras.analytics", "B1", A1)))
    [msg] = problems(p)
    assert msg.startswith("cameras.0.analytics.planogram.camera: 'shelf' is already the camera of "
                          "analytics.planogram.camera (fix: "), msg


def test_facing_rules_validate_against_their_own_camera(tmp_path):
    main = facing("analytics", "A1", A1) + facing("analytics", "A2", A2) + '\n[[analytics.shelves]]\n' \
        f'name = "low_shelf"\npolygon = {A1}\n'
    cam = facing("cameras.analytics", "B1", A1) + rule("cameras.alerts", "b1", "facing_empty", "B1") \
        + rule("cameras.alerts", "moved", "camera_moved", "aisle-2")
    ok = main + rule("alerts", "a1", "facing_empty", "A1") + rule("alerts", "moved", "camera_moved", "shelf")
    cfg = load_config(write(tmp_path, ok + DETECTOR + camera("aisle-2", cam)))
    assert [r.key for r in cfg.alerts.rules] == ["A1", "shelf"]
    assert [r.key for r in cfg.cameras[0].alerts.rules] == ["B1", "aisle-2"]
    assert cfg.analytics_names()["shelf"] == ["A1", "A2"] and cfg.analytics_names()["camera"] == ["shelf"]

    bad = main + rule("alerts", "b1", "facing_empty", "B1") + rule("alerts", "hands", "facing_empty", "low_shelf") \
        + DETECTOR + camera("aisle-2", facing("cameras.analytics", "B1", A1)
                            + rule("cameras.alerts", "moved", "camera_moved", "shelf"))
    assert problems(write(tmp_path, bad)) == [
        "alerts.rules.0.key: shelf 'B1' of rule 'b1' is not defined on this device (fix: use one of: A1, A2)",
        # [[analytics.shelves]] (hand interactions) feed no metric: a facing_empty rule on one would never fire
        "alerts.rules.1.key: shelf 'low_shelf' of rule 'hands' is not defined on this device (fix: use one of: "
        "A1, A2)",
        "cameras.0.alerts.rules.0.key: camera 'shelf' of rule 'moved' is not defined on this device (fix: use one "
        "of: aisle-2)",
    ]


def test_a_config_with_only_facings_runs_the_behaviour_stage(tmp_path):
    cfg = load_config(write(tmp_path, facing("analytics", "A1", A1)))
    assert has_analytics(cfg.analytics) and main_has_analytics(cfg) and wants_behaviour(cfg)
    cfg = load_config(write(tmp_path, '\n[analytics]\nenabled = false\n' + facing("analytics", "A1", A1)))
    assert not main_has_analytics(cfg) and not wants_behaviour(cfg)
    cfg = load_config(write(tmp_path, ""))
    assert not main_has_analytics(cfg) and not wants_behaviour(cfg)


def test_shipped_shelf_camera_config_has_a_valid_planogram(repo):
    path = repo / "device_configs" / "shelf-camera.toml"
    cfg = load_config(path)
    p = cfg.analytics.planogram
    assert len(p.facings) >= 2 and all(f.id and f.sku and f.alert_on is not None for f in p.facings)
    assert cfg.source.type == "demo" and not p.frame_problems(cfg.source.width, cfg.source.height)
    rules = {r.key: r for r in cfg.alerts.rules if r.metric == "facing_empty"}
    assert rules["A1"].for_s == 300 and rules["A2"].for_s == 120
    assert {f.id for f in p.facings if f.alert_on} == set(rules)  # every facing that can need action can alert
    assert main_has_analytics(cfg)
    r = subprocess.run([sys.executable, "-m", "edge.app.cli", "config", "check", str(path)], capture_output=True,
                       text=True)
    assert r.returncode == 0 and f"{path}: ok" in r.stdout, r.stderr


def test_config_check_names_file_key_and_fix(tmp_path):
    p = write(tmp_path, facing("analytics", "A1", A1) + facing("analytics", "A9", OUTSIDE))
    r = subprocess.run([sys.executable, "-m", "edge.app.cli", "config", "check", str(p)], capture_output=True,
                       text=True)
    assert r.returncode == 1
    assert f"{p}: analytics.planogram.facings.1.polygon: point 1 [660, 28] is outside the 640x480 frame" in r.stderr
    assert "(fix: use frame pixels of the configured size)" in r.stderr
