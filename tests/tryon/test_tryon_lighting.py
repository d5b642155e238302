"""Scene-matched lighting (edge/tryon/lighting.py): the estimator on synthetic Lambertian frames with a known
light, its smoothing, and the whole mirror path on a real package photo relit warm-from-the-left vs
cool-from-the-right (real pose model, real EGL renderer): the garment's colour and left-right shading follow the
frame, and they do not with `[tryon.lighting] enabled = false` (so the checks can fail)."""
from __future__ import annotations

import time

import numpy as np
import pytest

from edge.core.frames import Frame
from edge.core.paths import cache_dir
from edge.tryon import lighting as L
from edge.tryon.config import TryOnConfig
from edge.tryon.pipeline import TryOnPipeline
from pose_models import fp32_pose_pipeline

REAL_CACHE = cache_dir()  # read at import, before the try-on fixtures point the cache at a temporary folder


def lambertian_person(direction_gl, ambient: float = 0.25, key: float = 0.9, tint=(1.0, 1.0, 1.0),
                      w: int = 640, h: int = 480):
    """A person of ellipsoids (head, torso, arms; skin and a blue shirt) lit by ambient + one directional light from
    `direction_gl` (toward the light, OpenGL camera space), on a grey wall; tinted by `tint` (RGB). Returns
    (BGR image, mask)."""
    d = np.array([direction_gl[0], -direction_gl[1], direction_gl[2]], float)  # image axes: y down
    d /= np.linalg.norm(d)
    ys, xs = np.mgrid[0:h, 0:w].astype(float)
    img = np.empty((h, w, 3))
    img[:] = 0.3 * (ambient + key * max(d[2], 0.0) * 0.6)
    mask = np.zeros((h, w), np.float32)
    skin, shirt = (0.55, 0.42, 0.35), (0.2, 0.3, 0.6)
    for (cx, cy), (ax, ay), albedo in (((320, 110), (45, 55), skin), ((320, 300), (120, 170), shirt),
                                       ((175, 300), (35, 150), skin), ((465, 300), (35, 150), skin)):
        u, v = (xs - cx) / ax, (ys - cy) / ay
        inside = u * u + v * v < 1
        n = np.stack([u, v, np.sqrt(np.clip(1 - u * u - v * v, 0, 1))], -1)
        shade = ambient + key * np.clip(n @ d, 0, None)
        img[inside] = (np.array(albedo) * shade[..., None])[inside]
        mask[inside] = 1
    img = np.clip(img * np.array(tint), 0, 1) ** (1 / 2.2)
    return (img[..., ::-1] * 255).round().astype(np.uint8), mask


@pytest.mark.parametrize("az", [-60, -30, -15, 15, 30, 60])
def test_estimator_finds_the_side_of_a_known_light(az):
    img, mask = lambertian_person(L.direction_from_angles(40, az))
    est = L.estimate(img, mask)
    assert np.sign(est.azimuth_deg) == np.sign(az)
    if abs(az) <= 30:
        assert abs(est.azimuth_deg - az) < 12
    assert abs(est.elevation_deg - L.DEFAULT_ELEVATION_DEG) < 1  # not observable: the prior (documented)
    assert abs(np.linalg.norm(est.direction) - 1) < 1e-9


def test_estimator_is_monotonic_in_the_light_side_and_flat_for_a_frontal_light():
    azs = [-60, -45, -30, -15, 0, 15, 30, 45, 60]
    est = [L.estimate(*lambertian_person(L.direction_from_angles(35, a))).azimuth_deg for a in azs]
    assert all(b > a for a, b in zip(est, est[1:])), est
    assert abs(est[4]) < 3


def test_ambient_colour_and_exposure_follow_the_scene():
    d = L.direction_from_angles(40, 20)
    warm = L.estimate(*lambertian_person(d, tint=(1.2, 1.0, 0.75)))
    cool = L.estimate(*lambertian_person(d, tint=(0.8, 0.95, 1.25)))
    assert warm.ambient[0] > warm.ambient[2] and cool.ambient[2] > cool.ambient[0]
    assert warm.ambient[0] / warm.ambient[2] > 1.3 * cool.ambient[0] / cool.ambient[2]
    assert np.all(np.abs(warm.ambient / warm.exposure - 1) <= L.MAX_TINT + 1e-9)  # saturation is limited
    dark = L.estimate(*lambertian_person(d, ambient=0.08, key=0.3))
    bright = L.estimate(*lambertian_person(d))
    assert dark.exposure < bright.exposure and dark.exposure >= L.EXPOSURE_LIMITS[0]


def test_estimator_works_from_landmarks_without_a_mask():
    from edge.pose.types import LM
    lm = np.zeros((33, 5))
    lm[:, 3] = 0.0
    for name, (x, y) in {"left_shoulder": (410, 170), "right_shoulder": (230, 170), "left_hip": (390, 440),
                         "right_hip": (250, 440), "left_ear": (362, 110), "right_ear": (278, 110),
                         "left_elbow": (465, 300), "right_elbow": (175, 300), "left_wrist": (465, 430),
                         "right_wrist": (175, 430), "nose": (320, 115)}.items():
        lm[LM[name]] = (x, y, 0, 0.99, 0.99)
    for az in (-40, 40):
        img, _ = lambertian_person(L.direction_from_angles(40, az))
        assert np.sign(L.estimate(img, None, lm).azimuth_deg) == np.sign(az)


