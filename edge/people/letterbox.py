"""Letterbox a frame into a square model input and map boxes back (keep aspect, centred, black border)."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Letterbox:
    scale: float  # model px per frame px
    pad_x: float  # model px left of the frame
    pad_y: float  # model px above the frame
    size: int

    def to_frame(self, boxes: np.ndarray) -> np.ndarray:
        """(N, 4) x1y1x2y2 model px → frame px."""
        return (np.asarray(boxes, np.float64) - [self.pad_x, self.pad_y, self.pad_x, self.pad_y]) / self.scale

    def points_to_frame(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2) x, y model px → frame px."""
        return (np.asarray(xy, np.float64) - [self.pad_x, self.pad_y]) / self.scale


def letterbox_u8(image: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """(size, size, 3) uint8 canvas (channel order unchanged, bilinear) and the transform."""
    h, w = image.shape[:2]
    s = size / max(h, w)
    px, py = (size - w * s) / 2, (size - h * s) / 2
    m = np.array([[s, 0.0, px], [0.0, s, py]], np.float64)
    canvas = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=0)
    return canvas, Letterbox(s, px, py, size)


def to_tensor(canvas: np.ndarray) -> np.ndarray:
    """(1, H, W, 3) float32 in [0, 1] of a uint8 canvas."""
    t = canvas.astype(np.float32)
    t *= 1 / 255.0
    return t[None]
