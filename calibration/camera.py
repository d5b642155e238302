"""Mirror-camera intrinsics: checkerboard calibration (OpenCV) or a focal-length estimate from a known FOV.

The result is written as a `[tryon.camera]` TOML snippet for the device config (edge/tryon/config.py).
"""
from __future__ import annotations

import logging
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from pydantic import ValidationError

from edge.tryon.config import CameraIntrinsics
from edge.tryon.intrinsics import Intrinsics

log = logging.getLogger(__name__)
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}
# Square-on views fix the focal length only up to the board's distance: a set of them calibrates with a low RMS and a
# focal length off by 10x or more. A view counts as tilted when the board's normal is MIN_TILT_DEG or more off the
# optical axis; fewer than MIN_TILTED_VIEWS such views is an error.
MIN_TILT_DEG = 8.0
MIN_TILTED_VIEWS = 3
DUPLICATE_PX = 1.0  # mean corner shift below which a view repeats an earlier board position (board not moved)
# The runtime projects with a pinhole camera and does not undistort frames (edge/tryon/intrinsics.py), so the
# intrinsics written are the best pinhole fit. A pinhole RMS above DISTORTION_WARN_PX that a lens-distortion model
# brings down by half or more is lens distortion the runtime leaves in: overlays drift towards the frame edges.
DISTORTION_WARN_PX = 1.0
FX_UNCERTAIN = 0.03  # standard error of fx above this fraction: the views leave the focal length loose
CORNERS_WARN_PX = 1.0  # RMS of the distortion model above this: corners poorly found (blur, glare, a bent board)
_PINHOLE = cv2.CALIB_ZERO_TANGENT_DIST | cv2.CALIB_FIX_K1 | cv2.CALIB_FIX_K2 | cv2.CALIB_FIX_K3


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
    rms_px: float | None = None  # reprojection error of these (pinhole) intrinsics (checkerboard only)
    dist: list[float] = field(default_factory=list)  # k1 k2 p1 p2 k3 of a lens-distortion fit (checkerboard only)
    lens_rms_px: float | None = None  # reprojection error of that lens-distortion fit (not used by the runtime)
    fx_std_px: float | None = None  # standard error of fx estimated by the fit (checkerboard only)
    views_used: int = 0

    @property
    def hfov_deg(self) -> float:
        return math.degrees(2 * math.atan(self.width / (2 * self.fx)))

    def to_toml(self) -> str:
        """`[tryon.camera]` section for the device config; CalibrationError if the runtime's config would reject it."""
        lines = [f"# {self.method}; horizontal FOV {self.hfov_deg:.1f} deg"]
        if self.rms_px is not None:
            lines.append(f"# reprojection RMS {self.rms_px:.3f} px (pinhole, as the runtime projects) over "
                         f"{self.views_used} views; fx standard error {self.fx_std_px or 0:.1f} px")
            if self.lens_rms_px is not None:
                lines.append(f"# with lens distortion k1 k2 p1 p2 k3 = {', '.join(f'{d:.4f}' for d in self.dist)}: "
                             f"RMS {self.lens_rms_px:.3f} px (not corrected by the runtime)")
        lines += ["[tryon.camera]", f"fx = {self.fx:.2f}", f"fy = {self.fy:.2f}", f"cx = {self.cx:.2f}",
                  f"cy = {self.cy:.2f}", f"width = {self.width}", f"height = {self.height}"]
        text = "\n".join(lines) + "\n"
        try:
            CameraIntrinsics.model_validate(tomllib.loads(text)["tryon"]["camera"])
        except ValidationError as e:
            errs = "; ".join(f"{'.'.join(map(str, x['loc'])) or 'camera'}: {x['msg']}" for x in e.errors())
            raise CalibrationError(f"result is not a valid [tryon.camera] section ({errs})") from None
        return text


def from_hfov(width: int, height: int, hfov_deg: float) -> CameraCalibration:
    """Focal length from a known horizontal field of view (datasheet), principal point at the centre."""
    if width <= 0 or height <= 0:
        raise CalibrationError(f"image size {width}x{height} must be positive (the camera mode, e.g. 1280x720)")
    if not 10 < hfov_deg < 170:
        raise CalibrationError(f"horizontal FOV {hfov_deg} deg is not plausible (10..170)")
    k = Intrinsics.from_hfov(width, height, hfov_deg)
    return CameraCalibration(k.fx, k.fy, k.cx, k.cy, width, height, method=f"estimate from hfov {hfov_deg} deg")


