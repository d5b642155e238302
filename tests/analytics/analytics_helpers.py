"""Builders of hand-made detections for the analytics tests."""
from __future__ import annotations

import numpy as np

from edge.core.detections import COCO_KEYPOINTS, Detections


def box_at(x: float, y: float, w: float = 40.0, h: float = 120.0) -> list[float]:
    """A person box whose bottom centre is (x, y)."""
    return [x - w / 2, y - h, x + w / 2, y]


def tracked(*people: tuple) -> Detections:
    """Detections already tracked: each person is (tracker_id, x, y) with (x, y) the box's bottom centre."""
    if not people:
        return Detections.empty(tracked=True)
    return Detections(np.array([box_at(x, y) for _, x, y in people]), np.full(len(people), 0.9),
                      np.zeros(len(people)), tracker_id=np.array([p[0] for p in people]))


def with_wrists(*people: tuple) -> Detections:
    """Tracked detections with COCO keypoints: each person is (tracker_id, (lx, ly) | None, (rx, ry) | None), the
    left and right wrist (None: not visible)."""
    kps = np.zeros((len(people), len(COCO_KEYPOINTS), 3), np.float32)
    for i, (_, left, right) in enumerate(people):
        for name, p in (("left_wrist", left), ("right_wrist", right)):
            if p is not None:
                kps[i, COCO_KEYPOINTS.index(name)] = (p[0], p[1], 0.9)
    return Detections(np.array([box_at(300, 400) for _ in people]), np.full(len(people), 0.9),
                      np.zeros(len(people)), kps, np.array([p[0] for p in people]), COCO_KEYPOINTS)
