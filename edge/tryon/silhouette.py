"""Fit the garment to the body's outline: torso widths from the segmentation mask, silhouette trim, no fragments.

* `TorsoSilhouette` measures, at a few heights of the torso (armpit, chest, waist, hem), how far the person's
  mask reaches left and right of the fitted torso's centre line (along the torso's own lateral axis, in the
  image), compares it with where the garment's torso outline projects, and returns per-level lateral scale
  factors (wearer's right and left separately). `deform` applies them to the torso parts' vertices (and their
  normals) in the torso's canonical frame, so the garment's own shading follows the new outline. Where an arm
  is met on the way out beside the torso (hanging against the side, an elbow sticking out) the mask's edge is the
  arm's, not the torso's: the torso's visible edge is taken where the arm begins (an arm across the front, met
  near the centre line, is passed over). Levels that cannot be
  measured (outside the frame, not on the mask) are interpolated from the others. Factors are clamped
  ([tryon.fit] max_narrow / max_widen), a median over the last 5 frames, then low-passed (1 Hz).
The silhouette trim and the fragment clean-up of the rendered layer live in `occlusion.py`.
"""
from __future__ import annotations

from collections import deque

import cv2
import numpy as np

from edge.tryon.fitting import CV_TO_GL, BodyFit
from edge.tryon.intrinsics import Intrinsics
from edge.tryon.meshes import vertex_shade
from edge.tryon.smoothing import OneEuroFilter

# heights in the torso's canonical frame (reference body, metres below the mid-shoulders): armpit .. hem
LEVELS = np.array([-0.10, -0.18, -0.26, -0.34, -0.42, -0.50])
BAND_M = 0.03  # vertices within this of a level make its outline
EASE_PX = 1.0  # the garment edge sits this far outside the mask edge (the trim removes what is beyond)
YOKE_TOP = 0.0  # above the armpit level the factors fade to 1 at the shoulder line (shoulders stay on the joints)
TEMPORAL_MEDIAN = 5  # frames
SIDE_BLEND_M = 0.04  # left/right factors blend across the centre line over +-this
MASK_ON = 0.5
# 2D arm capsules (joint a, joint b, radius m: a slim arm, so the garment rather reaches under a thick one)
ARMS = tuple((f"{s}_{a}", f"{s}_{b}", r) for s in ("left", "right")
             for a, b, r in (("shoulder", "elbow", 0.035), ("elbow", "wrist", 0.03), ("wrist", "index", 0.03)))
ARM_MIN_VISIBILITY = 0.1  # a half-hidden arm still marks where the mask is arm rather than torso
SIDE_ARM = 0.6  # an arm first met past this fraction of the garment's half-width is beside the torso


def torso_vertices(garment) -> np.ndarray:
    """Vertices (canonical torso frame) of the garment's visible torso-anchored parts (holdouts excluded)."""
    vs = []
    for p in garment.parts:
        if p.anchor != "torso":
            continue
        shade = vertex_shade(p.mesh)
        if shade is not None and float(shade[:, 3].max()) == 0.0:
            continue  # holdout
        vs.append(np.asarray(p.mesh.vertices, float))
    return np.concatenate(vs) if vs else np.zeros((0, 3))


def _project_gl(intr: Intrinsics, pose: np.ndarray, local: np.ndarray) -> np.ndarray:
    """Canonical-frame points through an anchor pose (OpenGL camera space) to image pixels."""
    g = local @ pose[:3, :3].T + pose[:3, 3]
    return intr.project(g @ CV_TO_GL.T)


