"""Detector decode, weighted NMS, ROI and crop geometry, heatmap refinement: hand-checked cases."""
from __future__ import annotations

import math

import numpy as np
import pytest

from edge.pose.anchors import ssd_anchors
from edge.pose.detection import Letterbox, decode, iou, letterbox, weighted_nms
from edge.pose.landmarks import refine_from_heatmap
from edge.pose.roi import crop, crop_affine, roi_from_points, to_image
from edge.pose.tracker import same_person
from edge.pose.types import Roi


def test_anchors_layout():
    a = ssd_anchors()
    assert a.shape == (2254, 2)  # 28*28*2 + 14*14*2 + 7*7*6
    assert a[0] == pytest.approx([0.5 / 28, 0.5 / 28])
    assert a[1] == pytest.approx(a[0])  # two anchors per cell on the stride-8 layer
    assert a[28 * 28 * 2] == pytest.approx([0.5 / 14, 0.5 / 14])  # first stride-16 anchor
    assert a[-1] == pytest.approx([6.5 / 7, 6.5 / 7])  # stride 32: 3 layers x 2 anchors share the 7x7 grid
    assert (a[-6:] == a[-1]).all()  # ... so the last cell holds 6 anchors at one centre


def _raw(index: int, logit: float, offsets: list[float]):
    boxes = np.zeros((1, 2254, 12), np.float32)
    scores = np.full((1, 2254, 1), -100.0, np.float32)
    boxes[0, index] = offsets
    scores[0, index] = logit
    return boxes, scores


def test_decode_single_detection_hand_checked():
    # anchor 0 is at (0.5/28, 0.5/28) = (4, 4) px of 224. Box centre +22.4 px in x, size 44.8 x 67.2;
    # keypoint 0 at the anchor, keypoint 1 40 px above it.
    off = [22.4, 0, 44.8, 67.2, 0, 0, 0, -40, 0, 0, 0, 0]
    boxes, scores = _raw(0, 2.0, off)
    [d] = decode(boxes, scores, Letterbox(1.0, 0.0, 0.0, 224))
    assert d.score == pytest.approx(1 / (1 + math.exp(-2)), abs=1e-6)
    assert d.box == pytest.approx([26.4 - 22.4, 4 - 33.6, 26.4 + 22.4, 4 + 33.6], abs=1e-3)
    assert d.keypoints[0] == pytest.approx([4, 4], abs=1e-3)
    assert d.keypoints[1] == pytest.approx([4, -36], abs=1e-3)
    # letterbox removal: model px = image px * 0.5 + (10, 20)  =>  image px = (model px - pad) / 0.5
    [d2] = decode(boxes, scores, Letterbox(0.5, 10.0, 20.0, 224))
    assert d2.keypoints[0] == pytest.approx([(4 - 10) / 0.5, (4 - 20) / 0.5], abs=1e-3)


def test_decode_threshold_and_empty():
    boxes, scores = _raw(5, -1.0, [0] * 12)  # score 0.27 < 0.5
    assert decode(boxes, scores, Letterbox(1.0, 0, 0, 224)) == []
    assert decode(boxes, scores, Letterbox(1.0, 0, 0, 224), threshold=0.2) != []


def test_decode_drops_boxes_of_negative_or_nan_size():
    """A raw box with a negative (or NaN) width or height is dropped before NMS, as MediaPipe's
    TensorsToDetectionsCalculator does; kept, it became a person or hand ROI of negative size."""
    boxes, scores = _raw(0, 2.0, [0, 0, -30.0, -40.0] + [0] * 8)
    assert decode(boxes, scores, Letterbox(1.0, 0, 0, 224)) == []
    boxes[0, 0, 2] = np.nan
    assert decode(boxes, scores, Letterbox(1.0, 0, 0, 224)) == []
    boxes[0, 0, :4] = [0, 0, 30.0, 40.0]
    assert len(decode(boxes, scores, Letterbox(1.0, 0, 0, 224))) == 1

def test_iou_hand_checked():
    a = np.array([0, 0, 10, 10.0])
    b = np.array([[1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 10]], float)
    assert iou(a, b) == pytest.approx([90 / 110, 0, 1], abs=1e-6)


def test_weighted_nms_merges_cluster_by_score():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], float)
    kps = np.zeros((3, 4, 2))
    kps[1] += 3.0
    scores = np.array([0.9, 0.6, 0.7])
    out = weighted_nms(boxes, kps, scores, 0.3)
    assert [round(s, 3) for s, _, _ in out] == [0.9, 0.7]  # cluster score = its best member's, best first
    assert out[0][1] == pytest.approx([0.6 / 1.5, 0, 10 + 0.6 / 1.5, 10])  # (0*.9 + 1*.6) / 1.5
    assert out[0][2][0] == pytest.approx([3 * 0.6 / 1.5] * 2)
    assert out[1][1] == pytest.approx([50, 50, 60, 60])


def test_weighted_nms_keeps_disjoint_boxes():
    boxes = np.array([[0, 0, 10, 10], [11, 0, 21, 10]], float)
    out = weighted_nms(boxes, np.zeros((2, 4, 2)), np.array([0.8, 0.9]), 0.3)
    assert len(out) == 2 and out[0][0] == pytest.approx(0.9)


