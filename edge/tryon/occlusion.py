"""Body-in-front-of-garment occlusion from arm landmarks, their depth and the person segmentation mask.

Each body segment the garment does not cover (forearms, hands; upper arms unless sleeved) is a 3D capsule
between two fitted joints. Where a capsule's projection overlaps the garment, the capsule surface depth
(interpolated along the bone) is compared with the rendered garment depth: if the body is nearer, the garment
pixel is removed. The segmentation mask, when present, gives the exact silhouette inside the (generous) capsule.
"""
from __future__ import annotations

import cv2
import numpy as np

from edge.tryon.fitting import BodyFit
from edge.tryon.intrinsics import Intrinsics
from edge.tryon.renderer import RenderOutput

# (segment name used in a garment's `covers`, joint a, joint b, capsule radius m)
SEGMENTS = (
    ("left_upper_arm", "left_shoulder", "left_elbow", 0.05),
    ("right_upper_arm", "right_shoulder", "right_elbow", 0.05),
    ("left_forearm", "left_elbow", "left_wrist", 0.04),
    ("right_forearm", "right_elbow", "right_wrist", 0.04),
    ("left_hand", "left_wrist", "left_index", 0.045),
    ("right_hand", "right_wrist", "right_index", 0.045),
)
MASK_SLACK = 1.0  # capsule radius multiplier when the segmentation mask trims the silhouette edges
DEPTH_MARGIN_M = 0.015


def occluders(covers: set[str]) -> list[tuple[str, str, str, float]]:
    """The segments that can hide this garment (those it does not cover)."""
    return [s for s in SEGMENTS if s[0] not in covers]


def apply_occlusion(out: RenderOutput, fit: BodyFit, intr: Intrinsics, covers: set[str],
                    mask: np.ndarray | None = None, min_visibility: float = 0.3) -> int:
    """Clear garment pixels that the wearer's uncovered arms/hands are in front of. Returns pixels cleared."""
    if out.empty:
        return 0
    x0, y0, w, h = out.bbox
    gdepth = out.depth
    cleared = 0
    if mask is not None and mask.shape[:2] != out.frame_size:
        mask = cv2.resize(mask, (out.frame_size[1], out.frame_size[0]), interpolation=cv2.INTER_LINEAR)
    for _, ja, jb, radius in occluders(covers):
        if min(fit.visibility.get(ja, 1.0), fit.visibility.get(jb, 1.0)) < min_visibility:
            continue
        A, B = fit.joints[ja], fit.joints[jb]
        (ua, va), (ub, vb) = intr.project(np.stack([A, B]))
        z_mid = max(0.1, (A[2] + B[2]) / 2)
        r_px = radius * (MASK_SLACK if mask is not None else 1.0) * intr.fx / z_mid
        lo_x, hi_x = min(ua, ub) - r_px - x0, max(ua, ub) + r_px - x0
        lo_y, hi_y = min(va, vb) - r_px - y0, max(va, vb) + r_px - y0
        if hi_x < 0 or hi_y < 0 or lo_x >= w or lo_y >= h:
            continue
        cap = np.zeros((h, w), np.uint8)
        cv2.line(cap, (int(round(ua - x0)), int(round(va - y0))), (int(round(ub - x0)), int(round(vb - y0))), 255,
                 max(1, int(round(2 * r_px))))
        cap &= (gdepth > 0).view(np.uint8) * 255
        if mask is not None:
            cap &= (mask[y0:y0 + h, x0:x0 + w] > 0.5).view(np.uint8) * 255
        ys, xs = np.nonzero(cap)
        if len(xs) == 0:
            continue
        d = np.array([ub - ua, vb - va])
        L2 = max(float(d @ d), 1e-9)
        t = np.clip(((xs + x0 - ua) * d[0] + (ys + y0 - va) * d[1]) / L2, 0.0, 1.0)
        body_z = A[2] + t * (B[2] - A[2]) - radius
        hit = body_z < gdepth[ys, xs] - DEPTH_MARGIN_M
        if hit.any():
            out.rgba[ys[hit], xs[hit]] = 0
            out.depth[ys[hit], xs[hit]] = 0
            cleared += int(hit.sum())
    return cleared
