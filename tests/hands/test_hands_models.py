"""The hand models from the mediapipe wheel through the build chain: golden outputs on every backend, and the
hand stage (palm detector → ROI → landmarks) against MediaPipe Hands itself on the package photos."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from calibration.photos import load_photo
from edge.backends import available_backends
from edge.backends.parity import compare, judge, run_batched, tolerance_for
from edge.hands.config import HandsConfig
from edge.hands.pipeline import HandsStage
from edge.hands.roi import roi_from_pose
from edge.hands.tracker import pose_hand_rois

from hand_helpers import HAND_MODELS, open_session

BACKENDS = ("onnxruntime", "openvino", "tflite")


def test_manifests_build_fp32_for_every_backend(hand_zoo):
    for name in HAND_MODELS:
        m = hand_zoo.manifest(name)
        assert m["source"]["wheel"] == "mediapipe==0.10.21"
        got = {(a.backend, a.precision) for a in hand_zoo.artifacts(name)}
        assert {(b, "fp32") for b in BACKENDS} <= got, (name, got)
        hand_zoo.verify(name)  # signed built.json, sha256 of every file


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", HAND_MODELS)
def test_golden_outputs(hand_zoo, name, backend):
    ok, why = available_backends().get(backend, (False, "unknown"))
    if not ok:
        pytest.fail(f"{backend} not usable here: {why}")
    ins, golden = hand_zoo.golden(name)
    sess = open_session(hand_zoo, name, backend)
    tol = tolerance_for(hand_zoo.manifest(name), "fp32")
    passed, errs, reason = judge(compare(run_batched(sess, ins), golden), tol)
    assert passed, f"{name} on {backend}: {reason} {errs}"
    # and the parity check can fail: a shifted input gives other outputs
    shifted = {k: np.roll(v, 17, axis=2) for k, v in ins.items()}
    assert not judge(compare(run_batched(sess, shifted), golden), tol)[0]


def test_golden_sets_hold_real_hands(hand_zoo):
    """The golden inputs are crops and photos with hands in them, not blank images."""
    from edge.pose.detection import sigmoid

    for name in ("hand_landmark_full", "hand_landmark_lite"):
        _, out = hand_zoo.golden(name)
        assert (out["Identity_1"].reshape(-1) > 0.9).sum() >= 2, name
    for name in ("palm_detection_full", "palm_detection_lite"):
        _, out = hand_zoo.golden(name)
        assert (sigmoid(out["Identity_1"]) > 0.5).any(axis=(1, 2)).sum() >= 1, name


@pytest.mark.parametrize("size", ["lite", "full"])
def test_hand_stage_matches_mediapipe_hands(hand_zoo, mp_reference, size):
    """Palm detector + ROI + landmark decoding reproduce MediaPipe Hands (static image mode) on real photos."""
    stage = HandsStage(HandsConfig(palm_detection="always", max_hands=4),
                       open_session(hand_zoo, f"palm_detection_{size}"),
                       open_session(hand_zoo, f"hand_landmark_{size}"))
    for photo, ref in mp_reference["photos"].items():
        stage.reset()
        got = stage.process(cv2.cvtColor(load_photo(photo), cv2.COLOR_BGR2RGB), None).hands
        want = [np.asarray(h["landmarks"]) for h in ref[size]]
        assert len(got) == len(want), (photo, size, len(got), len(want))
        for w in want:
            h = min(got, key=lambda h: np.linalg.norm(h.landmarks[0, :2] - w[0, :2]))
            err = np.linalg.norm(h.landmarks[:, :2] - w[:, :2], axis=1)
            assert err.mean() < 0.5 and err.max() < 2.0, (photo, size, err.mean(), err.max())
        for h in got:
            assert h.source == "palm" and h.score >= 0.5 and h.roi_next is not None


def test_pose_wrists_give_hand_rois_the_landmark_model_accepts(hand_zoo, mp_reference):
    """The pose → hand ROI path on a real hand: the t1 hand MediaPipe finds, its ROI from where a pose model puts
    the wrist / index / pinky knuckles (here: MediaPipe's own hand landmarks), then one tracking step."""
    stage = HandsStage(HandsConfig(palm_detection="off"), None, open_session(hand_zoo, "hand_landmark_full"))
    rgb = cv2.cvtColor(load_photo("t1"), cv2.COLOR_BGR2RGB)
    for ref in mp_reference["photos"]["t1"]["full"]:
        w = np.asarray(ref["landmarks"])
        pose = np.zeros((33, 5))
        pose[[23, 24], 1], pose[[23, 24], 3] = w[:, 1].max() + 200, 1.0  # hips below the hand
        pose[[16, 18, 20], :2] = w[[0, 17, 5], :2]  # wrist, pinky and index knuckles
        pose[[16, 18, 20], 3] = 0.9
        assert set(pose_hand_rois(pose, stage.cfg)) == {"right"}
        roi = roi_from_pose(pose, "right")
        assert abs(roi.cx - w[:, 0].mean()) < roi.size / 3
        stage.reset()
        first = stage.process(rgb, pose).hands
        assert len(first) == 1 and first[0].key == "right" and first[0].source == "pose"
        second = stage.process(rgb, pose).hands  # tracked from its own landmarks now
        assert len(second) == 1 and second[0].source == "track"
        err = np.linalg.norm(second[0].landmarks[:, :2] - w[:, :2], axis=1).mean()
        palm = float(np.linalg.norm(w[9, :2] - w[0, :2]))
        assert err < 0.35 * palm, (err, palm)  # the same hand, its landmarks within a third of a palm length
        pose[[16, 18, 20], 3] = 0.1  # the pose does not see the hand: no ROI from it
        assert pose_hand_rois(pose, stage.cfg) == {}


def test_no_hands_in_a_person_free_scene(hand_zoo):
    stage = HandsStage(HandsConfig(palm_detection="always"), open_session(hand_zoo, "palm_detection_lite"),
                       open_session(hand_zoo, "hand_landmark_lite"))
    from calibration.datasets import load_negative

    for f in ("coffee.png", "motorcycle_left.png"):
        assert stage.process(cv2.cvtColor(load_negative(f, hand_zoo.cache), cv2.COLOR_BGR2RGB), None).hands == []
