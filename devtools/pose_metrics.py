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


def roi_gain(model, image: np.ndarray, roi, *, scale: float = 1.3, shift: float = 0.1, bgr: bool = True
             ) -> tuple[float, float]:
    """How much of an error in its ROI a landmark model hands on to the next tracking ROI (edge.pose.tracker: the
    next ROI is roi_from_aux of the model's auxiliary landmarks). `model` is a LandmarkModel (called with an image
    and ROIs). The model runs on `roi`, on copies ×scale and ÷scale in size and on copies moved ±shift × size in x
    and in y; returns (scale gain, shift gain): the next ROI's change in log size / centre (along the applied move)
    over the applied change, averaged. 0: the next ROI ignores the error (the loop corrects it in one frame);
    1: it keeps all of it, so errors persist and add up over frames; above 1: they grow."""
    import math

    from edge.pose.roi import roi_from_aux
    from edge.pose.types import Roi

    def next_roi(r: Roi) -> Roi:
        return roi_from_aux(model(image, [r], bgr=bgr)[0].aux)

    base = next_roi(roi)
    gs = [math.log(next_roi(Roi(roi.cx, roi.cy, roi.size * k, roi.rotation)).size / base.size) / math.log(k)
          for k in (scale, 1 / scale)]
    gc = []
    for dx, dy in ((shift, 0.0), (-shift, 0.0), (0.0, shift), (0.0, -shift)):
        applied = np.array([dx, dy]) * roi.size
        n = next_roi(Roi(roi.cx + applied[0], roi.cy + applied[1], roi.size, roi.rotation))
        gc.append(float(np.array([n.cx - base.cx, n.cy - base.cy]) @ applied / (applied @ applied)))
    return float(np.mean(gs)), float(np.mean(gc))
