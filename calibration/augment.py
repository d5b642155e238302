"""Seeded augmentations for calibration data. Every function returns the image and the parameters it drew."""
from __future__ import annotations

import math

import cv2
import numpy as np

from edge.pose.types import Roi


def _r(v: float) -> float:
    return round(float(v), 4)


def jitter_roi(roi: Roi, rng: np.random.Generator, shift: float = 0.08, scale: tuple = (0.85, 1.25),
               rot_deg: float = 25.0) -> tuple[Roi, dict]:
    """ROI jitter (± shift of its size), scale and rotation, as a tracker or detector would get them wrong."""
    dx, dy = rng.uniform(-shift, shift, 2) * roi.size
    s = rng.uniform(*scale)
    dr = rng.uniform(-rot_deg, rot_deg)
    out = Roi(roi.cx + dx, roi.cy + dy, roi.size * s, roi.rotation + math.radians(dr))
    return out, {"dx": _r(dx / roi.size), "dy": _r(dy / roi.size), "scale": _r(s), "rot_deg": _r(dr)}


def photometric(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """Shop-lighting style changes on an RGB uint8 image: brightness/contrast, white-balance tint, saturation,
    grayscale, gamma, blur, sensor noise, JPEG re-encoding."""
    p: dict = {}
    x = img.astype(np.float32)
    c, b = rng.uniform(0.7, 1.3), rng.uniform(-30, 30)
    x = (x - 128.0) * c + 128.0 + b
    tint = rng.uniform(0.85, 1.15, 3)
    x = x * tint.astype(np.float32)
    sat = rng.uniform(0.6, 1.3)
    grey = x.mean(axis=2, keepdims=True)
    x = grey + (x - grey) * sat
    p.update(contrast=_r(c), brightness=_r(b), tint=[_r(t) for t in tint], saturation=_r(sat))
    if rng.random() < 0.1:
        x = np.repeat(x.mean(axis=2, keepdims=True), 3, axis=2)
        p["grayscale"] = True
    x = np.clip(x, 0, 255)
    g = rng.uniform(0.7, 1.4)
    x = 255.0 * (x / 255.0) ** g
    p["gamma"] = _r(g)
    if rng.random() < 0.3:
        sigma = rng.uniform(0.4, 1.5)
        x = cv2.GaussianBlur(x, (0, 0), sigma)
        p["blur_sigma"] = _r(sigma)
    if rng.random() < 0.5:
        sigma = rng.uniform(1.0, 6.0)
        x = x + rng.normal(0.0, sigma, x.shape).astype(np.float32)
        p["noise_sigma"] = _r(sigma)
    out = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        q = int(rng.integers(30, 91))
        ok, enc = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, q])
        out = cv2.imdecode(enc, cv2.IMREAD_COLOR)[..., ::-1].copy()
        p["jpeg_quality"] = q
    return out, p


def random_window(shape: tuple, rng: np.random.Generator, full_p: float = 0.25, min_frac: float = 0.4
                  ) -> tuple[tuple[int, int, int, int], dict]:
    """A random sub-window (x0, y0, x1, y1) of an image, or the whole image with probability full_p."""
    h, w = shape[:2]
    if rng.random() < full_p:
        return (0, 0, w, h), {"window": [0.0, 0.0, 1.0, 1.0]}
    fw, fh = rng.uniform(min_frac, 1.0, 2)
    x0, y0 = rng.uniform(0, 1 - fw), rng.uniform(0, 1 - fh)
    box = (int(x0 * w), int(y0 * h), max(int(x0 * w) + 8, int((x0 + fw) * w)), max(int(y0 * h) + 8, int((y0 + fh) * h)))
    return box, {"window": [_r(x0), _r(y0), _r(x0 + fw), _r(y0 + fh)]}