def test_roi_from_points_upright_and_rotated():
    r = roi_from_points(np.array([100.0, 200.0]), np.array([100.0, 100.0]))  # scale point straight above
    assert (r.cx, r.cy, r.size, r.rotation) == pytest.approx((100, 200, 2 * 100 * 1.25, 0.0))
    r = roi_from_points(np.array([100.0, 200.0]), np.array([200.0, 200.0]))  # person lying, head to the right
    assert r.rotation == pytest.approx(math.pi / 2)
    r = roi_from_points(np.array([0.0, 0.0]), np.array([0.0, 10.0]))  # upside down
    assert abs(r.rotation) == pytest.approx(math.pi)


def test_crop_affine_maps_centre_and_axes():
    a = crop_affine(Roi(100, 200, 256, 0.0), 256)
    assert to_image(np.array([[128.0, 128.0], [0.0, 0.0]]), a) == pytest.approx(np.array([[100, 200], [-28, 72]]))
    a = crop_affine(Roi(100, 200, 512, math.pi / 2), 256)  # 2 image px per crop px, crop x axis -> image +y
    assert to_image(np.array([[138.0, 128.0]]), a) == pytest.approx(np.array([[100, 220]]))


def test_crop_samples_the_roi():
    img = np.zeros((100, 200, 3), np.uint8)
    img[40:60, 140:160] = 255  # bright square centred at (150, 50)
    patch, a = crop(img, Roi(150, 50, 40, 0.0), 256)
    assert patch.shape == (1, 256, 256, 3) and patch.dtype == np.float32
    assert patch[0, 128, 128, 0] == pytest.approx(1.0)  # centre of the ROI is the square
    assert patch[0, 5, 5, 0] == pytest.approx(0.0)  # corner of the ROI is outside it


def test_letterbox_transform_and_border():
    img = np.full((50, 100, 3), 255, np.uint8)
    t, lb = letterbox(img, 224)
    assert lb.scale == pytest.approx(2.24) and lb.pad_x == 0 and lb.pad_y == pytest.approx(56)
    assert t.shape == (1, 224, 224, 3)
    assert t[0, 10, 112, 0] == pytest.approx(-1.0)  # zero border -> -1
    assert t[0, 112, 112, 0] == pytest.approx(1.0)  # white -> +1


def test_heatmap_refine_weighted_mean_and_threshold():
    hm = np.full((64, 64, 2), -10.0, np.float32)
    hm[20, 30, 0] = hm[20, 31, 0] = 10.0  # two confident cells side by side
    xy = np.array([[31.2 / 64, 20.5 / 64], [10 / 64, 10 / 64]])
    out = refine_from_heatmap(xy, hm, kernel=7)
    assert out[0] == pytest.approx([30.5 / 64, 20 / 64], abs=1e-3)  # cell indices, no half-cell offset (MediaPipe)
    assert out[1] == pytest.approx(xy[1])  # peak confidence < 0.5: unchanged
    far = refine_from_heatmap(np.array([[1.5, 0.3]]), hm[..., :1])  # outside the heatmap: unchanged
    assert far[0] == pytest.approx([1.5, 0.3])


def test_same_person_by_normalized_centre_distance():
    a = np.array([[100.0, 300.0], [100.0, 100.0]])  # body scale 200 px
    assert same_person(a, a + [50, 0], 0.35)  # 0.25 x scale apart
    assert not same_person(a, a + [80, 0], 0.35)  # 0.4 x scale apart: side by side
    assert not same_person(a, a + [0, 300], 0.35)


class _AuxModel:
    """A stand-in landmark model with a chosen tracking behaviour: its auxiliary points (ROI centre, scale point)
    are the true ones moved `follow` of the way towards where the given ROI puts them (0: it finds the body
    wherever the crop is; 1: it reports the crop, whatever is in it)."""

    def __init__(self, follow: float, true: Roi):
        self.follow, self.true = follow, true

    def _aux(self, r: Roi) -> np.ndarray:
        return np.array([[r.cx, r.cy], [r.cx, r.cy - r.size / 2.5]])  # roi_from_points: size = 2 * 1.25 * dist

    def __call__(self, image, rois, *, bgr=False):
        f, a, b = self.follow, self._aux(self.true), self._aux(rois[0])
        return [type("Out", (), {"aux": (1 - f) * a + f * b})()]


@pytest.mark.parametrize("follow", [0.0, 0.5, 1.0])
def test_roi_gain_is_the_share_of_a_roi_error_handed_on(follow):
    """devtools.pose_metrics.roi_gain: a model that finds the body wherever its crop is has gain 0, one that reports
    its crop has gain 1, and half-way is ~0.5 (exact for the shift; the size gain is measured in log size)."""
    from devtools.pose_metrics import roi_gain

    true = Roi(320.0, 240.0, 400.0, 0.0)
    g_scale, g_shift = roi_gain(_AuxModel(follow, true), None, true)
    assert g_shift == pytest.approx(follow, abs=1e-9)
    assert g_scale == pytest.approx(follow, abs=0.02)
