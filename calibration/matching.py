"""Detection matching shared by the INT8 agreement metrics (calibration.accuracy, calibration.people)."""
from __future__ import annotations

import numpy as np


def match_one_to_one(iou: np.ndarray, min_iou: float = 0.5) -> np.ndarray:
    """For each row (reference detection) the column (test detection) it is matched to, -1 for none: pairs over
    min_iou taken greedily by IoU, each test detection at most once (one merged box is not two recalled ones)."""
    match = np.full(iou.shape[0], -1)
    taken = np.zeros(iou.shape[1], bool)
    for flat in np.argsort(-iou, axis=None, kind="stable"):
        i, j = divmod(int(flat), iou.shape[1])
        if iou[i, j] <= min_iou:
            break
        if match[i] < 0 and not taken[j]:
            match[i], taken[j] = j, True
    return match
