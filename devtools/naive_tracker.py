"""Baseline tracker for the behaviour benchmark: greedy IoU matching to the previous frame, no motion model, no
confirmation, no grace. Every detection gets an id at once; a person missed for one frame comes back as a new id."""
from __future__ import annotations

import numpy as np

from edge.core.detections import Detections, box_iou


class NaiveTracker:
    """`update(detections, t)` returns the detections with tracker_id set (never -1)."""

    def __init__(self, min_iou: float = 0.3, min_score: float = 0.0):
        self.min_iou, self.min_score = min_iou, min_score
        self._prev_boxes = np.zeros((0, 4), np.float32)
        self._prev_ids = np.zeros(0, np.int64)
        self._next_id = 1

    def update(self, detections: Detections, t: float) -> Detections:
        ids = np.full(len(detections), -1, np.int64)
        iou = box_iou(self._prev_boxes, detections.xyxy)
        used_prev: set[int] = set()
        for flat in np.argsort(-iou, axis=None):  # best overlaps first
            i, j = np.unravel_index(flat, iou.shape)
            if iou[i, j] < self.min_iou:
                break
            if i in used_prev or ids[j] != -1:
                continue
            used_prev.add(int(i))
            ids[j] = self._prev_ids[i]
        for j in np.flatnonzero(ids == -1):
            if detections.score[j] >= self.min_score:
                ids[j] = self._next_id
                self._next_id += 1
        keep = ids >= 0
        self._prev_boxes, self._prev_ids = detections.xyxy[keep], ids[keep]
        return detections.with_tracker_id(ids)
