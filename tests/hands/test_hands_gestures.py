"""GestureRecognizer on real hands: the landmarks the real models give for the package photos' hands (an open hand,
a pointing hand, hands holding cards), moved along scripted paths (devtools.hand_scenes)."""
from __future__ import annotations

import re

import numpy as np
import pytest

from devtools.hand_scenes import BODY, H, NORMAL, W, _Builder, gesture_script, normal_script
from edge.app.config import ConfigError, parse_config
from edge.tryon.config import GesturesSection, SwipeSection
from edge.tryon.gestures import GestureRecognizer, hand_shape

CFG = GesturesSection(enabled=True)


def run(script, cfg=CFG, mirror=True, seed=0, noise_px=1.5, drop=0.05):
    rec = GestureRecognizer(cfg, mirror)
    rng = np.random.default_rng(seed)
    events = []
    for t, poses, body in script.frames:
        hands = [p.template.hand(p, rng, noise_px, 0.002) for p in poses if rng.random() >= drop]
        events += rec.update(t, hands, (H, W), body)
    return events


def test_templates_are_what_their_shapes_say(templates):
    for t in templates["open"]:
        assert hand_shape(t.hand(_pose(t))).open
    for t in templates["point"]:
        assert hand_shape(t.hand(_pose(t))).pointing
    for t in templates["relaxed"]:
        s = hand_shape(t.hand(_pose(t)))
        assert not s.open and not s.pointing


def _pose(t):
    from devtools.hand_scenes import HandPose
    return HandPose(t, "right", 300, 200, 60, 0.0)


@pytest.mark.parametrize("kind", ["swipe_left", "swipe_right"])
def test_swipes_both_ways(templates, kind):
    for i in range(6):  # with and without a sideways return stroke, either hand, random speed / distance
        s = gesture_script(kind, templates, CFG, np.random.default_rng(100 + i), variant=i)
        ev = run(s, seed=i)
        assert [e.kind for e in ev] == [kind], (i, [(e.kind, e.t) for e in ev])
        tr = s.truth[0]
        assert tr.t_start - 0.1 <= ev[0].t <= tr.t_end + 0.2
        assert ev[0].detail["distance"] >= CFG.swipe.min_distance


def test_swipe_direction_is_the_displayed_one(templates):
    """A hand moving to the shopper's right moves left on the camera image; with the mirror flipped for display it
    is a swipe_right, on an unflipped display a swipe_left."""
    s = gesture_script("swipe_right", templates, CFG, np.random.default_rng(7), variant=0)
    p0 = next(p for _, ps, _ in s.frames for p in ps)
    p1 = [p for _, ps, _ in s.frames for p in ps][-20]
    assert p1.cx < p0.cx  # camera image: to the left
    assert [e.kind for e in run(s, mirror=True)] == ["swipe_right"]
    assert [e.kind for e in run(s, mirror=False)] == ["swipe_left"]


def test_point_hold_picks_the_swatch_colour(templates):
    for i in range(6):
        s = gesture_script("point", templates, CFG, np.random.default_rng(200 + i), variant=i)
        ev = run(s, seed=i)
        tr = s.truth[0]
        assert [(e.kind, e.value) for e in ev] == [("point", tr.value)], (i, [(e.kind, e.value) for e in ev])
        assert ev[0].t - ev[0].t_start >= CFG.point.hold_ms / 1e3 - 1e-6  # over the swatch for the hold time
        assert tr.t_start <= ev[0].t <= tr.t_end + 0.1


def test_palm_hold_saves_once(templates):
    long_hold = CFG.model_copy(update={"palm": CFG.palm.model_copy(update={"hold_ms": 600.0})})
    for i in range(4):
        s = gesture_script("palm", templates, long_hold, np.random.default_rng(300 + i), variant=i)
        ev = run(s, long_hold, seed=i)  # held ~0.85-1.4 s with a 0.6 s hold: still fires once
        assert [e.kind for e in ev] == ["palm"], (i, [(e.kind, e.t) for e in ev])
        assert ev[0].t >= s.truth[0].t_end - 1e-6


def test_normal_movement_triggers_nothing(templates):
    for kind in NORMAL:
        s = normal_script(kind, templates, np.random.default_rng(400), seconds=15)
        ev = run(s, seed=4)
        assert ev == [], (kind, [(e.kind, round(e.t, 2)) for e in ev])


