"""Review of the mirror-camera calibration (stop 40): the runtime projects with a pinhole camera (no lens distortion),
so the written intrinsics must be the best pinhole fit, and a lens whose distortion that model cannot absorb must be
named instead of passing silently behind a low RMS of a distortion model the runtime never applies."""
from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from calibration.camera import calibrate_checkerboard
from tests.tryon.test_tryon_calibration import K_TRUE, PATTERN, SQUARE, render_views


def _distort(img: np.ndarray, k1: float) -> np.ndarray:
    """The render as seen through a lens with radial distortion k1 (barrel for k1 < 0), K_TRUE's principal point."""
    h, w = img.shape[:2]
    u, v = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    # for each distorted output pixel, find the undistorted source pixel (cv2.undistortPoints inverts the model)
    pts = np.stack([u.ravel(), v.ravel()], 1).reshape(-1, 1, 2)
    und = cv2.undistortPoints(pts, K_TRUE, np.array([k1, 0, 0, 0, 0.0]), P=K_TRUE).reshape(h, w, 2)
    return cv2.remap(img, und[..., 0], und[..., 1], cv2.INTER_LINEAR, borderValue=255)


def _pinhole_rms(cal, views) -> float:
    """Reprojection RMS of the written intrinsics the way the runtime uses them: pinhole, no distortion."""
    K = np.array([[cal.fx, 0, cal.cx], [0, cal.fy, cal.cy], [0, 0, 1]])
    obj = np.zeros((PATTERN[0] * PATTERN[1], 3), np.float32)
    obj[:, :2] = np.mgrid[0:PATTERN[0], 0:PATTERN[1]].T.reshape(-1, 2) * SQUARE
    errs = []
    for v in views:
        ok, c = cv2.findChessboardCorners(v, PATTERN)
        if not ok:
            continue
        ok, r, t = cv2.solvePnP(obj, c, K, None)
        p, _ = cv2.projectPoints(obj, r, t, K, None)
        errs.append(((p - c) ** 2).sum(-1).ravel())
    return float(np.sqrt(np.concatenate(errs).mean()))


def test_undistorted_lens_reports_pinhole_rms_and_no_warning(caplog):
    """A lens without distortion: pinhole and distortion fits agree, the RMS written is the pinhole one, no warning."""
    views = render_views(10)
    with caplog.at_level(logging.WARNING, logger="calibration.camera"):
        cal = calibrate_checkerboard(views, PATTERN, SQUARE)
    assert cal.fx == pytest.approx(610.0, rel=0.01)
    assert cal.rms_px < 0.5 and cal.lens_rms_px is not None and cal.lens_rms_px <= cal.rms_px + 1e-6
    assert not caplog.records  # neither distortion nor an uncertain focal length
    assert cal.fx_std_px < 0.01 * cal.fx
    assert "pinhole" in cal.to_toml()


def test_distorted_lens_gets_the_pinhole_fit_and_a_warning(caplog):
    """A wide lens with barrel distortion (k1 = -0.35): the 5-coefficient fit has a low RMS, but the runtime does
    not undistort frames, so its K misplaces try-on overlays towards the frame edges. The pinhole fit must be the one
    written (it is the better one for a pinhole projection), and the residual distortion named in a warning."""
    views = [_distort(v, -0.35) for v in render_views(10)]
    with caplog.at_level(logging.WARNING, logger="calibration.camera"):
        cal = calibrate_checkerboard(views, PATTERN, SQUARE)
    assert cal.lens_rms_px < 0.5 < cal.rms_px  # the distortion model fits; the pinhole one cannot
    assert cal.dist[0] < -0.2
    warned = [r.getMessage() for r in caplog.records if "distortion" in r.getMessage()]
    assert warned and "not corrected" in warned[0]
    # the K written is the best pinhole fit: its pinhole reprojection error is the fit's own RMS (within solver noise)
    assert _pinhole_rms(cal, views) == pytest.approx(cal.rms_px, rel=0.15)
    text = cal.to_toml()
    assert f"{cal.rms_px:.3f} px (pinhole" in text
