"""Mirror-camera intrinsics: checkerboard calibration (OpenCV) or a focal-length estimate from a known FOV.

The result is written as a `[tryon.camera]` TOML snippet for the device config (edge/tryon/config.py).
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge.tryon.intrinsics import Intrinsics

log = logging.getLogger(__name__)
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


class CalibrationError(ValueError):
    """Calibration could not produce intrinsics (too few usable views, inconsistent sizes)."""


@dataclass
class CameraCalibration:
    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int
    method: str
    rms_px: float | None = None  # reprojection error (checkerboard only)
    dist: list[float] = field(default_factory=list)  # k1 k2 p1 p2 k3 (checkerboard only)
    views_used: int = 0

    @property
    def hfov_deg(self) -> float:
        return math.degrees(2 * math.atan(self.width / (2 * self.fx)))

    def to_toml(self) -> str:
        """`[tryon.camera]` section for the device config."""
        lines = [f"# {self.method}; horizontal FOV {self.hfov_deg:.1f} deg"]
        if self.rms_px is not None:
            lines.append(f"# reprojection RMS {self.rms_px:.3f} px over {self.views_used} views; "
                         f"distortion k1..k3 = {', '.join(f'{d:.4f}' for d in self.dist)}")
        lines += ["[tryon.camera]", f"fx = {self.fx:.2f}", f"fy = {self.fy:.2f}", f"cx = {self.cx:.2f}",
                  f"cy = {self.cy:.2f}", f"width = {self.width}", f"height = {self.height}"]
        return "\n".join(lines) + "\n"


def from_hfov(width: int, height: int, hfov_deg: float) -> CameraCalibration:
    """Focal length from a known horizontal field of view (datasheet), principal point at the centre."""
    if not 10 < hfov_deg < 170:
        raise CalibrationError(f"horizontal FOV {hfov_deg} deg is not plausible (10..170)")
    k = Intrinsics.from_hfov(width, height, hfov_deg)
    return CameraCalibration(k.fx, k.fy, k.cx, k.cy, width, height, method=f"estimate from hfov {hfov_deg} deg")


def find_corners(gray: np.ndarray, pattern: tuple[int, int]) -> np.ndarray | None:
    """Sub-pixel inner-corner positions of a (cols, rows) checkerboard, or None."""
    ok, corners = cv2.findChessboardCorners(gray, pattern, cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE)
    if not ok:
        return None
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 40, 1e-3)
    return cv2.cornerSubPix(gray, corners, (7, 7), (-1, -1), crit)


def calibrate_checkerboard(images, pattern: tuple[int, int] = (9, 6), square_m: float = 0.025,
                           min_views: int = 5) -> CameraCalibration:
    """Calibrate from checkerboard views (paths or BGR/gray arrays); pattern = inner corners (cols, rows)."""
    obj = np.zeros((pattern[0] * pattern[1], 3), np.float32)
    obj[:, :2] = np.mgrid[0:pattern[0], 0:pattern[1]].T.reshape(-1, 2) * square_m
    obj_pts, img_pts, size = [], [], None
    for im in images:
        name = str(im) if isinstance(im, (str, Path)) else "<array>"
        img = cv2.imread(str(im), cv2.IMREAD_GRAYSCALE) if isinstance(im, (str, Path)) else im
        if img is None:
            log.warning("%s: not an image, skipped", name)
            continue
        gray = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        if size is None:
            size = gray.shape[::-1]
        elif gray.shape[::-1] != size:
            raise CalibrationError(f"{name}: size {gray.shape[::-1]} differs from {size}; use one camera mode")
        c = find_corners(gray, pattern)
        if c is None:
            log.info("%s: checkerboard %dx%d not found", name, *pattern)
            continue
        obj_pts.append(obj)
        img_pts.append(c)
    if len(img_pts) < min_views:
        raise CalibrationError(f"checkerboard found in {len(img_pts)} views; need at least {min_views} "
                               f"(pattern = inner corners {pattern[0]}x{pattern[1]})")
    rms, K, dist, _, _ = cv2.calibrateCamera(obj_pts, img_pts, size, None, None)
    return CameraCalibration(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), size[0], size[1],
                             method=f"checkerboard {pattern[0]}x{pattern[1]} inner corners, {square_m * 1000:g} mm",
                             rms_px=float(rms), dist=[float(d) for d in dist.ravel()[:5]], views_used=len(img_pts))


def image_files(folder: str | Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTS)
