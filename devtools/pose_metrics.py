"""Landmark agreement metric: mean 2D distance normalized by torso size, over landmarks the reference sees."""
from __future__ import annotations

import numpy as np

from edge.pose.types import LM


def torso_size(landmarks: np.ndarray) -> float:
    """Distance mid-shoulder → mid-hip in px of a (33, >=2) landmark array."""
    sh = (landmarks[LM["left_shoulder"], :2] + landmarks[LM["right_shoulder"], :2]) / 2
    hip = (landmarks[LM["left_hip"], :2] + landmarks[LM["right_hip"], :2]) / 2
    return float(np.linalg.norm(sh - hip))


def drift(reference: np.ndarray, test: np.ndarray, visibility: float = 0.5) -> float | None:
    """Mean |test - reference| (x, y) over landmarks with reference visibility > `visibility`, divided by the
    reference's torso size. None when no landmark is visible or the torso is degenerate."""
    vis = reference[:, 3] > visibility
    torso = torso_size(reference)
    if not vis.any() or torso < 1e-6:
        return None
    d = np.linalg.norm(test[vis, :2] - reference[vis, :2], axis=1)
    return float(d.mean() / torso)
