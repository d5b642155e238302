"""Premultiplied-alpha 'over' of a garment render onto the BGR camera frame, inside the garment's bbox only."""
from __future__ import annotations

import cv2
import numpy as np

from edge.tryon.renderer import RenderOutput


def composite_inplace(frame_bgr: np.ndarray, out: RenderOutput) -> np.ndarray:
    """frame = garment + frame * (1 - alpha), premultiplied (pyrender's RGBA on a transparent background)."""
    if out.empty:
        return frame_bgr
    x, y, w, h = out.bbox
    rgba = out.rgba
    roi = frame_bgr[y:y + h, x:x + w]
    inv = cv2.merge([255 - rgba[..., 3]] * 3)
    cv2.add(cv2.multiply(roi, inv, scale=1.0 / 255.0), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGR), dst=roi)
    return frame_bgr
