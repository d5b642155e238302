"""Review of the hand stage against MediaPipe Hands' graphs (stop 39): landmark z scale, handedness, the palm
detector's un-letterboxing on non-square frames, and inputs that must not break a hand step (real models)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from calibration.photos import load_photo
from edge.hands.config import HandsConfig
from edge.hands.detector import PalmDetector
from edge.hands.pipeline import HandsStage

from hand_helpers import open_session


@pytest.fixture(scope="module")
def t1_rgb():
    return cv2.cvtColor(load_photo("t1"), cv2.COLOR_BGR2RGB)


def _nearest(hands, want):
    return min(hands, key=lambda h: np.linalg.norm(h.landmarks[0, :2] - want[0, :2]))


@pytest.mark.parametrize("size", ["lite", "full"])
def test_landmark_z_has_mediapipe_scale(hand_zoo, mp_reference, size):
    """z of the image landmarks is MediaPipe's (hand_landmark_cpu.pbtxt decodes z with normalize_z 0.4): without
    that factor z came out 0.4x MediaPipe's, so depth cues (a hand reaching toward the mirror) were 2.5x too flat."""
    stage = HandsStage(HandsConfig(palm_detection="always", max_hands=4),
                       open_session(hand_zoo, f"palm_detection_{size}"), open_session(hand_zoo, f"hand_landmark_{size}"))
    checked = 0
    for photo, ref in mp_reference["photos"].items():
        stage.reset()
        got = stage.process(cv2.cvtColor(load_photo(photo), cv2.COLOR_BGR2RGB), None).hands
        for r in ref[size]:
            w = np.asarray(r["landmarks"])
            h = _nearest(got, w)
            err = np.abs(h.landmarks[:, 2] - w[:, 2])
            assert err.max() < 0.05 * np.abs(w[:, 2]).max() + 0.5, (photo, size, err.max(), np.abs(w[:, 2]).max())
            checked += 1
    assert checked >= 1


def test_handedness_is_mediapipes_left_probability(hand_zoo, mp_reference):
    """Hand.handedness is the model's "Left" probability exactly as MediaPipe labels it (MediaPipe assumes a mirrored
    image), and flipping the image flips it: guards a swapped or inverted handedness output."""
    stage = HandsStage(HandsConfig(palm_detection="always", max_hands=4),
                       open_session(hand_zoo, "palm_detection_full"), open_session(hand_zoo, "hand_landmark_full"))
    rgb = cv2.cvtColor(load_photo("t1"), cv2.COLOR_BGR2RGB)
    got = stage.process(rgb, None).hands
    refs = mp_reference["photos"]["t1"]["full"]
    assert refs
    for r in refs:
        h = _nearest(got, np.asarray(r["landmarks"]))
        p_left = r["score"] if r["label"] == "Left" else 1 - r["score"]
        assert abs(h.handedness - p_left) < 0.05, (r["label"], r["score"], h.handedness)
    stage.reset()
    flipped = stage.process(np.ascontiguousarray(rgb[:, ::-1]), None).hands
    w = rgb.shape[1]
    for r in refs:
        lm = np.asarray(r["landmarks"])
        lm[:, 0] = w - lm[:, 0]
        h = _nearest(flipped, lm)
        assert (h.handedness > 0.5) != (r["label"] == "Left"), (r["label"], h.handedness)


@pytest.mark.parametrize("window", [(0, 886, 100, 800), (200, 700, 0, 1280)], ids=["portrait", "landscape"])
def test_palm_boxes_exact_on_non_square_frames(hand_zoo, t1_rgb, window):
    """A portrait or landscape frame gives the same palms (to float precision) as that frame centred on a square
    black canvas, shifted by the padding: guards the letterbox / un-letterbox of x and y for non-square frames."""
    det = PalmDetector(open_session(hand_zoo, "palm_detection_full"))
    y0, y1, x0, x1 = window
    img = np.ascontiguousarray(t1_rgb[y0:y1, x0:x1])
    h, w = img.shape[:2]
    side = max(h, w)
    py, px = (side - h) // 2, (side - w) // 2
    square = np.zeros((side, side, 3), np.uint8)
    square[py:py + h, px:px + w] = img
    a, b = det(img), det(square)
    assert len(a) == len(b) >= 1
    for d, e in zip(a, b):
        np.testing.assert_allclose(d.box, e.box - [px, py, px, py], atol=1e-3)
        np.testing.assert_allclose(d.keypoints, e.keypoints - [px, py], atol=1e-3)


def _t1_pose(mp_reference, side: str = "right") -> np.ndarray:
    """A pose whose `side` wrist / pinky / index knuckles are on t1's (full model) right hand, hips below it."""
    w = np.asarray(mp_reference["photos"]["t1"]["full"][-1]["landmarks"])
    pose = np.zeros((33, 5))
    pose[[23, 24], 1], pose[[23, 24], 3] = w[:, 1].max() + 200, 1.0
    idx = [16, 18, 20] if side == "right" else [15, 17, 19]
    pose[idx, :2] = w[[0, 17, 5], :2]
    pose[idx, 3] = 0.9
    return pose


def test_non_finite_pose_landmarks_do_not_break_the_hand_step(hand_zoo, mp_reference, t1_rgb):
    """A NaN or inf in one side's pose wrist / knuckles (a broken pose output) skips that side: it raised
    ValueError (math.floor of NaN in the ROI rotation), which lost the other hand's landmarks for the frame too."""
    stage = HandsStage(HandsConfig(palm_detection="off"), None, open_session(hand_zoo, "hand_landmark_full"))
    for bad in (np.nan, np.inf):
        pose = _t1_pose(mp_reference)
        pose[[15, 17, 19], 3] = 0.9  # the left side "seen", raised, but its position is broken
        pose[[15, 17, 19], 1] = 100.0
        pose[15, 0] = bad
        stage.reset()
        hands = stage.process(t1_rgb, pose).hands
        assert [h.key for h in hands] == ["right"], (bad, [h.key for h in hands])
        assert all(np.isfinite(h.landmarks).all() for h in hands)


def test_empty_frame_gives_no_hands_and_keeps_the_tracks(hand_zoo, mp_reference, t1_rgb):
    """An empty image (a camera hiccup) yields no hands instead of ZeroDivisionError / cv2.error, and the tracked
    hands carry over to the next real frame."""
    stage = HandsStage(HandsConfig(palm_detection="always"), open_session(hand_zoo, "palm_detection_lite"),
                       open_session(hand_zoo, "hand_landmark_full"))
    pose = _t1_pose(mp_reference)
    assert stage.process(t1_rgb, pose).hands
    for empty in (np.zeros((0, 0, 3), np.uint8), np.zeros((0, 640, 3), np.uint8), np.zeros((480, 0, 3), np.uint8)):
        res = stage.process(empty, pose)
        assert res.hands == [] and not res.palm_ran
    again = stage.process(t1_rgb, pose).hands
    assert any(h.source == "track" and h.key == "right" for h in again), [(h.key, h.source) for h in again]