class TorsoSilhouette:
    """Per-level lateral scale factors of one garment's torso so its outline meets the person's mask."""

    def __init__(self, garment, max_narrow: float = 0.75, max_widen: float = 1.25, smoothing: bool = True):
        v = torso_vertices(garment)
        self.bands = [v[np.abs(v[:, 1] - y) < BAND_M] for y in LEVELS]
        self.max_narrow, self.max_widen = max_narrow, max_widen
        self._filter = OneEuroFilter(min_cutoff=1.0, beta=0.0) if smoothing else None  # widths change slowly
        self._recent: deque[np.ndarray] = deque(maxlen=TEMPORAL_MEDIAN)
        self.reliable = np.zeros((len(LEVELS), 2), bool)  # last measurement: which sides/levels were measured

    @property
    def usable(self) -> bool:
        return sum(len(b) >= 8 for b in self.bands) >= 2

    def reset(self) -> None:
        self._recent.clear()
        if self._filter is not None:
            self._filter.reset()

    def measure(self, mask: np.ndarray, fit: BodyFit, intr: Intrinsics) -> np.ndarray:
        """Raw factors (levels, 2: wearer's right, left); NaN where a side of a level could not be measured."""
        pose = fit.poses["torso"]
        h, w = mask.shape[:2]
        nl = len(LEVELS)
        k = np.full((nl, 2), np.nan)
        c, n, g = np.zeros((nl, 2)), np.zeros((nl, 2)), np.zeros((nl, 2))
        ok = np.zeros(nl, bool)
        for i, (y, band) in enumerate(zip(LEVELS, self.bands)):
            if len(band) < 8:
                continue
            zc = (band[:, 2].max() + band[:, 2].min()) / 2
            ci, lft, rgt = _project_gl(intr, pose, np.array([[0, y, zc], [0.1, y, zc], [-0.1, y, zc]]))
            d = lft - rgt
            if np.linalg.norm(d) < 1e-6 or not (0 <= ci[0] < w and 0 <= ci[1] < h):
                continue
            ni = d / np.linalg.norm(d)  # image direction of the wearer's left at this level
            si = (_project_gl(intr, pose, band) - ci) @ ni
            g[i] = (-si.min(), si.max())  # garment outline distance: right (0), left (1)
            ok[i] = g[i].min() >= 2.0 and mask[int(ci[1]), int(ci[0])] >= MASK_ON
            c[i], n[i] = ci, ni
        if not ok.any():
            return k
        steps = np.arange(int(min(g[ok].max() * self.max_widen * 1.2 + 12, 2 * max(w, h))), dtype=float)
        sign = np.array([-1.0, 1.0])
        pts = c[:, None, None, :] + sign[None, :, None, None] * steps[None, None, :, None] * n[:, None, None, :]
        xi, yi = np.round(pts[..., 0]).astype(int), np.round(pts[..., 1]).astype(int)
        inside = (xi >= 0) & (xi < w) & (yi >= 0) & (yi < h)
        on = np.zeros(inside.shape, bool)
        on[inside] = mask[yi[inside], xi[inside]] >= MASK_ON
        has_off = (~on).any(-1)
        off = np.argmax(~on, axis=-1)  # first step off the mask (levels, sides)
        seen = has_off & np.take_along_axis(inside, off[..., None], -1)[..., 0] & ok[:, None]
        arm_img = np.zeros((h, w), np.uint8)  # the arms' 2D capsules, sampled where the mask is
        for a, b, r in self._arms(fit, intr):
            cv2.line(arm_img, tuple(int(round(v)) for v in a), tuple(int(round(v)) for v in b), 1,
                     max(1, int(round(2 * r))))
        hit = np.zeros(inside.shape, bool)
        hit[inside] = arm_img[yi[inside], xi[inside]] > 0
        hit &= steps[None, None, :] < off[..., None]
        start = hit & ~np.concatenate([np.zeros(hit.shape[:-1] + (1,), bool), hit[..., :-1]], -1)
        # an arm beside the torso (first met past SIDE_ARM of the garment's half-width): the torso's visible edge
        # is where the arm begins; an arm across the front (met near the centre line) is passed over
        side_arm = start & (steps[None, None, :] >= SIDE_ARM * g[..., None])
        edge = np.where(side_arm.any(-1), np.argmax(side_arm, -1), off).astype(float)
        k[seen] = (edge[seen] + EASE_PX) / g[seen]
        return k

    @staticmethod
    def _arms(fit: BodyFit, intr: Intrinsics) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """2D arm capsules (a, b, radius px) of the arms seen well enough to mark the mask as arm."""
        arms = []
        for a, b, r in ARMS:
            if min(fit.visibility.get(a, 1.0), fit.visibility.get(b, 1.0)) < ARM_MIN_VISIBILITY:
                continue
            ua, ub = intr.project(np.stack([fit.joints[a], fit.joints[b]]))
            z = max(0.1, (fit.joints[a][2] + fit.joints[b][2]) / 2)
            arms.append((ua, ub, r * intr.fx / z))
        return arms

    def update(self, mask: np.ndarray | None, fit: BodyFit, intr: Intrinsics, t: float) -> np.ndarray | None:
        """Smoothed factors as (levels, 3): torso-frame y, factor on the wearer's right (x < 0), on the left."""
        if mask is None or not self.usable or "torso" not in fit.poses:
            return None
        if mask.shape[:2] != (intr.height, intr.width):
            mask = cv2.resize(mask, (intr.width, intr.height), interpolation=cv2.INTER_LINEAR)
        k = self.measure(mask, fit, intr)
        self.reliable = ~np.isnan(k)
        idx = np.arange(len(LEVELS))
        for side in (0, 1):
            ok = self.reliable[:, side]
            if ok.any():
                k[:, side] = np.interp(idx, idx[ok], k[ok, side])
        for side in (0, 1):  # a side never measured takes the other side's factors
            if not self.reliable[:, side].any():
                k[:, side] = k[:, 1 - side] if self.reliable[:, 1 - side].any() else 1.0
        if len(k) >= 3:  # a 3-tap median across levels: one odd level (a hand, a bag strap) does not notch the outline
            k[1:-1] = np.median(np.stack([k[:-2], k[1:-1], k[2:]]), axis=0)
        k = np.clip(k, self.max_narrow, self.max_widen)
        if self._filter is not None:  # a median over the last frames drops a level flipping between arm and mask
            self._recent.append(k)  # edge for a frame, then a low-pass
            k = self._filter(np.median(np.stack(self._recent), axis=0), t)
        return np.column_stack([LEVELS, k])


