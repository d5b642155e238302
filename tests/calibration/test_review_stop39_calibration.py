"""Review of calibration/ (stop 39): the INT8 accuracy gate on a variant that finds nothing, and hand data sets that
must never measure the held-out gate on calibration images (or calibrate on held-out ones)."""
from __future__ import annotations

import numpy as np
import pytest

from calibration.accuracy import detector_agreement, landmark_drift, passes_gate
from calibration.datasets import HandRoi, hand_sets
from edge.core.paths import cache_dir
from edge.pose.types import Roi

DET_GATE = {"recall_min": 0.95, "kp_drift_max": 0.02, "score_drift_max": 0.1}


def _ssd_outputs(n_anchors: int, hot: int | None) -> dict[str, np.ndarray]:
    """One sample of raw pose-detector outputs: every anchor scored far below the threshold, `hot` far above."""
    boxes = np.zeros((1, n_anchors, 12), np.float32)
    boxes[0, :, 2:4] = 40.0  # 40 px boxes centred on their anchors
    scores = np.full((1, n_anchors, 1), -10.0, np.float32)
    if hot is not None:
        scores[0, hot, 0] = 10.0
    return {"Identity": boxes, "Identity_1": scores}


def test_detector_gate_fails_instead_of_crashing_when_int8_finds_nothing():
    """An INT8 detector that misses every reference detection (recall 0: no matched pair, so no kp / score drift)
    is the plainest gate failure. `edge models report` and `edge models train --kind detector_qat` crashed on it
    with a TypeError (None <= float) instead of reporting FAIL; the build keeps such a variant in
    accuracy_int8.json when this CPU cannot run it as built (QAT INT8 on AVX2)."""
    from edge.pose.anchors import ssd_anchors

    n = len(ssd_anchors(224))
    res = detector_agreement(_ssd_outputs(n, 1000), _ssd_outputs(n, None), "pose_detector", 224)
    assert res["recall"] == 0.0 and res["kp_drift"] is None and res["score_drift"] is None
    ok, why = passes_gate("pose_detector", res, DET_GATE)
    assert not ok
    assert "recall 0.000 (min 0.95)" in why


def test_landmark_gate_fails_instead_of_crashing_without_visible_landmarks():
    """A landmark variant measured on crops the reference rejects everywhere (pose flag <= 0.5) has no drift
    (drift_mean None); the gate formatted it with :.4f and crashed with a TypeError instead of failing."""
    rng = np.random.default_rng(0)
    ref = {"Identity": rng.uniform(0, 256, (3, 195)).astype(np.float32), "Identity_1": np.zeros((3, 1), np.float32),
           "Identity_2": np.zeros((3, 256, 256, 1), np.float32), "Identity_4": np.zeros((3, 117), np.float32)}
    res = landmark_drift(ref, ref)
    assert res["drift_mean"] is None and res["n_flag_ok"] == 0
    ok, why = passes_gate("landmarks", res, {"drift_max": 0.01})
    assert not ok
    assert "no landmark drift" in why and "drift_max 0.01" in why


CAL = {"input_size": 224, "calib_samples": 4, "heldout_samples": 4, "golden_samples": 2}


def _hand(photo: str, split: str) -> HandRoi:
    return HandRoi(photo, split, 0, "left", Roi(200.0, 200.0, 80.0, 0.0), 0.9)


@pytest.mark.parametrize("splits, missing", [(("calib", "calib"), "held-out"), (("heldout", "heldout"), "calibration")])
def test_hand_sets_refuse_a_split_without_hands(splits, missing):
    """With no hand in one split, hand_sets silently built that split from the other split's hands: the held-out
    gate then measured the INT8 model on its own calibration images (or calibration used held-out photos), and the
    provenance still said "heldout". It must be an error naming the split, as landmark_sets is."""
    photo = {"calib": "bus", "heldout": "astronaut"}
    hands = [_hand(photo[s], s) for s in splits]
    with pytest.raises(RuntimeError, match=f"no hand in the {missing} photos"):
        hand_sets(cache_dir(), hands, CAL)


