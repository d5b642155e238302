"""Settings that would silently switch an analytics feature or an alert rule off are config errors that name the
key, the bad value and the fix: geometry outside the source's frame, nan / inf coordinates and thresholds, a kiosk
whose staff zone is the kiosk zone, a handover window too short to ever hand over."""
from __future__ import annotations

import tomllib

import pytest

from analytics_helpers import tracked
from edge.analytics.config import AnalyticsConfig, FrameConfigError
from edge.analytics.zones import HANDOVER_STOOD_S, PolygonZone
from edge.app.config import ConfigError, parse_config

HEAD = """
[device]
id = "dev-1"
store = "s001"
kind = "kiosk"

[source]
type = "demo"
width = {width}
height = {height}
"""
SQUARE = "[[200, 300], [400, 300], [400, 478], [200, 478]]"
ZONE = f'[[analytics.zones]]\nname = "kiosk"\npolygon = {SQUARE}\n'


def problems(body: str, width: int = 640, height: int = 480) -> list[str]:
    """The ConfigError problems of a device config (TOML, so nan / inf come as TOML writes them)."""
    with pytest.raises(ConfigError) as e:
        parse_config(tomllib.loads(HEAD.format(width=width, height=height) + body), "dev.toml")
    return e.value.problems


def check(p: str, key: str, text: str) -> None:
    """p is `key: [Value error, ]message` with message starting with text."""
    got_key, msg = p.split(": ", 1)
    assert got_key == key, p
    assert msg.removeprefix("Value error, ").startswith(text), p
    assert "(fix:" in msg, p


def valid(body: str, width: int = 640, height: int = 480):
    return parse_config(tomllib.loads(HEAD.format(width=width, height=height) + body), "dev.toml")


# --- geometry against the frame -----------------------------------------------------------------------------------

def test_a_zone_drawn_for_a_bigger_frame_is_an_error():
    body = '[[analytics.zones]]\nname = "door"\npolygon = [[1000, 600], [1900, 600], [1900, 1000], [1000, 1000]]\n'
    [p] = problems(body)
    assert p.startswith("analytics.zones.0.polygon: zone 'door'")
    assert "1000..1900" in p and "640x480 frame ([source] width/height)" in p and "(fix:" in p
    valid(body, width=1920, height=1080)  # the same zone on the frame it was drawn for


@pytest.mark.parametrize("polygon", [
    "[[600, 400], [700, 400], [700, 520], [600, 520]]",  # partly outside (to the right and below)
    "[[0, 0], [640, 0], [640, 480], [0, 480]]",  # the whole frame, points on the border
    "[[-50, -50], [700, -50], [700, 530], [-50, 530]]",  # around the whole frame
    "[[-100, 200], [100, 200], [-100, 400]]",  # a corner of it reaches in from the left
])
def test_zones_partly_outside_or_on_the_border_are_fine(polygon):
    valid(f'[[analytics.zones]]\nname = "z"\npolygon = {polygon}\n')


def test_a_zone_touching_the_frame_only_from_outside_is_an_error():
    [p] = problems('[[analytics.zones]]\nname = "below"\npolygon = [[0, 480], [640, 480], [640, 600], [0, 600]]\n')
    assert p.startswith("analytics.zones.0.polygon: zone 'below'")


def test_a_shelf_outside_the_frame_is_an_error():
    [p] = problems('[[analytics.shelves]]\nname = "A3"\npolygon = [[700, 10], [800, 10], [800, 90], [700, 90]]\n')
    assert p.startswith("analytics.shelves.0.polygon: shelf 'A3'") and "640x480" in p


@pytest.mark.parametrize("start, end", [
    ("[800, 0]", "[800, 480]"),  # right of the frame
    ("[1000, 700]", "[1900, 900]"),  # drawn on a 1920x1080 frame
    ("[0, 480]", "[640, 480]"),  # along the bottom border: nobody is ever below it
    ("[-100, 100]", "[100, -100]"),  # cuts off only the corner point (0, 0)
])
def test_a_line_that_can_never_be_crossed_is_an_error(start, end):
    [p] = problems(f'[[analytics.lines]]\nname = "door"\nstart = {start}\nend = {end}\n')
    assert p.startswith("analytics.lines.0.start: line 'door'") and "does not pass through the 640x480" in p
    assert "(fix:" in p


