"""What of the rendered garment layer the shopper sees: body parts in front of it, the silhouette, no fragments.

* `apply_occlusion`: each body segment the garment does not cover (forearms, hands; upper arms unless sleeved; the
  face and chin for tops) is a 3D shape between fitted joints: a capsule along the bone, for a hand the hull of
  wrist, pinky, index and thumb with the fingers' reach beyond the index, for the head the hull of ears, eyes,
  nose, mouth and chin. Where its projection overlaps the garment, its surface depth
  (interpolated along the bone) is compared with the rendered garment depth: only where the body is nearer is the
  garment pixel removed, so an arm behind the body (world depth) cuts nothing. The segmentation mask, when
  present, trims the shape to the real silhouette. The removed pixels are kept in `RenderOutput.cut`.
* `trim_to_person`: the garment fades out where the person's mask ends (soft edge, a little slack).
* `drop_fragments`: visible islands smaller than a fraction of the largest are removed.
"""
from __future__ import annotations

import cv2
import numpy as np

from edge.tryon.fitting import BodyFit
from edge.tryon.intrinsics import Intrinsics
from edge.tryon.renderer import RenderOutput

# (segment name used in a garment's `covers`, joint a, joint b, radius m); hands use HAND_POINTS too
SEGMENTS = (
    ("left_upper_arm", "left_shoulder", "left_elbow", 0.05),
    ("right_upper_arm", "right_shoulder", "right_elbow", 0.05),
    ("left_forearm", "left_elbow", "left_wrist", 0.04),
    ("right_forearm", "right_elbow", "right_wrist", 0.04),
    ("left_hand", "left_wrist", "left_index", 0.03),
    ("right_hand", "right_wrist", "right_index", 0.03),
    ("head", "mouth_left", "mouth_right", 0.0),  # the face and chin, at the mouth's depth (a lowered chin hides
)                                              # the front of a collar)
CHIN = 0.7  # the chin lies this fraction of eyes->mouth below the mouth
HAND_POINTS = ("wrist", "pinky", "index", "thumb")
FINGER_REACH = 0.35  # the fingers extend this fraction of wrist->index beyond the index landmark
MASK_SLACK = 1.0  # capsule radius multiplier when the segmentation mask trims the silhouette edges
DEPTH_MARGIN_M = 0.015
# mask probability -> garment coverage: 0 below 0.3, full above 0.7 (a soft, anti-aliased silhouette edge)
_SOFT_EDGE = np.clip((np.arange(256) / 255.0 - 0.3) * (255.0 / 0.4), 0, 255).astype(np.uint8)


def occluders(covers: set[str]) -> list[tuple[str, str, str, float]]:
    """The segments that can hide this garment (those it does not cover)."""
    return [s for s in SEGMENTS if s[0] not in covers]


def _shape(name: str, ja: str, jb: str, radius: float, fit: BodyFit, intr: Intrinsics, r_px: float,
           x0: int, y0: int, w: int, h: int) -> np.ndarray:
    """The segment's projected shape (uint8 0/255) in an h x w window whose top-left is frame pixel (x0, y0)."""
    cap = np.zeros((h, w), np.uint8)
    off = np.array([x0, y0], float)
    (ua, va), (ub, vb) = intr.project(np.stack([fit.joints[ja], fit.joints[jb]])) - off
    cv2.line(cap, (int(round(ua)), int(round(va))), (int(round(ub)), int(round(vb))), 255,
             max(1, int(round(2 * r_px))))
    if name == "head":
        pts = [fit.joints.get(n) for n in ("left_ear", "right_ear", "left_eye", "right_eye", "nose", "mouth_left",
                                            "mouth_right")]
        if all(p is not None for p in pts):
            uv = intr.project(np.stack(pts)) - off
            mouth, eyes = uv[5:7].mean(0), uv[2:4].mean(0)
            chin = mouth + CHIN * (mouth - eyes)
            cv2.fillConvexPoly(cap, cv2.convexHull(np.round(np.vstack([uv, chin[None]])).astype(np.int32)), 255)
        return cap
    if name.endswith("_hand"):
        side = name.split("_")[0]
        pts = [fit.joints.get(f"{side}_{p}") for p in HAND_POINTS]
        if all(p is not None for p in pts):
            uv = intr.project(np.stack(pts)) - off
            tip = uv[2] + FINGER_REACH * (uv[2] - uv[0])
            hull = cv2.convexHull(np.round(np.vstack([uv, tip[None]])).astype(np.int32))
            cv2.fillConvexPoly(cap, hull, 255)
            cv2.polylines(cap, [hull], True, 255, max(1, int(round(r_px))))
    return cap


