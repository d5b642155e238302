"""Rotated square ROIs: from a detection, from tracked landmarks, and the affine crop for the landmark model."""
from __future__ import annotations

import math

import cv2
import numpy as np

from edge.pose.types import Roi


def normalize_angle(a: float) -> float:
    return a - 2 * math.pi * math.floor((a + math.pi) / (2 * math.pi))


def roi_from_points(center: np.ndarray, scale_point: np.ndarray, scale: float = 1.25) -> Roi:
    """AlignmentPointsRectsCalculator (rotation so centre→scale point is 90°) + RectTransformation(scale, square)."""
    (x0, y0), (x1, y1) = center, scale_point
    size = 2 * math.hypot(x1 - x0, y1 - y0) * scale
    rotation = normalize_angle(math.pi / 2 - math.atan2(-(y1 - y0), x1 - x0))
    return Roi(float(x0), float(y0), float(size), float(rotation))


def roi_from_detection(keypoints: np.ndarray) -> Roi:
    """Detector keypoints 0 (mid-hip) and 1 (full-body scale point), image px."""
    return roi_from_points(keypoints[0], keypoints[1])


def roi_from_aux(aux_xy: np.ndarray) -> Roi:
    """Tracking ROI from the landmark model's auxiliary landmarks 33 (centre) and 34 (scale), image px."""
    return roi_from_points(aux_xy[0], aux_xy[1])


def crop_affine(roi: Roi, out: int = 256) -> np.ndarray:
    """2x3 affine mapping crop px (u, v) → image px."""
    c, s = math.cos(roi.rotation), math.sin(roi.rotation)
    k = roi.size / out
    a = np.array([[c * k, -s * k, 0.0], [s * k, c * k, 0.0]], np.float64)
    a[:, 2] = np.array([roi.cx, roi.cy]) - a[:, :2] @ np.array([out / 2, out / 2])
    return a


def crop(image_rgb: np.ndarray, roi: Roi, out: int = 256, *, bgr: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Rotated crop → ((1, out, out, 3) float32 RGB in [0, 1], affine crop px → image px). bgr: the image is BGR
    (a camera frame); only the crop is converted, which gives the same values as converting the whole frame."""
    a = crop_affine(roi, out)
    m = cv2.invertAffineTransform(a)
    patch = cv2.warpAffine(image_rgb, m, (out, out), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if bgr:
        patch = cv2.cvtColor(patch, cv2.COLOR_BGR2RGB)
    tensor = patch.astype(np.float32)
    tensor *= 1 / 255.0
    return tensor[None], a


def to_image(points_xy: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Map (N, 2) crop px → image px."""
    return points_xy @ affine[:, :2].T + affine[:, 2]