def deform(pos: np.ndarray, nrm: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale canonical-frame x by the per-level factors (linear in y, fading to 1 at the shoulder line above the
    first level, blended across the centre line); normals by the inverse transpose of the map's Jacobian."""
    x, y = pos[:, 0], pos[:, 1]
    ys = np.concatenate([scale[::-1, 0], [YOKE_TOP]])  # increasing for np.interp

    def prof(col: int) -> tuple[np.ndarray, np.ndarray]:
        f = np.concatenate([scale[::-1, col], [1.0]])
        slope = np.concatenate([[0.0], np.diff(f) / np.diff(ys), [0.0]])
        seg = np.clip(np.searchsorted(ys, y), 0, len(ys))
        return np.interp(y, ys, f), slope[seg]

    kr, dkr = prof(1)
    kl, dkl = prof(2)
    u = np.clip((x + SIDE_BLEND_M) / (2 * SIDE_BLEND_M), 0.0, 1.0)
    b = u * u * (3 - 2 * u)
    db = 6 * u * (1 - u) / (2 * SIDE_BLEND_M)
    k = kr + (kl - kr) * b
    a = k + x * (kl - kr) * db  # d x' / d x
    c = x * (dkr + (dkl - dkr) * b)  # d x' / d y
    out = pos.copy()
    out[:, 0] = x * k
    n = nrm.copy()
    n[:, 0] = nrm[:, 0] / a
    n[:, 1] = nrm[:, 1] - c * nrm[:, 0] / a
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-9)
    return out.astype(np.float32), n.astype(np.float32)