def _two_swipes(templates, gap_s: float, d: int = 1):
    """Two sideways strokes of an open right hand, the second starting gap_s after the first ended."""
    b = _Builder("two", 30.0, np.random.default_rng(1))
    tpl = templates["open"][0]
    a, c = (-0.6 * d, 0.3, 0.32, 0.0), (0.6 * d, 0.3, 0.32, 0.0)
    b.move(tpl, "right", (a[0], 1.2, 0.32, 0.0), a, 0.5)
    b.move(tpl, "right", a, a, 0.3)
    b.move(tpl, "right", a, c, 0.35)
    b.move(tpl, "right", c, c, 0.1)
    b.move(tpl, "right", c, a, 0.3)  # back quickly (not a gesture)
    b.move(tpl, "right", a, a, max(0.0, gap_s - 0.4))
    b.move(tpl, "right", a, c, 0.35)
    b.move(tpl, "right", c, c, 0.5)
    return b.build()


def test_cooldown(templates):
    ev = run(_two_swipes(templates, gap_s=0.5), noise_px=0.5, drop=0)
    assert [e.kind for e in ev] == ["swipe_right"], [(e.kind, round(e.t, 2)) for e in ev]  # the rest: in cooldown
    ev = run(_two_swipes(templates, gap_s=1.6), noise_px=0.5, drop=0)
    assert [e.kind for e in ev] == ["swipe_right", "swipe_right"], [(e.kind, round(e.t, 2)) for e in ev]
    assert ev[1].t - ev[0].t >= CFG.cooldown_s
    no_cooldown = CFG.model_copy(update={"cooldown_s": 0.0})
    ev = run(_two_swipes(templates, gap_s=0.5), no_cooldown, noise_px=0.5, drop=0)
    assert [e.kind for e in ev] == ["swipe_right", "swipe_left", "swipe_right"]  # the quick return counts now


def test_grasping_hand_does_not_swipe(templates):
    s = gesture_script("swipe_right", templates, CFG, np.random.default_rng(9), variant=0)
    relaxed = templates["relaxed"][0]
    for _, poses, _ in s.frames:
        for p in poses:
            p.template = relaxed
    assert run(s) == []
    any_hand = CFG.model_copy(update={"swipe": SwipeSection(open_hand=False)})
    assert [e.kind for e in run(s, any_hand)] == ["swipe_right"]


def test_walking_body_carries_the_hand_without_a_swipe(templates):
    """The hand moves across the image as fast as a swipe, but with the shoulders: no swipe."""
    b = _Builder("walk", 30.0, np.random.default_rng(2))
    tpl = templates["open"][0]

    def body(t):
        from edge.tryon.gestures import BodyRef
        return BodyRef(BODY.cx - 400 * t, BODY.cy, BODY.scale)
    b.move(tpl, "right", (0.5, 0.2, 0.32, 0.0), (0.5, 0.2, 0.32, 0.0), 1.0, profile=lambda u: u, body_path=body)
    assert run(b.build()) == []


def test_config_errors_name_the_key():
    base = {"device": {"id": "m1", "store": "s1", "kind": "tryon-mirror"}}
    bad = {"tryon.gestures.zone": {"tryon": {"gestures": {"zone": [0.8, 0, 0.2, 1]}}},
           "tryon.gestures.swipe": {"tryon": {"gestures": {"swipe": {"start_speed": 1.0, "end_speed": 2.0}}}},
           "tryon.gestures.swatches.0.rect": {"tryon": {"gestures": {"swatches": [{"colour": 0,
                                                                                   "rect": [0.9, 0.1, 1.2, 0.2]}]}}},
           "tryon.gestures.point.hold_ms": {"tryon": {"gestures": {"point": {"hold_ms": 5}}}},
           "tryon.gestures.hands.palm_detection": {"tryon": {"gestures": {"hands": {"palm_detection": "maybe"}}}}}
    for key, data in bad.items():
        with pytest.raises(ConfigError, match=re.escape(f"x.toml: {key}: ") + r".*\(fix: "):
            parse_config({**base, **data}, "x.toml")
    cfg = parse_config({**base, "tryon": {"gestures": {"enabled": True, "swatches": [
        {"colour": "navy", "rect": [0.8, 0.1, 0.95, 0.2]}]}}}, "x.toml")
    assert cfg.tryon.gestures.swatches[0].colour == "navy" and cfg.models.hand_landmarks.name == "hand_landmark_lite"


