"""Scene-matched lighting: the ambient colour, exposure and main light direction of the camera frame around the
person, smoothed over time, for the garment renderer's light rig (so the garment does not look pasted on).

* Ambient colour and exposure: over the region around the person (their box enlarged), linear RGB. The colour is
  "shades of grey" (each channel's 6-norm, between grey world and white patch; on the package photos it reads
  their casts as near neutral and a relit cast as that cast), divided by its mean (saturation limited to
  `MAX_TINT`); the exposure is the mean luminance against a mid-grey scene (`REF_LUMINANCE`), compressed
  (power 0.3) and limited to 0.7..1.35, so the swatch colour still reads in a bright or dim frame.
* Main light direction: the person is the light probe. Their segmentation mask (or a rough one drawn from the
  landmarks when there is no mask) is "inflated" into a smooth bump whose gradient gives pseudo-normals: facing
  the camera inside, turning sideways at the outline (x right, y down, z toward the camera). Shading of a
  Lambertian body is rho (a + l.n). A body and its clothes are close to mirror-symmetric in albedo rho, so pixels
  paired across each row's axis give the shading alone: (L - L') / (L + L') = g_x (n_x - n_x') / 2 (first-order
  spherical harmonics, albedo cancelled); g_x sets the light's side angle. What a frame of an upright person
  cannot tell without knowing the albedo (how much of the light is frontal; the elevation) stays at the rig's
  default (from above, in front).

All of it runs on a ~96-pixel-high subsampled copy of the region (about a millisecond). Results are smoothed with a time
constant (`LightingSection.time_constant_s`); a new person starts from their first estimate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

REF_LUMINANCE = 0.18  # linear mean luminance of a "normal" scene (mid grey): exposure 1
MAX_TINT = 0.25  # ambient colour channels stay within 1 -/+ this of grey
TINT_P = 6  # shades-of-grey norm for the ambient colour (1 = grey world, large = white patch)
EXPOSURE_LIMITS = (0.7, 1.35)
EXPOSURE_POWER = 0.3  # exposure = (luminance / REF_LUMINANCE) ** this: a bright frame lifts the garment, gently
WORK_HEIGHT = 96  # px: the region is resampled to this height
SIDE_REF = 0.6  # frontal shading gradient of a typical key/ambient ratio: side angle = atan(g_x / SIDE_REF)
MIN_PIXELS = 150  # fewer mask pixels than this: keep the direction (too little to fit)
# default rig direction toward the key light: 40 degrees above, 30 degrees to the camera's right, in front
DEFAULT_ELEVATION_DEG = 40.0
DEFAULT_AZIMUTH_DEG = 30.0


def direction_from_angles(elevation_deg: float, azimuth_deg: float) -> np.ndarray:
    """Unit vector toward a light `elevation_deg` above the horizon and `azimuth_deg` to the camera's right of the
    camera axis, in OpenGL camera space (x right, y up, z toward the camera)."""
    e, a = math.radians(elevation_deg), math.radians(azimuth_deg)
    return np.array([math.cos(e) * math.sin(a), math.sin(e), math.cos(e) * math.cos(a)])


DEFAULT_DIRECTION = direction_from_angles(DEFAULT_ELEVATION_DEG, DEFAULT_AZIMUTH_DEG)


@dataclass(frozen=True)
class SceneLight:
    """The light of the scene relative to the renderer's neutral rig.

    ambient: linear RGB multiplier of the rig's ambient (colour x exposure); key: linear RGB multiplier of the key
    light; direction: unit vector toward the key light, OpenGL camera space (x right, y up, z toward the camera);
    strength: relative shading gradient measured on the person (|l| / a of the fit, 0 = flat light)."""

    ambient: np.ndarray
    key: np.ndarray
    direction: np.ndarray
    strength: float = 0.0
    exposure: float = 1.0

    @property
    def azimuth_deg(self) -> float:
        """Toward the camera's right (+) or left (-) of the camera axis."""
        return math.degrees(math.atan2(self.direction[0], self.direction[2]))

    @property
    def elevation_deg(self) -> float:
        return math.degrees(math.asin(float(np.clip(self.direction[1], -1, 1))))


NEUTRAL = SceneLight(np.ones(3), np.ones(3), DEFAULT_DIRECTION.copy())

_LIN = ((np.arange(256) / 255.0) ** 2.2).astype(np.float32)  # sRGB-ish decode (gamma 2.2, like the renderer)

# landmark ellipses (BlazePose indices) used when there is no mask: torso quad, head, upper arms
_SHOULDERS, _HIPS, _EARS, _NOSE = (11, 12), (23, 24), (7, 8), 0