def apply_occlusion(out: RenderOutput, fit: BodyFit, intr: Intrinsics, covers: set[str],
                    mask: np.ndarray | None = None, min_visibility: float = 0.3) -> int:
    """Clear garment pixels that the wearer's uncovered arms/hands are in front of. Returns pixels cleared."""
    if out.empty:
        return 0
    x0, y0, w, h = out.bbox
    gdepth = out.depth
    cleared = 0
    if out.cut is None:
        out.cut = np.zeros((h, w), bool)
    if mask is not None and mask.shape[:2] != out.frame_size:
        mask = cv2.resize(mask, (out.frame_size[1], out.frame_size[0]), interpolation=cv2.INTER_LINEAR)
    for name, ja, jb, radius in occluders(covers):
        if min(fit.visibility.get(ja, 1.0), fit.visibility.get(jb, 1.0)) < min_visibility:
            continue
        A, B = fit.joints[ja], fit.joints[jb]
        (ua, va), (ub, vb) = intr.project(np.stack([A, B]))
        z_mid = max(0.1, (A[2] + B[2]) / 2)
        r_px = radius * (MASK_SLACK if mask is not None else 1.0) * intr.fx / z_mid
        reach = r_px + (np.hypot(ub - ua, vb - va) * (1 + FINGER_REACH) if name.endswith("_hand") else 0.0)
        if name == "head":  # the face hull reaches the ears and the chin
            reach = 3.0 * np.hypot(ub - ua, vb - va) + 1.0
        sx0, sx1 = max(0, int(min(ua, ub) - reach) - x0 - 1), min(w, int(max(ua, ub) + reach) - x0 + 2)
        sy0, sy1 = max(0, int(min(va, vb) - reach) - y0 - 1), min(h, int(max(va, vb) + reach) - y0 + 2)
        if sx1 <= sx0 or sy1 <= sy0:
            continue
        # the shape's window inside the layer's bbox: everything below works on that window only
        cap = _shape(name, ja, jb, radius, fit, intr, r_px, x0 + sx0, y0 + sy0, sx1 - sx0, sy1 - sy0)
        cap &= (gdepth[sy0:sy1, sx0:sx1] > 0).view(np.uint8) * 255
        if mask is not None:
            cap &= (mask[y0 + sy0:y0 + sy1, x0 + sx0:x0 + sx1] > 0.5).view(np.uint8) * 255
        ys, xs = np.nonzero(cap)
        if len(xs) == 0:
            continue
        ys, xs = ys + sy0, xs + sx0
        d = np.array([ub - ua, vb - va])
        L2 = max(float(d @ d), 1e-9)
        t = np.clip(((xs + x0 - ua) * d[0] + (ys + y0 - va) * d[1]) / L2, 0.0, 1.0)
        body_z = A[2] + t * (B[2] - A[2]) - radius
        hit = body_z < gdepth[ys, xs] - DEPTH_MARGIN_M
        if hit.any():
            out.rgba[ys[hit], xs[hit]] = 0
            out.depth[ys[hit], xs[hit]] = 0
            out.cut[ys[hit], xs[hit]] = True
            cleared += int(hit.sum())
    return cleared


def trim_to_person(out: RenderOutput, mask: np.ndarray | None, dilate_px: int = 2) -> int:
    """Fade the garment layer out where the person's mask ends (soft edge over mask 0.3..0.7, `dilate_px` of
    slack). In place; returns the garment pixels removed."""
    if out.empty or mask is None:
        return 0
    x, y, w, h = out.bbox
    if mask.shape[:2] != out.frame_size:
        mask = cv2.resize(mask, (out.frame_size[1], out.frame_size[0]), interpolation=cv2.INTER_LINEAR)
    m = cv2.convertScaleAbs(mask[y:y + h, x:x + w], alpha=255.0)  # uint8 probability
    if dilate_px > 0:
        m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * dilate_px + 1, 2 * dilate_px + 1)))
    cover = cv2.LUT(m, _SOFT_EDGE)
    before = out.rgba[..., 3] > 0
    cv2.multiply(out.rgba, cv2.merge([cover] * 4), out.rgba, scale=1.0 / 255.0)
    gone = before & (out.rgba[..., 3] == 0)
    out.depth[gone] = 0.0
    return int(gone.sum())


def drop_fragments(out: RenderOutput, min_fraction: float = 0.02) -> int:
    """Clear visible garment islands (8-connected) smaller than min_fraction of the largest. In place; returns
    the pixels cleared."""
    if out.empty or min_fraction <= 0:
        return 0
    vis = cv2.threshold(out.rgba[..., 3], 0, 1, cv2.THRESH_BINARY)[1]
    n, labels = cv2.connectedComponents(vis, connectivity=8)  # (WithStats is ~4x slower here)
    if n <= 2:
        return 0
    areas = np.bincount(labels.ravel(), minlength=n)[1:]
    small = np.concatenate([[False], areas < min_fraction * areas.max()])
    if not small.any():
        return 0
    drop = small[labels]
    out.rgba[drop] = 0
    out.depth[drop] = 0.0
    return int(drop.sum())