def test_smoothing_follows_a_change_with_its_time_constant_and_nobody_keeps_the_light():
    left, ml = lambertian_person(L.direction_from_angles(40, -45))
    right, mr = lambertian_person(L.direction_from_angles(40, 45))
    a_left, a_right = L.estimate(left, ml).azimuth_deg, L.estimate(right, mr).azimuth_deg
    est = L.LightEstimator(time_constant_s=0.5)
    assert est.update(left, ml, None, 0.0).azimuth_deg == pytest.approx(a_left)  # a new person: immediate
    got = est.update(right, mr, None, 0.5).azimuth_deg  # one time constant later: ~63 % of the way
    frac = (got - a_left) / (a_right - a_left)
    assert 0.5 < frac < 0.75
    for i in range(1, 20):
        got = est.update(right, mr, None, 0.5 + 0.1 * i).azimuth_deg
    assert got == pytest.approx(a_right, abs=2)
    blank = np.full_like(left, 128)
    assert est.update(blank, None, None, 3.0) is est.current  # nobody: the last light stays
    assert L.LightEstimator().update(blank, None, None, 0.0) is L.NEUTRAL


# ---------------------------------------------------------------------------------------------------------------
# the whole mirror path on a relit package photo


def relight(img_bgr: np.ndarray, tint_rgb, side: str) -> np.ndarray:
    """Relight a photo: a light falling off across the frame from `side` ('left' / 'right' of the image) and a
    colour cast, applied in linear light."""
    lin = (img_bgr.astype(np.float32) / 255.0) ** 2.2
    x = np.linspace(0.0, 1.0, img_bgr.shape[1], dtype=np.float32)[None, :, None]
    ramp = 0.35 + 0.9 * ((1 - x) if side == "left" else x)
    out = lin * ramp * np.array(tint_rgb[::-1], np.float32)
    return (np.clip(out, 0, 1) ** (1 / 2.2) * 255).round().astype(np.uint8)


def _garment_stats(layer) -> tuple[float, float]:
    """(R/B of the garment's mean colour, slope of its luminance across x per standard deviation of x)."""
    a = layer.rgba[..., 3] > 200
    rgb = layer.rgba[..., :3].astype(float)
    ys, xs = np.nonzero(a)
    lum = rgb.mean(-1)[a]
    slope = np.polyfit((xs - xs.mean()) / xs.std(), lum, 1)[0]
    mean = rgb[a].mean(0)
    return float(mean[0] / mean[2]), float(slope)


@pytest.fixture(scope="module")
def relit_runs(catalog):
    from calibration.photos import photo_path
    from devtools.bench.tryon import PhotoSource

    pose = fp32_pose_pipeline()
    photo = PhotoSource(str(photo_path("grace_hopper", REAL_CACHE)), 640, 480, 30.0).image
    frames = {"warm_left": relight(photo, (1.25, 1.0, 0.7), "left"),
              "cool_right": relight(photo, (0.75, 0.95, 1.3), "right")}
    out = {}
    for enabled in (True, False):
        base = TryOnConfig()
        tcfg = base.model_copy(update={"lighting": base.lighting.model_copy(update={"enabled": enabled})})
        for name, img in frames.items():
            pose.reset()
            pipe = TryOnPipeline(tcfg, [], pose, catalog=catalog)
            try:
                for i in range(8):
                    item = pipe.run_sync(Frame(image=img.copy(), seq=i, t_capture=time.monotonic(),
                                               t_wall=time.time(), source="test", t_media=i / 30.0))
                layer = item.garment_layer
                assert layer is not None and not layer.empty, "the person was not dressed"
                out[(enabled, name)] = (*_garment_stats(layer), pipe.sync_renderer.light)
            finally:
                pipe.close_sync()
    pose.close()
    return out


def test_garment_colour_and_side_shading_follow_the_relit_photo(relit_runs):
    rb_warm, slope_warm, light_warm = relit_runs[(True, "warm_left")]
    rb_cool, slope_cool, light_cool = relit_runs[(True, "cool_right")]
    assert light_warm.azimuth_deg < -5 and light_cool.azimuth_deg > 5, "the estimate sees the light's side"
    assert light_warm.ambient[0] / light_warm.ambient[2] > light_cool.ambient[0] / light_cool.ambient[2]
    assert rb_warm > 1.2 * rb_cool, "the garment is warmer in the warm frame"
    assert slope_warm < 0 < slope_cool, "the garment is brighter on the lit side"
    assert slope_cool - slope_warm > 3.0


def test_without_scene_lighting_the_garment_does_not_follow(relit_runs):
    rb_warm, slope_warm, light = relit_runs[(False, "warm_left")]
    rb_cool, slope_cool, _ = relit_runs[(False, "cool_right")]
    assert light is L.NEUTRAL
    assert abs(rb_warm / rb_cool - 1) < 0.03 and abs(slope_cool - slope_warm) < 1.0