def test_hand_sets_keep_the_splits_apart():
    """With hands in both splits every calibration sample comes from a calibration photo and every held-out sample
    from a held-out photo; the same inputs give the same arrays (seeded)."""
    hands = [_hand("bus", "calib"), _hand("zidane", "calib"), _hand("astronaut", "heldout")]
    a = hand_sets(cache_dir(), hands, CAL)
    b = hand_sets(cache_dir(), hands, CAL)
    assert {m["photo"] for m in a["calib"][1]} <= {"bus", "zidane"}
    assert {m["photo"] for m in a["heldout"][1]} == {"astronaut"}
    for split in ("calib", "heldout", "golden"):
        assert np.array_equal(a[split][0], b[split][0])
    assert a["calib"][0].shape == (4, 224, 224, 3) and a["calib"][0].dtype == np.uint8


K_TRUE = np.array([[610.0, 0, 322.0], [0, 610.0, 236.0], [0, 0, 1]])
PATTERN, SQUARE = (9, 6), 0.03


def _render(rvec, centre_cam, seed: int, size=(640, 480), px_per_m: float = 4000) -> np.ndarray:
    """A printed 9x6-inner-corner board (30 mm squares) with its centre at centre_cam (camera metres), rotated by
    rvec, seen by K_TRUE; blurred, with sensor noise."""
    import cv2

    cols, rows, s = PATTERN[0] + 1, PATTERN[1] + 1, int(SQUARE * px_per_m)
    tex = np.full(((rows + 2) * s, (cols + 2) * s), 255, np.uint8)
    for r in range(rows):
        for c in range(cols):
            if (r + c) % 2 == 0:
                tex[(r + 1) * s:(r + 2) * s, (c + 1) * s:(c + 2) * s] = 0
    S = np.array([[1 / px_per_m, 0, -2 * SQUARE], [0, 1 / px_per_m, -2 * SQUARE], [0, 0, 1]])
    R, _ = cv2.Rodrigues(np.asarray(rvec, float))
    t = np.asarray(centre_cam, float) - R @ (np.array([PATTERN[0] - 1, PATTERN[1] - 1, 0]) * SQUARE / 2)
    img = cv2.warpPerspective(tex, K_TRUE @ np.column_stack([R[:, 0], R[:, 1], t]) @ S, size,
                              flags=cv2.INTER_AREA, borderValue=255)
    img = cv2.GaussianBlur(img, (3, 3), 0.6).astype(float) + np.random.default_rng(seed).normal(0, 2.0, img.shape[:2])
    return np.clip(img, 0, 255).astype(np.uint8)


def test_small_board_squares_calibrate_right():
    """The board held 1.8 m from a 640x480 mirror camera: squares of about 10 px. cornerSubPix searched a fixed
    15x15 px window, which holds the neighbouring corners too, so corners were pulled off and the result came out
    with fx = 675 px (true 610, 11 % off: garments drawn at the wrong size and depth) at an RMS of 1.8 px. The
    search window must stay inside the corner spacing. (At that distance the focal length is loose even with exact
    corners, a standard error of 4-6 %, so fx is checked to 6 % and the corners by the RMS; the fit warns.)"""
    from calibration.camera import calibrate_checkerboard

    rng = np.random.default_rng(5)
    dist, tilt = 1.8, np.radians(25)
    views = [_render([tilt * np.cos(b), tilt * np.sin(b), 0],
                     [rng.uniform(-0.3, 0.3) * dist, rng.uniform(-0.2, 0.2) * dist, dist * rng.uniform(0.9, 1.1)], i)
             for i, b in enumerate(np.linspace(0, 2 * np.pi, 10, endpoint=False))]
    cal = calibrate_checkerboard(views, PATTERN, SQUARE)
    assert cal.views_used == 10
    assert cal.fx == pytest.approx(610, rel=0.06) and cal.fy == pytest.approx(610, rel=0.06)
    assert cal.rms_px < 1.0 and cal.lens_rms_px < 1.0
    assert cal.fx_std_px > 0.03 * cal.fx  # named as uncertain (calibration/camera.py FX_UNCERTAIN)