def find_corners(gray: np.ndarray, pattern: tuple[int, int]) -> np.ndarray | None:
    """Sub-pixel inner-corner positions of a (cols, rows) checkerboard, or None."""
    ok, corners = cv2.findChessboardCorners(gray, pattern, cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE)
    if not ok:
        return None
    # the search window (2 * half + 1 px) must not reach the neighbouring corners: a fixed 15 px one pulled the corners
    # of a board with ~10 px squares (1.8 m away at 640x480) off and fx came out 11 % wrong
    grid = corners.reshape(pattern[1], pattern[0], 2)
    spacing = min(np.linalg.norm(np.diff(grid, axis=1), axis=-1).min(),
                  np.linalg.norm(np.diff(grid, axis=0), axis=-1).min())
    half = int(max(2, min(7, spacing // 2 - 1)))
    crit = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 40, 1e-3)
    return cv2.cornerSubPix(gray, corners, (half, half), (-1, -1), crit)


def calibrate_checkerboard(images, pattern: tuple[int, int] = (9, 6), square_m: float = 0.025,
                           min_views: int = 5) -> CameraCalibration:
    """Calibrate from checkerboard views (paths or BGR/gray arrays); pattern = inner corners (cols, rows).

    Views that repeat an earlier board position are skipped; CalibrationError if fewer than min_views distinct views
    remain or fewer than MIN_TILTED_VIEWS show the board tilted (the focal length would be a guess). The intrinsics
    are the pinhole fit the runtime uses; a lens-distortion fit beside it is reported, and a warning names lens
    distortion the pinhole model cannot absorb.
    """
    if min(pattern) < 3:
        raise CalibrationError(f"pattern {pattern[0]}x{pattern[1]}: count the inner corners, at least 3 each way "
                               "(a board of 10x7 squares has 9x6)")
    if not (math.isfinite(square_m) and square_m > 0):
        raise CalibrationError(f"square size {square_m * 1000:g} mm must be a positive length")
    obj = np.zeros((pattern[0] * pattern[1], 3), np.float32)
    obj[:, :2] = np.mgrid[0:pattern[0], 0:pattern[1]].T.reshape(-1, 2) * square_m
    obj_pts, img_pts, names, size, repeats = [], [], [], None, 0
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
        same = next((n for n, k in zip(names, img_pts) if np.linalg.norm(c - k, axis=-1).mean() < DUPLICATE_PX), None)
        if same is not None:
            log.warning("%s: board in the same position as in %s, skipped", name, same)
            repeats += 1
            continue
        obj_pts.append(obj)
        img_pts.append(c)
        names.append(name)
    if len(img_pts) < min_views:
        why = f" ({repeats} more repeat a board position: move the board between photos)" if repeats else ""
        raise CalibrationError(f"checkerboard found in {len(img_pts)} distinct views{why}; need at least {min_views} "
                               f"(pattern = inner corners {pattern[0]}x{pattern[1]})")
    try:
        lens_rms, lens_K, dist, rvecs, _ = cv2.calibrateCamera(obj_pts, img_pts, size, None, None)
        rms, K, _, _, _, std, _, _ = cv2.calibrateCameraExtended(
            obj_pts, img_pts, size, lens_K.copy(), np.zeros(5), flags=cv2.CALIB_USE_INTRINSIC_GUESS | _PINHOLE)
    except cv2.error as e:
        raise CalibrationError(f"OpenCV calibrateCamera failed: {e.err}") from None
    tilts = [math.degrees(math.acos(min(1.0, abs(float(cv2.Rodrigues(r)[0][2, 2]))))) for r in rvecs]
    tilted = sum(t >= MIN_TILT_DEG for t in tilts)
    if tilted < MIN_TILTED_VIEWS:
        raise CalibrationError(
            f"only {tilted} of {len(tilts)} views show the board tilted {MIN_TILT_DEG:g} deg or more (most: "
            f"{max(tilts):.1f} deg); square-on views cannot fix the focal length (this one came out as "
            f"fx = {K[0, 0]:.0f} px): add at least {MIN_TILTED_VIEWS} views with the board tilted 15-45 deg "
            "towards different sides")
    fx_std = float(std.ravel()[0])
    if fx_std > FX_UNCERTAIN * K[0, 0]:
        log.warning("focal length uncertain: fx %.0f +- %.0f px (%.0f %%); garments would be drawn at a size that "
                    "far off: add views with the board nearer (a third of the frame or more), tilted 15-45 deg, "
                    "covering the corners of the frame", K[0, 0], fx_std, 100 * fx_std / K[0, 0])
    if lens_rms > CORNERS_WARN_PX:
        log.warning("reprojection RMS %.2f px even with a lens-distortion model: corners poorly found (blurred or "
                    "glaring photos, a bent board?); retake the photos with the board flat and sharp", lens_rms)
    elif rms > DISTORTION_WARN_PX and rms > 2 * lens_rms:
        log.warning("lens distortion (k1 %.3f) leaves a pinhole reprojection RMS of %.2f px (%.2f px with a "
                    "distortion model): it is not corrected by the runtime, so try-on overlays drift towards the "
                    "frame edges; a lens with less distortion, or a narrower camera mode, fits better", dist.ravel()[0],
                    rms, lens_rms)
    return CameraCalibration(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]), size[0], size[1],
                             method=f"checkerboard {pattern[0]}x{pattern[1]} inner corners, {square_m * 1000:g} mm",
                             rms_px=float(rms), dist=[float(d) for d in dist.ravel()[:5]], views_used=len(img_pts),
                             lens_rms_px=float(lens_rms), fx_std_px=fx_std)


def image_files(folder: str | Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTS)
