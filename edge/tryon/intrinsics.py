"""Pinhole camera intrinsics for the mirror camera, resolved from config for a frame size."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)
_warned: set[tuple] = set()


@dataclass(frozen=True)
class Intrinsics:
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    @classmethod
    def from_hfov(cls, width: int, height: int, hfov_deg: float) -> Intrinsics:
        f = 0.5 * width / math.tan(math.radians(hfov_deg) / 2)
        return cls(f, f, width / 2, height / 2, width, height)

    @classmethod
    def from_config(cls, cam, width: int, height: int) -> Intrinsics:
        """From a `CameraIntrinsics` section, rescaled from its calibration resolution to width x height."""
        if cam.fx <= 0:
            return cls.from_hfov(width, height, cam.hfov_deg)
        base = cls(cam.fx, cam.fy, cam.cx or cam.width / 2, cam.cy or cam.height / 2, cam.width, cam.height)
        key = (cam.width, cam.height, width, height)
        if abs(cam.width * height - cam.height * width) > 0.01 * cam.width * height and key not in _warned:
            _warned.add(key)
            log.warning("[tryon.camera] was calibrated at %dx%d and is used at %dx%d, another aspect ratio: right if "
                        "the frames are the calibrated ones scaled to this size, wrong for a cropped camera mode "
                        "(fix: calibrate at the resolution the mirror runs, `python -m calibration.camera_cli`)",
                        cam.width, cam.height, width, height)
        return base.scaled(width, height)

    def scaled(self, width: int, height: int) -> Intrinsics:
        """Same camera at another resolution (same field of view, as a camera mode change that scales)."""
        sx, sy = width / self.width, height / self.height
        return Intrinsics(self.fx * sx, self.fy * sy, self.cx * sx, self.cy * sy, width, height)

    @property
    def K(self) -> np.ndarray:
        return np.array([[self.fx, 0, self.cx], [0, self.fy, self.cy], [0, 0, 1.0]])

    def project(self, pts: np.ndarray) -> np.ndarray:
        """OpenCV camera coordinates (x right, y down, z forward, metres) -> pixel (u, v)."""
        pts = np.asarray(pts, float)
        z = np.maximum(pts[..., 2], 1e-6)
        return np.stack([self.fx * pts[..., 0] / z + self.cx, self.fy * pts[..., 1] / z + self.cy], axis=-1)
