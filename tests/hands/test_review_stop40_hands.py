"""Review of the hand tracker (stop 40), on the real zoo models and package photos: hand keys that must not pass
from one hand to another, and a broken pose wrist that must not hide the other hand."""
from __future__ import annotations

import cv2
import numpy as np

from calibration.photos import load_photo

from hand_helpers import open_session


def _run_hands(stage, background, script):
    """script: per frame the HandPose to paste (or None) → (hands per frame, gesture events), 30 fps, no pose."""
    from devtools.hand_scenes import H, W
    from edge.tryon.config import GesturesSection
    from edge.tryon.gestures import GestureRecognizer

    stage.reset()
    rec = GestureRecognizer(GesturesSection(enabled=True), mirror=True)
    seen, events = [], []
    for i, pose in enumerate(script):
        img = background.copy()
        if pose is not None:
            pose.template.paste(img, pose)
        res = stage.process(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), None, i, i / 30)
        seen.append(res.hands)
        events += rec.update(i / 30, res.hands, (H, W))
    return seen, events


def test_a_hand_found_after_another_was_lost_gets_a_key_of_its_own(hand_zoo, templates):
    """Guards: the palm detector's hands were keyed palm<i> with the lowest free i, so a hand found right after
    another one was lost (the first leaves the picture, a second is raised on the other side) took the lost hand's
    key: the gesture recognizer, which follows hands by key, saw one hand jump 380 px across the picture and fired a
    swipe nobody made. The same hand found again where it was lost keeps its key (its holds carry on)."""
    from devtools.hand_scenes import HandPose
    from devtools.motion import window_view
    from edge.hands.config import HandsConfig
    from edge.hands.pipeline import HandsStage

    background = window_view(load_photo("astronaut"), 256, 300, 560)
    stage = HandsStage(HandsConfig(), open_session(hand_zoo, "palm_detection_lite"),
                       open_session(hand_zoo, "hand_landmark_lite"))
    a = HandPose(templates["open"][0], "right", 160, 120, 60, 0.0)
    b = HandPose(templates["open"][0], "right", 540, 200, 60, 0.0)

    seen, events = _run_hands(stage, background, [a] * 30 + [b] * 30)
    keys_a = {h.key for hs in seen[:30] for h in hs}
    keys_b = {h.key for hs in seen[30:] for h in hs}
    assert len(keys_a) == 1 and sum(bool(hs) for hs in seen[:30]) > 20, [[h.key for h in hs] for hs in seen]
    assert keys_b and not keys_a & keys_b, (keys_a, keys_b)
    assert not [e for e in events if e.kind.startswith("swipe")], events

    seen, events = _run_hands(stage, background, [a] * 15 + [None] * 2 + [a] * 15)  # hidden for two frames
    assert not any(seen[15:17]) and seen[-1]
    assert len({h.key for hs in seen for h in hs}) == 1, [[h.key for h in hs] for hs in seen]


def test_a_broken_pose_wrist_does_not_hide_the_other_hand_from_the_palm_detector(hand_zoo):
    """Guards: a pose whose left wrist is NaN but reported visible (a broken pose output) made every palm the palm
    detector found "nobody's hand": the NaN distance to that wrist won the nearest-wrist test and failed it, so
    the right hand, on its own wrist, was dropped. Likewise NaN shoulders reported visible put every palm out of
    reach. A non-finite wrist or shoulder now counts as not seen."""
    from edge.hands.config import HandsConfig
    from edge.hands.detector import PalmDetector
    from edge.hands.pipeline import HandsStage

    rgb = cv2.cvtColor(load_photo("t1"), cv2.COLOR_BGR2RGB)
    palm = PalmDetector(open_session(hand_zoo, "palm_detection_full"))(rgb)[0]  # t1's clearest hand
    wrist = palm.keypoints[0]
    pose = np.zeros((33, 5))
    pose[16, :2], pose[16, 3] = wrist, 0.9  # the right wrist on that hand; its knuckles too faint for a pose ROI
    pose[[18, 20], :2], pose[[18, 20], 3] = palm.keypoints[[4, 1]], 0.2
    pose[15, :2], pose[15, 3] = (np.nan, 50.0), 0.9  # the left wrist: broken, "visible"
    pose[[11, 12], :2], pose[[11, 12], 3] = [wrist + (150, -200), wrist + (-50, -200)], 0.9
    pose[[23, 24], 1], pose[[23, 24], 3] = 2000.0, 0.9
    stage = HandsStage(HandsConfig(palm_detection="always"), open_session(hand_zoo, "palm_detection_full"),
                       open_session(hand_zoo, "hand_landmark_full"))
    hands = stage.process(rgb, pose).hands
    assert [h.key for h in hands if np.hypot(*(h.landmarks[0, :2] - wrist)) < 30] == ["right"], \
        [(h.key, h.landmarks[0, :2]) for h in hands]

    pose[[15, 16], 3] = 0.05  # neither wrist seen; the shoulders broken but "visible": the palm is within reach
    pose[11, 0] = np.nan
    stage.reset()
    hands = stage.process(rgb, pose).hands
    assert any(h.key.startswith("palm") and np.hypot(*(h.landmarks[0, :2] - wrist)) < 30 for h in hands), \
        [(h.key, h.landmarks[0, :2]) for h in hands]