def test_gestures_map_to_mirror_actions():
    """Each gesture goes through the mirror's real MirrorActions with its source; a failing action is logged,
    not raised into the pose loop."""
    from edge.tryon.config import TryOnConfig
    from edge.tryon.gestures import GestureEvent, MirrorGestures
    from edge.tryon.pipeline import TryOnPipeline

    pipe = TryOnPipeline(TryOnConfig(default_sku="TEE-001"), [], None)
    g = MirrorGestures(CFG, hands=None, apply=pipe._gesture_action)
    skus = pipe.catalog.skus()
    i = skus.index("TEE-001")
    g._dispatch(GestureEvent("swipe_right", 1.0, 0.8, "right"))
    assert pipe.selection[0] == skus[(i + 1) % len(skus)]
    g._dispatch(GestureEvent("swipe_left", 3.0, 2.8, "right"))
    assert pipe.selection[0] == "TEE-001"
    assert pipe.actions.state()["last_action"]["source"] == "swipe"
    g._dispatch(GestureEvent("point", 5.0, 4.2, "right", value=1))
    assert pipe.selection == ("TEE-001", pipe.catalog.entry("TEE-001").colours[1].name)
    g._dispatch(GestureEvent("point", 7.0, 6.2, "right", value=9))  # no such colour: logged, nothing changes
    assert pipe.actions.state()["last_action"]["source"] == "point"
    g._dispatch(GestureEvent("palm", 9.0, 7.8, "left"))
    st = pipe.actions.state()
    assert st["last_action"]["action"] == "save_look" and st["last_action"]["source"] == "palm"
    assert st["look"]["items"][0]["sku"] == "TEE-001"


def test_swatches_go_where_the_page_shows_the_picture():
    """swatch_space "screen" (default): the rects are fractions of the part of the picture the mirror page shows
    (it reports it with each poll); a portrait screen shows only the middle of a landscape camera, so the swatch
    column moves inside it. "picture": the rects as configured."""
    rec = GestureRecognizer(CFG)
    assert rec.swatch_rects() == [tuple(s.rect) for s in CFG.swatches]  # no view reported: the whole picture
    assert rec.swatch_at(0.91, 0.24) == 0
    rec.set_view((0.29, 0.05, 0.71, 0.75))  # 1080x1920 portrait, 640x480 camera: 42 % of the width is on screen
    rects = rec.swatch_rects()
    assert rects[0] == pytest.approx((0.29 + 0.84 * 0.42, 0.05 + 0.18 * 0.7, 0.29 + 0.98 * 0.42, 0.05 + 0.31 * 0.7))
    assert all(0.29 <= x0 < x1 <= 0.71 and 0.05 <= y0 < y1 <= 0.75 for x0, y0, x1, y1 in rects)
    x0, y0, x1, y1 = rects[2]
    assert rec.swatch_at((x0 + x1) / 2, (y0 + y1) / 2) == 2
    assert rec.swatch_at(0.91, 0.24) is None  # where the first swatch was: off screen now
    rec.set_view(None)
    assert rec.swatch_at(0.91, 0.24) == 0
    fixed = GestureRecognizer(CFG.model_copy(update={"swatch_space": "picture"}))
    fixed.set_view((0.29, 0.05, 0.71, 0.75))
    assert fixed.swatch_rects() == [tuple(s.rect) for s in CFG.swatches]


def test_the_page_view_is_validated():
    from edge.tryon.server import parse_view

    assert parse_view("0.29,0.05,0.71,0.75") == (0.29, 0.05, 0.71, 0.75)
    for bad in ("0.5,0,0.4,1", "0,0,1", "a,b,c,d", "-0.1,0,1,1", "0,0,1,1.2", "0.3,0,0.32,1"):
        with pytest.raises(ValueError, match="view"):
            parse_view(bad)