@pytest.mark.parametrize("start, end", [
    ("[330, 475]", "[330, 300]"),
    ("[0, 240]", "[640, 240]"),  # both ends on the border
    ("[-200, 240]", "[900, 240]"),  # both ends outside, across the frame
    ("[320, 240]", "[320, 900]"),  # one end outside
])
def test_lines_through_the_frame_are_fine(start, end):
    valid(f'[[analytics.lines]]\nname = "door"\nstart = {start}\nend = {end}\n')


def test_a_queue_head_outside_the_frame_is_an_error():
    body = ZONE + '[[analytics.queues]]\nname = "checkout"\nzone = "kiosk"\nhead = [1500, 900]\n'
    [p] = problems(body)
    assert p.startswith("analytics.queues.0.head: [1500, 900] of queue 'checkout' is more than a frame's size outside the 640x480")
    valid(ZONE + '[[analytics.queues]]\nname = "checkout"\nzone = "kiosk"\nhead = [640, 400]\n')  # on the border
    valid(ZONE + '[[analytics.queues]]\nname = "checkout"\nzone = "kiosk"\nhead = [700, 240]\n')  # a till just out of view


def test_geometry_of_an_extra_camera_names_its_source():
    body = ('[models.person_detector]\nname = "nanodet_m_416"\n'
            '[[cameras]]\nid = "aisle"\n[cameras.source]\ntype = "video"\nuri = "/dev/null/a.avi"\n'
            'width = 320\nheight = 240\n'
            '[[cameras.analytics.zones]]\nname = "aisle"\npolygon = [[400, 300], [500, 300], [500, 400]]\n')
    [p] = problems(body)
    assert p.startswith("cameras.0.analytics.zones.0.polygon: zone 'aisle'")
    assert "320x240 frame (cameras.0.source width/height)" in p


def test_validate_frame_lists_every_problem():
    cfg = AnalyticsConfig.model_validate({
        "zones": [{"name": "a", "polygon": [[700, 0], [800, 0], [800, 100]]}],
        "lines": [{"name": "l", "start": [700, 0], "end": [700, 100]}]})
    with pytest.raises(FrameConfigError) as e:
        cfg.validate_frame(640, 480)
    assert [p.split(":")[0] for p in e.value.problems] == ["analytics.zones.0.polygon", "analytics.lines.0.start"]
    cfg.validate_frame(1280, 720)


# --- nan and inf coordinates --------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, body", [
    ("analytics.lines.0.start", '[[analytics.lines]]\nname = "l"\nstart = [nan, 0]\nend = [100, 100]\n'),
    ("analytics.lines.0.end", '[[analytics.lines]]\nname = "l"\nstart = [0, 0]\nend = [inf, 100]\n'),
    ("analytics.queues.0.head", ZONE + '[[analytics.queues]]\nname = "q"\nzone = "kiosk"\nhead = [300, -inf]\n'),
])
def test_nan_and_inf_coordinates_are_errors(key, body):
    [p] = problems(body)
    check(p, key, key.rsplit(".", 1)[1] + " [")
    assert "must be finite" in p
    assert "nan" in p or "inf" in p  # names the bad value


# --- kiosk help, handover -----------------------------------------------------------------------------------------

def test_kiosk_staff_zone_must_not_be_the_kiosk_zone():
    [p] = problems(ZONE + '[[analytics.kiosk_help]]\nname = "k"\nzone = "kiosk"\nstaff_zone = "kiosk"\n')
    check(p, "analytics.kiosk_help.0.staff_zone", "staff_zone 'kiosk' is the kiosk zone itself")
    staff = '[[analytics.zones]]\nname = "staff"\npolygon = [[450, 300], [600, 300], [600, 478]]\n'
    valid(ZONE + staff + '[[analytics.kiosk_help]]\nname = "k"\nzone = "kiosk"\nstaff_zone = "staff"\n')


