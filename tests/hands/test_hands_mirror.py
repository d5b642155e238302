"""A gesture drives a real mirror: TryOnPipeline with the real pose models, the real hand models and
MirrorActions. The camera sees zidane.jpg, where the man on the right points with his index finger: the pose model
finds him (the shopper in the zone), his raised wrist gives the hand ROI, the hand model sees a pointing hand, and a
swatch placed under his fingertip is picked after the hold time."""
from __future__ import annotations

import pytest

from devtools.motion import window_view
from edge.core.frames import Frame

from hand_helpers import open_session

FINGERTIP_UV = (0.108, 0.558)  # his index tip in the displayed (mirrored) 640x480 picture (MediaPipe Hands)


def _mirror(zoo, swatch_rect):
    from edge.app.config import ModelsSection
    from edge.pose.config import PoseConfig
    from edge.pose.pipeline import PosePipeline
    from edge.tryon.config import GesturesSection, SwatchRegion, TryOnConfig
    from edge.tryon.pipeline import TryOnPipeline

    pose = PosePipeline.from_sessions(PoseConfig(), open_session(zoo, "pose_detection"),
                                      open_session(zoo, "pose_landmark_full"))
    cfg = TryOnConfig(default_sku="TEE-001", gestures=GesturesSection(
        enabled=True, budget_ms=0, swatches=[SwatchRegion(colour="red", rect=swatch_rect)]))
    pipe = TryOnPipeline(cfg, [], pose)
    fixed = {"backend": "onnxruntime", "precision": "fp32"}
    m = ModelsSection()
    models = m.model_copy(update={"hand_detector": m.hand_detector.model_copy(update=fixed),
                                  "hand_landmarks": m.hand_landmarks.model_copy(update=fixed)})
    pipe.attach_gestures(models, zoo)
    return pipe


def _run(pipe, seconds: float = 1.4) -> None:
    from calibration.photos import load_photo

    img = window_view(load_photo("zidane"), 640, 360, 1280)
    try:
        for i in range(int(seconds * 30)):
            t = i / 30
            pipe.run_sync(Frame(img.copy(), i, t, t))
    finally:
        pipe.close_sync()
        pipe.gestures.close()


def test_pointing_at_a_swatch_picks_its_colour(hand_zoo):
    u, v = FINGERTIP_UV
    pipe = _mirror(hand_zoo, (u - 0.07, v - 0.08, u + 0.07, v + 0.08))
    pipe.select("TEE-001", "navy")
    _run(pipe)
    g = pipe.state()["gestures"]
    assert g["running"] and g["reason"] == "running", g  # the shopper is in the zone, hands ran
    hands = pipe.gestures.last.hands
    assert [(h.key, h.source) for h in hands] == [("right", "track")], hands  # from the pose wrist, then tracked
    assert [(e.kind, e.value) for e in pipe.gestures.events] == [("point", "red")]
    e = pipe.gestures.events[0]
    assert e.t - e.t_start >= pipe.cfg.gestures.point.hold_ms / 1e3 - 1e-6
    last = pipe.actions.state()["last_action"]
    assert (last["action"], last["source"], last["value"]) == ("colour", "point", "red")
    assert pipe.selection == ("TEE-001", "red")


def test_pointing_elsewhere_picks_nothing(hand_zoo):
    pipe = _mirror(hand_zoo, (0.84, 0.18, 0.98, 0.31))  # the default top swatch: far from his finger
    pipe.select("TEE-001", "navy")
    _run(pipe)
    assert pipe.gestures.frames_run > 30 and pipe.gestures.last.hands
    assert list(pipe.gestures.events) == [] and pipe.actions.state()["last_action"] is None
    assert pipe.selection == ("TEE-001", "navy")


@pytest.mark.parametrize("zone", [(0.5, 0.0, 0.9, 1.0)])
def test_no_hands_outside_the_zone(hand_zoo, zone):
    """The shopper stands outside the try-on zone: the hand models do not run at all."""
    u, v = FINGERTIP_UV
    pipe = _mirror(hand_zoo, (u - 0.07, v - 0.08, u + 0.07, v + 0.08))
    pipe.gestures.cfg = pipe.cfg.gestures.model_copy(update={"zone": zone})
    _run(pipe, 0.5)
    assert pipe.gestures.frames_run == 0 and pipe.gestures.last is None
    assert pipe.state()["gestures"]["reason"] == "no shopper in the zone"


def test_threaded_mirror_runs_hands_on_the_pose_thread(hand_zoo):
    """The deployed path: stage threads, hands after each pose frame is handed to the renderer."""
    import time

    from calibration.photos import load_photo
    from waiting import wait_until

    u, v = FINGERTIP_UV
    pipe = _mirror(hand_zoo, (u - 0.07, v - 0.08, u + 0.07, v + 0.08))
    pipe.select("TEE-001", "navy")
    img = window_view(load_photo("zidane"), 640, 360, 1280)

    def camera():  # 2.5 s of a still camera at ~30 FPS (media time), the stages drop what they cannot keep up with
        for i in range(75):
            yield Frame(img.copy(), i, time.monotonic(), i / 30)
            time.sleep(1 / 30)
    pipe.source = camera()
    pipe.start()
    try:
        assert wait_until(lambda: pipe.selection == ("TEE-001", "red"), timeout=60), pipe.state()["gestures"]
    finally:
        pipe.stop()
    assert [(e.kind, e.value) for e in pipe.gestures.events] == [("point", "red")]
    assert pipe.gestures.frames_run >= 3 and pipe.actions.state()["last_action"]["source"] == "point"


def test_a_frame_without_the_shopper_does_not_restart_the_hold(hand_zoo):
    """The pose fails (or misses the shopper) on one frame in the middle of a pointing hold: that frame is forgiven
    like a lost hand frame (grace_ms), so the colour is picked on time; once the shopper has been away longer than
    that, the hands and the holds are forgotten."""
    from calibration.photos import load_photo

    u, v = FINGERTIP_UV
    pipe = _mirror(hand_zoo, (u - 0.07, v - 0.08, u + 0.07, v + 0.08))
    img = window_view(load_photo("zidane"), 640, 360, 1280)
    g = pipe.gestures
    try:
        for i in range(30):
            t = i / 30
            frame = Frame(img.copy(), i, t, t)
            if i == 12:
                g.process(frame, None, None)  # what the pose thread hands on when the pose failed
            else:
                pipe.run_sync(frame)
        assert [(e.kind, e.value) for e in g.events] == [("point", "red")]
        assert g.events[0].t_start < 12 / 30 and g.events[0].t <= 12 / 30 + pipe.cfg.gestures.point.hold_ms / 1e3
        for i in range(30, 40):  # the shopper is gone for 1/3 s
            g.process(Frame(img.copy(), i, i / 30, i / 30), None, None)
        assert g.recognizer.tracks == {} and g.hands.tracker.tracks == {}
    finally:
        pipe.close_sync()
        g.close()