def test_hands_yield_to_the_picture_while_it_drops_frames():
    """yield_to_picture: while the mirror is strained (drops camera frames, or is late), hands run on fewer frames,
    one step per second, never under min_rate_hz; they come back one step per 3 s once it keeps up."""
    from edge.tryon.gestures import ADAPT_DOWN_S, MAX_EVERY, MirrorGestures

    def mirror(**kw):
        g = MirrorGestures(GesturesSection(enabled=True, budget_ms=0, min_rate_hz=8, **kw), hands=None)
        g.strain = lambda: drop[0]
        return g

    def share(g, t0: float, seconds: float, fps: float = 30.0) -> float:
        n, ran = int(seconds * fps), 0
        for i in range(n):
            t = t0 + i / fps
            if g._due(t, 10.0):  # what prepare() does when hands are due
                ran, g._since_run, g._t_last_run = ran + 1, 0, t
        return ran / n

    drop = [0.0]
    g = mirror()
    assert share(g, 0, 2) == 1.0 and g.every == 1  # keeping up: hands on every pose frame
    drop[0] = 0.10  # the mirror drops 10 % of the camera's frames
    share(g, 2, MAX_EVERY + 1)
    assert g.every == MAX_EVERY
    assert 0.2 <= share(g, 10, 3) <= 0.3  # every 6th frame would be 5 Hz: the 8 Hz floor holds (every 4th)
    drop[0] = 0.02  # between the thresholds: no step either way
    share(g, 13, 4)
    assert g.every == MAX_EVERY
    drop[0] = 0.0
    share(g, 17, ADAPT_DOWN_S * (MAX_EVERY - 1) + 1)
    assert g.every == 1 and share(g, 40, 1) == 1.0
    fixed = mirror(yield_to_picture=False)
    drop[0] = 0.5
    assert share(fixed, 0, 5) == 1.0 and fixed.every == 1


def test_mirror_strain_counts_dropped_frames_and_late_frames():
    """What the hands yield to: the fraction of camera frames the mirror did not show (last 2 s), or how far its
    motion-to-photon p95 (last 60 frames) is over the budget, whichever is larger."""
    import time

    from edge.tryon.config import TryOnConfig
    from edge.tryon.pipeline import TryOnPipeline

    p = TryOnPipeline(TryOnConfig(), [], None)
    assert p.strain(80.0) == 0.0  # nothing measured yet
    p.m2p_ms.extend([50.0] * 60)
    assert p.strain(80.0) == 0.0  # on time
    p.m2p_ms.extend([100.0] * 10)  # the last 60 frames: p95 100 ms, 25 % over an 80 ms budget
    assert p.strain(80.0) == pytest.approx(0.25)
    now = time.monotonic()
    p._t_in.extend(now - 1 + i / 30 for i in range(31))  # the camera gives 30 FPS, the mirror shows 20
    p._t_out.extend(now - 1 + i / 20 for i in range(21))
    assert p.dropped_fraction() == pytest.approx(1 / 3, abs=0.01) and p.strain(80.0) == pytest.approx(1 / 3, abs=0.01)


def test_reset_forgets_the_last_shoppers_cooldown(templates):
    """A shopper swipes and leaves (the mirror resets the recognizer); the next one steps in at once and swipes
    while the last one's cooldown would still run: the swipe counts."""
    cfg = CFG.model_copy(update={"cooldown_s": 3.0})
    rec = GestureRecognizer(cfg)
    ev = []
    for t, poses, body in gesture_script("swipe_right", templates, cfg, np.random.default_rng(100)).frames:
        ev += rec.update(t, [p.template.hand(p) for p in poses], (H, W), body)
        if ev:
            break  # the shopper leaves right after the swipe
    assert [e.kind for e in ev] == ["swipe_right"]
    rec.reset()
    second = gesture_script("swipe_left", templates, cfg, np.random.default_rng(101))
    dt = ev[0].t + 1 / 30
    assert second.truth[0].t_end + dt < ev[0].t + cfg.cooldown_s  # within the first shopper's cooldown
    ev2 = [e for t, poses, body in second.frames
           for e in rec.update(t + dt, [p.template.hand(p) for p in poses], (H, W), body)]
    assert [e.kind for e in ev2] == ["swipe_left"], [(e.kind, round(e.t, 2)) for e in ev2]
