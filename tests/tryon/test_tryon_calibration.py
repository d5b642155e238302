"""Camera calibration from synthetic checkerboard renders with known intrinsics; FOV estimate; TOML snippet."""
from __future__ import annotations

import math
import tomllib

import cv2
import numpy as np
import pytest

from calibration.camera import CalibrationError, calibrate_checkerboard, from_hfov
from calibration.camera_cli import main as calib_main
from edge.tryon.config import TryOnConfig

K_TRUE = np.array([[610.0, 0, 322.0], [0, 610.0, 236.0], [0, 0, 1]])
PATTERN, SQUARE = (9, 6), 0.03


def _board_texture(px_per_m: float = 4000) -> tuple[np.ndarray, np.ndarray]:
    cols, rows = PATTERN[0] + 1, PATTERN[1] + 1
    margin = SQUARE
    w_m, h_m = cols * SQUARE + 2 * margin, rows * SQUARE + 2 * margin
    tex = np.full((int(h_m * px_per_m), int(w_m * px_per_m)), 255, np.uint8)
    for r in range(rows):
        for c in range(cols):
            if (r + c) % 2 == 0:
                x0, y0 = int((margin + c * SQUARE) * px_per_m), int((margin + r * SQUARE) * px_per_m)
                s = int(SQUARE * px_per_m)
                tex[y0:y0 + s, x0:x0 + s] = 0
    # texture px -> board metres, with the first inner corner at the origin
    S = np.array([[1 / px_per_m, 0, -(margin + SQUARE)], [0, 1 / px_per_m, -(margin + SQUARE)], [0, 0, 1]])
    return tex, S


def render_views(n: int = 8, size=(640, 480)) -> list[np.ndarray]:
    tex, S = _board_texture()
    rng = np.random.default_rng(3)
    views = []
    for i in range(n):
        rvec = np.array([rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5), rng.uniform(-0.3, 0.3)])
        R, _ = cv2.Rodrigues(rvec)
        centre = np.array([PATTERN[0] - 1, PATTERN[1] - 1, 0]) * SQUARE / 2
        t = np.array([rng.uniform(-0.05, 0.05), rng.uniform(-0.04, 0.04), rng.uniform(0.45, 0.6)]) - R @ centre
        H = K_TRUE @ np.column_stack([R[:, 0], R[:, 1], t])
        img = cv2.warpPerspective(tex, H @ S, size, flags=cv2.INTER_AREA, borderValue=255)
        views.append(cv2.GaussianBlur(img, (3, 3), 0.6))
    return views


def test_checkerboard_recovers_known_intrinsics(tmp_path):
    views = render_views()
    for i, v in enumerate(views):
        cv2.imwrite(str(tmp_path / f"view{i:02d}.png"), v)
    (tmp_path / "notes.txt").write_text("not an image")
    out = tmp_path / "camera.toml"
    assert calib_main(["checkerboard", str(tmp_path), "--pattern", "9x6", "--square-mm", "30", "--out", str(out)]) == 0
    cam = tomllib.loads(out.read_text())["tryon"]["camera"]
    assert cam["fx"] == pytest.approx(610.0, rel=0.01) and cam["fy"] == pytest.approx(610.0, rel=0.01)
    assert cam["cx"] == pytest.approx(322.0, abs=6) and cam["cy"] == pytest.approx(236.0, abs=6)
    assert (cam["width"], cam["height"]) == (640, 480)
    cfg = TryOnConfig.model_validate({"camera": cam})  # the snippet is valid device config
    from edge.tryon.intrinsics import Intrinsics
    half = Intrinsics.from_config(cfg.camera, 320, 240)
    assert half.fx == pytest.approx(cam["fx"] / 2)


def test_too_few_views_is_a_clear_error():
    with pytest.raises(CalibrationError, match="need at least 5"):
        calibrate_checkerboard([np.full((480, 640), 255, np.uint8)] * 3)


def test_focal_from_fov(capsys):
    cal = from_hfov(1280, 720, 70.0)
    assert cal.fx == pytest.approx(640 / math.tan(math.radians(35)))
    assert cal.hfov_deg == pytest.approx(70.0)
    assert calib_main(["fov", "--width", "1280", "--height", "720", "--hfov", "70"]) == 0
    cam = tomllib.loads(capsys.readouterr().out)["tryon"]["camera"]
    assert cam["fx"] == pytest.approx(cal.fx, abs=0.01) and cam["cx"] == 640.0


def test_intrinsics_used_at_another_aspect_ratio_are_named_once(caplog):
    """Calibrated at 1920x1080, run at 640x480: scaling x and y apart is right for stretched frames, wrong for a
    cropped camera mode; the device says so once (same aspect: nothing)."""
    import logging

    from edge.tryon.config import CameraIntrinsics
    from edge.tryon.intrinsics import Intrinsics

    cam = CameraIntrinsics(fx=1400.0, fy=1400.0, width=1920, height=1080)
    with caplog.at_level(logging.WARNING, logger="edge.tryon.intrinsics"):
        Intrinsics.from_config(cam, 1280, 720)
        assert caplog.records == []
        for _ in range(3):
            k = Intrinsics.from_config(cam, 640, 480)
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "[tryon.camera] was calibrated at 1920x1080 and is used at 640x480, another aspect ratio"]
    assert (k.fx, k.fy) == pytest.approx((1400 / 3, 1400 * 480 / 1080))  # scaled per axis, as before