def person_box(landmarks: np.ndarray | None, mask: np.ndarray | None, shape: tuple[int, int],
               min_visibility: float = 0.3) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1) of the person in the frame: the visible landmarks' box (padded), else the mask's."""
    h, w = shape
    if landmarks is not None:
        lm = np.asarray(landmarks, float)
        ok = lm[:, 3] >= min_visibility if lm.shape[1] > 3 else np.ones(len(lm), bool)
        ok &= (lm[:, 0] >= 0) & (lm[:, 0] < w) & (lm[:, 1] >= 0) & (lm[:, 1] < h)
        if ok.sum() >= 4:
            x0, y0 = lm[ok, :2].min(0)
            x1, y1 = lm[ok, :2].max(0)
            pad = 0.2 * max(x1 - x0, y1 - y0)
            return (int(max(0, x0 - pad)), int(max(0, y0 - pad)), int(min(w, x1 + pad)), int(min(h, y1 + pad)))
    if mask is not None:
        step = max(1, min(h, w) // 120)  # a coarse look is enough for a box
        ys, xs = np.nonzero(mask[::step, ::step] > 0.5)
        if len(xs) > 4:
            return (int(xs.min() * step), int(ys.min() * step), int(min(w, (xs.max() + 1) * step)),
                    int(min(h, (ys.max() + 1) * step)))
    return None


def pseudo_normals(mask: np.ndarray, sigma: float) -> np.ndarray:
    """(h, w, 3) unit normals of the mask inflated into a smooth bump (x right, y down, z toward the camera):
    facing the camera well inside the outline, about 60 degrees sideways at it."""
    bump = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), sigma)
    gx = cv2.Sobel(bump, cv2.CV_32F, 1, 0, ksize=3) / 8.0
    gy = cv2.Sobel(bump, cv2.CV_32F, 0, 1, ksize=3) / 8.0
    k = 1.6 * sigma * math.sqrt(2 * math.pi)  # |grad| at a blurred step edge is 1 / (sigma sqrt(2 pi))
    n = np.stack([-gx * k, -gy * k, np.ones_like(bump)], -1)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def estimate(image_bgr: np.ndarray, mask: np.ndarray | None = None, landmarks: np.ndarray | None = None,
             prior: np.ndarray = DEFAULT_DIRECTION) -> SceneLight | None:
    """One frame's SceneLight (no smoothing), or None when no person region is known."""
    h, w = image_bgr.shape[:2]
    box = person_box(landmarks, mask, (h, w))
    if box is None:
        return None
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    # surroundings: the box grown by half its size each way (the light falling on the person's neighbourhood)
    gx0, gy0 = max(0, x0 - bw // 2), max(0, y0 - bh // 4)
    gx1, gy1 = min(w, x1 + bw // 2), min(h, y1 + bh // 4)
    step = max(1, round((gy1 - gy0) / WORK_HEIGHT))  # plain subsampling: means and smooth fits need no filter
    scale = 1.0 / step
    region = image_bgr[gy0:gy1:step, gx0:gx1:step]
    size = (region.shape[1], region.shape[0])
    lin = _LIN[region][..., ::-1]  # linear RGB
    if mask is not None:
        pm = mask[gy0:gy1:step, gx0:gx1:step] > 0.5
    else:
        pm = _landmark_mask(landmarks, (gx0, gy0), scale, size)
    # ambient colour: shades of grey (Minkowski p-norm of each channel) over the region, person included; the
    # bright, most reflective surfaces weigh most, so a coloured backdrop biases it less than a plain mean
    pix = lin.reshape(-1, 3).astype(np.float64)
    norm = np.mean(pix ** TINT_P, 0) ** (1.0 / TINT_P)
    tint = np.clip(norm / max(float(norm.mean()), 1e-6), 1 - MAX_TINT, 1 + MAX_TINT)
    mean_rgb = pix.mean(0)
    lum = float(0.2126 * mean_rgb[0] + 0.7152 * mean_rgb[1] + 0.0722 * mean_rgb[2])
    exposure = float(np.clip((max(lum, 1e-6) / REF_LUMINANCE) ** EXPOSURE_POWER, *EXPOSURE_LIMITS))
    direction, strength = prior / np.linalg.norm(prior), 0.0
    if pm.sum() >= MIN_PIXELS:
        direction, strength = _fit_direction(lin, pm, prior, sigma=0.06 * bh * scale)
    return SceneLight(ambient=tint * exposure, key=tint * exposure, direction=direction, strength=strength,
                      exposure=exposure)


def _fit_direction(lin: np.ndarray, person: np.ndarray, prior: np.ndarray, sigma: float):
    """Left/right shading of the person -> (unit direction toward the light in OpenGL camera space, side gradient).

    Pixels are paired across each row's axis (the mask's centre in that row): a body and its clothes are close to
    mirror-symmetric in albedo, so (L - L') / (L + L') of a pair is the shading alone, g_x * (n_x - n_x') / 2 to
    first order with g_x = l_x / (a + l.n) (Lambertian, ambient a). The side angle is atan(g_x / SIDE_REF): the
    frontal part of g is not observable without the albedo, so it is taken as a typical key-to-ambient ratio;
    the elevation is the prior's (ceiling lights; an upright body's shading barely constrains it)."""
    n_img = pseudo_normals(person, max(1.5, sigma))
    inner = cv2.erode(person.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)  # outline pixels mix bg
    L = (0.2126 * lin[..., 0] + 0.7152 * lin[..., 1] + 0.0722 * lin[..., 2]).astype(np.float64)
    H, W = L.shape
    cols = np.arange(W)
    count = inner.sum(1)
    first = np.argmax(inner, 1)
    last = W - 1 - np.argmax(inner[:, ::-1], 1)
    axis = 0.5 * (first + last)  # per row
    mirror = np.round(2 * axis[:, None] - cols[None, :]).astype(int)
    pair = inner & (cols[None, :] > axis[:, None] + 0.5) & (count[:, None] >= 6) & (mirror >= 0) & (mirror < W)
    rr, cc = np.nonzero(pair)
    mm = mirror[rr, cc]
    keep = inner[rr, mm]
    rr, cc, mm = rr[keep], cc[keep], mm[keep]
    a, b = L[rr, cc], L[rr, mm]
    tot = a + b
    good = tot > 1e-4
    p = prior / np.linalg.norm(prior)
    if good.sum() < MIN_PIXELS // 2:
        return p, 0.0
    y = (a - b)[good] / tot[good]
    x = 0.5 * (n_img[rr, cc, 0] - n_img[rr, mm, 0])[good]
    if float(x @ x) < 1e-6:
        return p, 0.0
    med = np.median(y)  # robust: clip outliers (a logo on one side, a highlight) to 3 MAD
    mad = np.median(np.abs(y - med)) * 1.4826 + 1e-6
    y = np.clip(y, med - 3 * mad, med + 3 * mad)
    gx = float(x @ y / (x @ x))
    horiz = math.hypot(p[0], p[2])
    side = math.atan2(gx, SIDE_REF)
    return np.array([horiz * math.sin(side), p[1], horiz * math.cos(side)]), abs(gx)


def _landmark_mask(landmarks, origin, scale, size) -> np.ndarray:
    """A rough person mask from the landmarks (torso quad, head ellipse, arm capsules) in work coordinates."""
    w, h = size
    m = np.zeros((h, w), np.uint8)
    if landmarks is None:
        return m.astype(bool)
    lm = np.asarray(landmarks, float)
    p = (lm[:, :2] - np.asarray(origin, float)) * scale
    vis = lm[:, 3] >= 0.3 if lm.shape[1] > 3 else np.ones(len(lm), bool)
    if vis[list(_SHOULDERS)].all():
        sw = float(np.linalg.norm(p[11] - p[12]))
        quad = [p[11], p[12]] + ([p[24], p[23]] if vis[list(_HIPS)].all()
                                 else [p[12] + (0, 1.4 * sw), p[11] + (0, 1.4 * sw)])
        cv2.fillConvexPoly(m, np.round(np.array(quad)).astype(np.int32), 1)
        for a, b in ((11, 13), (12, 14), (13, 15), (14, 16)):
            if vis[a] and vis[b]:
                cv2.line(m, tuple(np.round(p[a]).astype(int)), tuple(np.round(p[b]).astype(int)), 1,
                         max(1, int(0.25 * sw)))
        if vis[list(_EARS)].all():
            c = (p[7] + p[8]) / 2
            r = max(2, int(0.6 * np.linalg.norm(p[7] - p[8])))
            cv2.ellipse(m, tuple(np.round(c).astype(int)), (r, int(1.25 * r)), 0, 0, 360, 1, -1)
    return m.astype(bool)


class LightEstimator:
    """Per-frame estimates smoothed over time (exponential, `time_constant_s`); `strength` 0..1 blends the
    estimate into the neutral rig (0 = fixed rig)."""

    def __init__(self, time_constant_s: float = 0.5, strength: float = 1.0, every: int = 1):
        self.tau, self.mix, self.every = time_constant_s, float(strength), max(1, int(every))
        self.current: SceneLight | None = None
        self._t: float | None = None
        self._n = 0

    def reset(self) -> None:
        self.current, self._t, self._n = None, None, 0

    def update(self, image_bgr: np.ndarray, mask: np.ndarray | None, landmarks: np.ndarray | None,
               t: float) -> SceneLight:
        """Estimate on this frame (every `every` frames), smooth, and return the light to render with."""
        self._n += 1
        if self.current is not None and (self._n - 1) % self.every:
            return self.current
        est = estimate(image_bgr, mask, landmarks)
        if est is None:
            return self.current or NEUTRAL
        est = _blend(NEUTRAL, est, self.mix)
        if self.current is None or self._t is None or t < self._t:
            self.current = est
        else:
            a = 1.0 - math.exp(-max(t - self._t, 0.0) / max(self.tau, 1e-3))
            self.current = _blend(self.current, est, a)
        self._t = t
        return self.current


def _blend(a: SceneLight, b: SceneLight, k: float) -> SceneLight:
    """a -> b by k (0..1): colours linearly, the direction along the sphere (normalised mix)."""
    d = (1 - k) * a.direction + k * b.direction
    d = d / max(np.linalg.norm(d), 1e-9)
    return SceneLight(ambient=(1 - k) * a.ambient + k * b.ambient, key=(1 - k) * a.key + k * b.key, direction=d,
                      strength=(1 - k) * a.strength + k * b.strength, exposure=(1 - k) * a.exposure + k * b.exposure)
