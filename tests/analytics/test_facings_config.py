"""[analytics.planogram] validation: every error names the key to fix."""
from __future__ import annotations

import tomllib

import pytest
from pydantic import ValidationError

from edge.analytics.config import AnalyticsConfig, FrameConfigError

A = [[20, 30], [120, 30], [120, 160], [20, 160]]
B = [[120, 30], [220, 30], [220, 160], [120, 160]]  # shares A's right edge: touching is fine


def facing(fid: str, poly=A, **kw) -> dict:
    return {"id": fid, "sku": f"sku-{fid}", "polygon": poly, **kw}


def errors(planogram: dict) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as e:
        AnalyticsConfig.model_validate({"planogram": planogram})
    return [(".".join(str(p) for p in err["loc"]), err["msg"]) for err in e.value.errors()]


TOML = """
[analytics.planogram]
camera = "aisle-3"
persistence_s = 20
back_panel_color = "#C0B4A8"

[analytics.planogram.alignment]
max_shift_px = 12

[[analytics.planogram.facings]]
id = "A1"
sku = "4006381333931"
polygon = [[20, 30], [120, 30], [120, 160], [20, 160]]

[[analytics.planogram.facings]]
id = "A2"
sku = "4006381333948"
polygon = [[120, 30], [220, 30], [220, 160], [120, 160]]
alert_on = ["empty", "low"]
low_below = 0.5
persistence_s = 60
"""


def test_toml_example_parses_with_defaults():
    cfg = AnalyticsConfig.model_validate(tomllib.loads(TOML)["analytics"])
    p = cfg.planogram
    assert p.camera == "aisle-3" and p.alignment.max_shift_px == 12 and p.alignment.min_correlation == 0.6
    assert [f.id for f in p.facings] == ["A1", "A2"] and p.facings[0].alert_on == ["empty"]
    assert p.facings[1].alert_on == ["empty", "low"] and p.facings[1].persistence_s == 60
    assert p.stable_frames == 5 and p.facings[0].low_below == 0.7 and p.facings[0].empty_below == 0.15
    assert cfg.alert_keys() == {"shelf": ["A1", "A2"], "camera": ["aisle-3"]}
    cfg.validate_frame(640, 480)
    assert AnalyticsConfig().alert_keys() == {"shelf": [], "camera": []}


def test_overlapping_facings_name_both_keys():
    [(key, msg)] = errors({"facings": [facing("A1"), facing("A2", [[100, 30], [220, 30], [220, 160], [100, 160]])]})
    assert key == "planogram.facings"
    assert "facings.1.polygon (facing 'A2') overlaps facings.0.polygon (facing 'A1')" in msg and "px²" in msg
    AnalyticsConfig.model_validate({"planogram": {"facings": [facing("A1"), facing("A2", B)]}})  # touching: ok


def test_duplicate_and_reserved_ids():
    [(key, msg)] = errors({"facings": [facing("A1"), facing("A1", B)]})
    assert key == "planogram.facings" and "facings.1.id 'A1' is already used by facings.0" in msg
    [(key, msg)] = errors({"facings": [facing("all")]})
    assert key == "planogram.facings.0.id" and "reserved" in msg


@pytest.mark.parametrize("extra, key, words", [
    ({"alert_on": ["gone"]}, "planogram.facings.0.alert_on.0", "'empty' or 'low'"),
    ({"alert_on": ["low", "low"]}, "planogram.facings.0.alert_on", "twice"),
    ({"empty_below": 0.5, "low_below": 0.5}, "planogram.facings.0", "empty_below + hysteresis < low_below"),
    ({"polygon": [[0, 0], [10, 0]]}, "planogram.facings.0.polygon", "at least 3 points"),
    ({"sku": ""}, "planogram.facings.0.sku", "at least 1 character"),
    ({"treshold": 3}, "planogram.facings.0.treshold", "Extra inputs"),
])
def test_facing_errors_name_the_key(extra, key, words):
    [(loc, msg)] = errors({"facings": [facing("A1", **extra)]})
    assert loc == key and words in msg


def test_planogram_errors_name_the_key():
    assert errors({"back_panel_color": "grey"})[0][0] == "planogram.back_panel_color"
    assert errors({"alignment": {"max_shift_px": 0}})[0][0] == "planogram.alignment.max_shift_px"
    assert errors({"camera": "aisle 3"})[0][0] == "planogram.camera"
    assert errors({"stable_frames": 0})[0][0] == "planogram.stable_frames"


def test_polygons_outside_the_frame_name_the_key():
    cfg = AnalyticsConfig.model_validate({"planogram": {
        "back_panel_region": [[0, 0], [700, 0], [700, 10]],
        "facings": [facing("A1"), facing("A2", [[600, 30], [700, 30], [700, 160], [600, 160]])]}})
    with pytest.raises(FrameConfigError) as e:
        cfg.validate_frame(640, 480)
    assert e.value.problems == [
        "analytics.planogram.facings.1.polygon: point 1 [700, 30] is outside the 640x480 frame ([source] "
        "width/height) (2 points) (fix: use frame pixels of the configured size)",
        "analytics.planogram.back_panel_region: point 1 [700, 0] is outside the 640x480 frame ([source] "
        "width/height) (2 points) (fix: use frame pixels of the configured size)",
    ]
    cfg.validate_frame(800, 600)
