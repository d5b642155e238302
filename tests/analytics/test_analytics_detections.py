"""Detections container (slicing, anchors, merge, IoU) and the PoseResult adapter."""
from __future__ import annotations

import numpy as np
import pytest

from edge.analytics.pose_adapter import detections_from_pose
from edge.core.detections import COCO_KEYPOINTS, Detections, box_iou
from edge.pose.types import LANDMARK_NAMES, LM, PersonPose, PoseResult, Roi


def three() -> Detections:
    kp = np.zeros((3, 17, 3), np.float32)
    kp[:, COCO_KEYPOINTS.index("left_wrist")] = [[10, 20, 0.9], [30, 40, 0.2], [50, 60, 0.8]]
    return Detections([[0, 0, 10, 20], [10, 10, 30, 50], [100, 100, 140, 220]], [0.9, 0.4, 0.7], [0, 0, 1], kp,
                      [5, -1, 7], COCO_KEYPOINTS)


def test_shapes_dtypes_and_empty():
    d = three()
    assert len(d) == 3 and d.xyxy.dtype == np.float32 and d.class_id.dtype == np.int32
    assert d.tracker_id.dtype == np.int64
    e = Detections.empty(keypoint_names=COCO_KEYPOINTS, tracked=True)
    assert len(e) == 0 and e.is_empty() and e.keypoints.shape == (0, 17, 3) and e.tracker_id.shape == (0,)
    with pytest.raises(ValueError, match="score"):
        Detections([[0, 0, 1, 1]], [0.5, 0.6], [0])
    with pytest.raises(ValueError, match="keypoints"):
        Detections([[0, 0, 1, 1]], [0.5], [0], np.zeros((1, 17, 2)))


def test_slicing_and_filtering():
    d = three()
    assert d[d.score > 0.5].tracker_id.tolist() == [5, 7]
    assert d[1:].class_id.tolist() == [0, 1]
    assert len(d[0]) == 1 and d[0].keypoints.shape == (1, 17, 3)
    assert d[np.array([2, 0])].score.tolist() == pytest.approx([0.7, 0.9])
    assert d.confirmed.tracker_id.tolist() == [5, 7]
    assert d[d.class_id == 1].keypoint_names == COCO_KEYPOINTS
    with pytest.raises(IndexError):
        d[np.array([True, False])]
    with pytest.raises(ValueError, match="tracker"):
        Detections([[0, 0, 1, 1]], [0.5], [0]).confirmed


def test_anchors():
    d = three()
    assert d.anchors("bottom_center")[0].tolist() == [5, 20]
    assert d.anchors("center")[2].tolist() == [120, 160]
    assert d.anchors("top_center")[1].tolist() == [20, 10]
    wrist = d.anchors("left_wrist", min_score=0.5)
    assert wrist[0].tolist() == [10, 20] and np.isnan(wrist[1]).all() and wrist[2].tolist() == [50, 60]
    with pytest.raises(KeyError, match="left_whatever"):
        d.anchors("left_whatever")
    with pytest.raises(KeyError, match="no keypoints"):
        Detections([[0, 0, 1, 1]], [0.5], [0]).anchors("left_wrist")


def test_merge_and_iou():
    d = three()
    m = Detections.merge([d[:1], d[1:]])
    assert m.tracker_id.tolist() == [5, -1, 7] and m.keypoints.shape == (3, 17, 3)
    with pytest.raises(ValueError):
        Detections.merge([d, Detections([[0, 0, 1, 1]], [0.5], [0])])
    iou = box_iou([[0, 0, 10, 10]], [[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    assert iou[0].tolist() == pytest.approx([1.0, 50 / 150, 0.0])


def test_pose_adapter():
    lm = np.zeros((33, 5), np.float32)
    lm[:, 0] = np.linspace(100, 140, 33)
    lm[:, 1] = np.linspace(100, 400, 33)
    lm[:, 3:] = 1.0
    lm[LM["left_wrist"], 3] = 0.1  # not visible: no box contribution, NaN wrist anchor
    hidden = np.zeros((33, 5), np.float32)  # nothing visible: no detection
    people = [PersonPose(4, lm, np.zeros((33, 3)), 0.95, Roi(0, 0, 1, 0)),
              PersonPose(9, hidden, np.zeros((33, 3)), 0.5, Roi(0, 0, 1, 0))]
    d = detections_from_pose(PoseResult(0, 0.0, (480, 640), people), keep_track_ids=True)
    assert len(d) == 1 and d.tracker_id.tolist() == [4] and d.keypoint_names == LANDMARK_NAMES
    assert d.xyxy[0].tolist() == pytest.approx([100, 100, 140, 400])
    assert d.anchors("right_wrist")[0].tolist() == pytest.approx(lm[LM["right_wrist"], :2].tolist())
    assert np.isnan(d.anchors("left_wrist")).all()
    assert detections_from_pose(PoseResult(0, 0.0, (480, 640), [])).tracker_id is None