def test_palm_detector_outputs_decode_with_the_palm_anchors():
    """The palm detector's INT8 gate (manifest metric "palm_detector", int8_gate, verify.SANITY) decoded its
    2016-anchor outputs with the face detector's 2304 anchors: every box lands on another anchor's centre, so the
    recall / keypoint drift it gates on compare boxes the runtime (edge.hands.detector, palm anchors) never makes.
    A detection on one anchor with zero offsets must sit on that palm anchor's centre; an unknown metric is an
    error, not the face anchors."""
    from calibration.accuracy import anchors_for, decode
    from edge.hands.roi import palm_anchors

    anchors = palm_anchors(192)
    hot = 1900  # a 16-px-stride anchor: another centre in the face detector's anchor list
    raw = np.zeros((2016, 18), np.float32)
    raw[:, 2:4] = 30.0
    scores = np.full((2016, 1), -10.0, np.float32)
    scores[hot] = 10.0
    (score, box, kps), = decode(raw, scores, anchors_for("palm_detector", 192), 192)
    assert np.allclose((box[:2] + box[2:]) / 2, anchors[hot] * 192)
    assert np.allclose(kps, anchors[hot] * 192)
    with pytest.raises(ValueError, match="no SSD anchors for metric 'hand_landmarks'"):
        anchors_for("hand_landmarks", 224)


def test_one_int8_box_is_not_two_recalled_people():
    """Two people side by side (reference boxes IoU 0.54, both kept by the people detector's NMS at 0.6) and an INT8 model that merged them into
    one box between them (IoU 0.74 with each): one person was lost, but each reference box took the same INT8 box
    as its match and recall came out 1.0. Matching must be one-to-one (people_detector and the SSD detectors)."""
    from calibration.accuracy import detector_agreement
    from calibration.people import agreement
    from edge.pose.anchors import ssd_anchors

    ref_boxes = np.array([[100, 100, 200, 200], [130, 100, 230, 200]], float)
    int8_box = np.array([[115, 100, 215, 200]], float)
    outs = {"ref": (ref_boxes, np.array([0.9, 0.8])), "int8": (int8_box, np.array([0.85]))}
    got = agreement({"k": np.array(["ref"])}, {"k": np.array(["int8"])}, lambda o: outs[str(o["k"][0])], 416)
    assert got["n_ref_detections"] == 2 and got["recall"] == 0.5

    anchors = ssd_anchors(224)
    size = 224

    def raw(boxes: np.ndarray) -> dict[str, np.ndarray]:
        """SSD outputs with one confident anchor per box (the anchor nearest the box centre, offsets to the box)."""
        b = np.zeros((1, len(anchors), 12), np.float32)
        s = np.full((1, len(anchors), 1), -10.0, np.float32)
        for x0, y0, x1, y1 in boxes:
            c = np.array([(x0 + x1) / 2, (y0 + y1) / 2]) / size
            i = int(np.argmin(np.linalg.norm(anchors - c, axis=1)))
            b[0, i, :4] = [(c[0] - anchors[i, 0]) * size, (c[1] - anchors[i, 1]) * size, x1 - x0, y1 - y0]
            s[0, i, 0] = 10.0
        return {"Identity": b, "Identity_1": s}

    # SSD detectors merge boxes over IoU 0.3 (weighted NMS); at IoU 0.29 both people stay, and a box between them
    # overlaps each by IoU 0.57
    ref = raw(np.array([[40, 60, 100, 120], [73, 60, 133, 120]], float))
    res = detector_agreement(ref, raw(np.array([[56.5, 60, 116.5, 120]], float)), "pose_detector", size)
    assert res["n_ref_detections"] == 2 and res["recall"] == 0.5
