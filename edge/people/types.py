"""Person detections of the people stage: a typed list (PersonDetection) or, for the tracker and analytics, the
column form edge.core.detections.Detections (class 0 = person)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from edge.core.detections import COCO_KEYPOINTS, Detections

KEYPOINT_NAMES = COCO_KEYPOINTS  # order of PersonDetection.keypoints (MoveNet-style models)
PERSON = 0  # class_id in Detections (COCO)


@dataclass
class PersonDetection:
    box: np.ndarray  # (4,) float64 x1, y1, x2, y2 in frame px
    score: float  # detector confidence in [0, 1]
    keypoints: np.ndarray | None = None  # (17, 3) x, y (frame px), score: only from models that have them

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def foot(self) -> tuple[float, float]:
        """Bottom centre of the box (where the person stands), frame px."""
        return float((self.box[0] + self.box[2]) / 2), float(self.box[3])


def to_detections(people: Sequence[PersonDetection]) -> Detections:
    """The column form: xyxy, score, class_id 0; keypoints (N, 17, 3) with COCO names when every person has them."""
    if not people:
        return Detections.empty()
    kp = [p.keypoints for p in people]
    has_kp = all(k is not None for k in kp)
    return Detections(np.stack([p.box for p in people]), np.array([p.score for p in people]),
                      np.full(len(people), PERSON), np.stack(kp) if has_kp else None,
                      keypoint_names=KEYPOINT_NAMES if has_kp else None)