@pytest.mark.parametrize("handover_s", [0.2, 0.5, HANDOVER_STOOD_S])
def test_a_handover_window_too_short_to_hand_over_is_an_error(handover_s):
    [p] = problems(f'[[analytics.zones]]\nname = "kiosk"\npolygon = {SQUARE}\nhandover_s = {handover_s}\n')
    check(p, "analytics.zones.0.handover_s", f"handover_s {handover_s:g} can never hand a visit over")
    assert "(fix: 0 to turn handover off" in p


@pytest.mark.parametrize("handover_s", [0, HANDOVER_STOOD_S + 0.5, 5])
def test_handover_off_or_long_enough_is_fine(handover_s):
    valid(f'[[analytics.zones]]\nname = "kiosk"\npolygon = {SQUARE}\nhandover_s = {handover_s}\n')


def test_a_window_just_over_the_bound_can_hand_over():
    """The bound is tight: a little over HANDOVER_STOOD_S, someone lost for one frame at 10 fps (new id 0.2 s
    after the old one was last seen) is handed over."""
    z = PolygonZone("w", [(200, 300), (400, 300), (400, 480), (200, 480)], handover_s=HANDOVER_STOOD_S + 0.25)
    frames = [[(1, 300)]] * 40 + [[]] + [[(2, 302)]] * 40
    ev = [e for k, people in enumerate(frames)
          for e in z.update(tracked(*[(tid, x, 400.0) for tid, x in people]), round(k * 0.1, 6))]
    assert [e.data.get("continues") for e in ev if e.kind == "zone_entered"] == [None, 1]


# --- alert rules --------------------------------------------------------------------------------------------------

RULE = ZONE + '[[analytics.queues]]\nname = "checkout"\nzone = "kiosk"\n' \
    '[[alerts.rules]]\nid = "q"\nmetric = "queue_length"\nkey = "checkout"\nop = "{op}"\nthreshold = {thr}\n'


@pytest.mark.parametrize("op, thr", [(">=", "inf"), (">", "nan"), ("<", "inf"), ("<=", "-inf")])
def test_alert_thresholds_must_be_finite(op, thr):
    [p] = problems(RULE.format(op=op, thr=thr))
    check(p, "alerts.rules.0.threshold", f"threshold {thr} is not a finite number")


@pytest.mark.parametrize("op, clear", [(">=", "nan"), ("<", "inf"), ("<", "nan")])
def test_alert_clear_thresholds_must_be_finite(op, clear):
    [p] = problems(RULE.format(op=op, thr=3) + f"clear_threshold = {clear}\n")
    check(p, "alerts.rules.0.clear_threshold", f"clear_threshold {clear} is not a finite number")


def test_alert_escalation_delay_must_be_finite():
    [p] = problems(RULE.format(op=">=", thr=3) + "escalate_after_s = inf\n")
    check(p, "alerts.rules.0.escalate_after_s", "escalate_after_s inf is not a finite number")


@pytest.mark.parametrize("key", ["for_s", "clear_for_s", "cooldown_s"])
@pytest.mark.parametrize("value", ["inf", "nan"])
def test_alert_durations_reject_nan_and_inf(key, value):
    [p] = problems(RULE.format(op=">=", thr=3) + f"{key} = {value}\n")
    assert p.startswith(f"alerts.rules.0.{key}: ")


def test_finite_alert_rule_is_fine():
    valid(RULE.format(op=">=", thr=3) + "clear_threshold = 2\nescalate_after_s = 300\n")


def test_a_heatmap_frame_size_other_than_the_source_frame_is_an_error():
    """Anchor points are pixels of the source frame: a grid over 1920x1080 on a 640x480 stream would pile every
    count into the top-left cells."""
    body = '[[analytics.heatmaps]]\nname = "floor"\nframe_size = [1920, 1080]\n'
    [p] = problems(body)
    check(p, "analytics.heatmaps.0.frame_size", "[1920, 1080] of heatmap 'floor' is not the size of the 640x480 "
          "frame ([source] width/height)")
    valid(body, width=1920, height=1080)
    valid('[[analytics.heatmaps]]\nname = "floor"\n')  # the source's size by default
