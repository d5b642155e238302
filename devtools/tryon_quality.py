"""Fit quality of the try-on mirror, measured on what the shopper sees (used by `edge bench tryon` and tests).

All masks are full-frame, in camera (not mirrored) coordinates.

* fit precision: garment pixels (alpha >= 128) on the person (reference segmentation mask > 0.5) / garment pixels.
* fit coverage (tops): pixels of the garment's body region covered by the garment / the region. The region is
  the person's mask between the shoulder line and the hip line (from 0.15 to 0.95 of the way down, below the
  neckline and above the hem), within 0.75 shoulder widths of the torso's centre line, minus the arms
  (capsules around upper arms, forearms and hands): what a top should cover and nothing can legitimately hide.
* fragments of a garment piece (the parts on one anchor: torso, each sleeve segment): the connected components
  (8-connected) of the whole visible garment, joined through the pixels that body parts in front cut away, that
  hold pixels of this piece. A piece detached from the rest of the garment without a body part to explain it
  counts; a shirt seen above and below a forearm across the chest, or a sleeve seen on both sides of the torso's
  edge, is one. `fragments_raw` counts the components of the piece's own visible pixels, with no joining.
* anchor jitter: frame-to-frame displacement (px) of the garment's anchor points (the anchor frames' origins and
  ends: mid-shoulders, shoulder points, hem centre and corners, elbow, wrist) that are in the frame on visible
  body parts (landmark visibility >= 0.5); `jitter_px_p95_all` includes the guessed ones.
"""
from __future__ import annotations

import cv2
import numpy as np

from edge.pose.types import LM
from edge.tryon.fitting import CV_TO_GL
from edge.tryon.intrinsics import Intrinsics

GARMENT_ALPHA = 128  # a pixel counts as garment from half coverage
PERSON_ON = 0.5
REGION_T = (0.15, 0.95)  # along shoulder line -> hip line
REGION_HALF_WIDTH = 0.75  # shoulder widths either side of the centre line
ARM_RADIUS_M = 0.045
REF_SHOULDER_M = 0.36
ARM_SEGMENTS = (("shoulder", "elbow"), ("elbow", "wrist"), ("wrist", "index"))
# anchor points in each anchor's canonical frame (reference body, metres)
ANCHOR_POINTS = {
    "torso": np.array([[0, 0, 0], [0.18, 0, 0], [-0.18, 0, 0], [0, -0.5, 0], [0.15, -0.5, 0], [-0.15, -0.5, 0]],
                      float),
    "left_upper_arm": np.array([[0, 0, 0], [0, -0.28, 0]], float),
    "right_upper_arm": np.array([[0, 0, 0], [0, -0.28, 0]], float),
    "left_forearm": np.array([[0, 0, 0], [0, -0.25, 0]], float),
    "right_forearm": np.array([[0, 0, 0], [0, -0.25, 0]], float),
    "head": np.array([[0, 0, 0], [0.075, 0, 0], [-0.075, 0, 0]], float),
    "eyes": np.array([[0, 0, 0], [0.0315, 0, 0], [-0.0315, 0, 0]], float),
}


def garment_pixels(alpha: np.ndarray) -> np.ndarray:
    return alpha >= GARMENT_ALPHA


def precision_counts(alpha: np.ndarray, person: np.ndarray) -> tuple[int, int]:
    """(garment pixels on the person, garment pixels)."""
    g = garment_pixels(alpha)
    return int((g & (person > PERSON_ON)).sum()), int(g.sum())


def coverage_counts(alpha: np.ndarray, region: np.ndarray) -> tuple[int, int]:
    """(region pixels covered by the garment, region pixels)."""
    return int((garment_pixels(alpha) & region).sum()), int(region.sum())


def ratio(num: int, den: int) -> float | None:
    return None if den == 0 else num / den


def torso_region(landmarks: np.ndarray, person: np.ndarray, min_visibility: float = 0.3) -> np.ndarray:
    """The region a top should cover (see the module docstring), from 2D landmarks (33, >=4) and a person mask."""
    h, w = person.shape[:2]
    lm = np.asarray(landmarks, float)
    ls, rs, lh, rh = (lm[LM[n], :2] for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip"))
    ms, mh = (ls + rs) / 2, (lh + rh) / 2
    axis = mh - ms
    length = float(np.linalg.norm(axis))
    sw = float(np.linalg.norm(ls - rs))
    if length < 1 or sw < 1:
        return np.zeros((h, w), bool)
    u = axis / length
    n = np.array([-u[1], u[0]])
    ys, xs = np.mgrid[0:h, 0:w]
    px = np.stack([xs - ms[0], ys - ms[1]], -1).astype(np.float32)
    t = px @ u.astype(np.float32) / length
    s = np.abs(px @ n.astype(np.float32))
    region = (t >= REGION_T[0]) & (t <= REGION_T[1]) & (s <= REGION_HALF_WIDTH * sw) & (person > PERSON_ON)
    arms = np.zeros((h, w), np.uint8)
    r = max(1, int(round(ARM_RADIUS_M * sw / REF_SHOULDER_M)))
    for side in ("left", "right"):
        for a, b in ARM_SEGMENTS:
            ia, ib = LM[f"{side}_{a}"], LM[f"{side}_{b}"]
            if min(lm[ia, 3], lm[ib, 3]) < min_visibility:
                continue
            pa, pb = (tuple(int(round(c)) for c in lm[i, :2]) for i in (ia, ib))
            cv2.line(arms, pa, pb, 1, 2 * r)
    return region & (arms == 0)


def components(visible: np.ndarray, bridge: np.ndarray | None = None) -> int:
    """Connected components (8-connected) of `visible` pixels; `bridge` pixels join the parts they connect."""
    vis = visible.astype(np.uint8)
    if not vis.any():
        return 0
    if bridge is None or not bridge.any():
        return cv2.connectedComponents(vis, connectivity=8)[0] - 1
    n, labels = cv2.connectedComponents(vis | bridge.astype(np.uint8), connectivity=8)
    return len(np.unique(labels[visible.astype(bool)]))


ANCHOR_JOINTS = {"torso": ("left_shoulder", "right_shoulder"), "head": ("left_ear", "right_ear"),
                 "eyes": ("left_eye", "right_eye"),
                 **{f"{s}_upper_arm": (f"{s}_shoulder", f"{s}_elbow") for s in ("left", "right")},
                 **{f"{s}_forearm": (f"{s}_elbow", f"{s}_wrist") for s in ("left", "right")}}


def anchor_points(poses: dict[str, np.ndarray], intr: Intrinsics, anchors, visibility: dict | None = None,
                  min_visibility: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Image positions (n, 2) of the anchor points of the given anchors (in a fixed order), and which of them
    are seen: inside the frame, on body parts whose landmarks have visibility >= min_visibility (a sleeve on an
    arm out of frame follows the model's guess, which the shopper does not see)."""
    pts, seen = [], []
    vis = visibility or {}
    for a in sorted(anchors):
        if a in poses and a in ANCHOR_POINTS:
            P = poses[a]
            g = ANCHOR_POINTS[a] @ P[:3, :3].T + P[:3, 3]
            uv = intr.project(g @ CV_TO_GL.T)
            ok = min(vis.get(j, 1.0) for j in ANCHOR_JOINTS.get(a, ())) >= min_visibility
            inside = (uv[:, 0] >= 0) & (uv[:, 0] < intr.width) & (uv[:, 1] >= 0) & (uv[:, 1] < intr.height)
            pts.append(uv)
            seen.append(inside & ok)
    if not pts:
        return np.zeros((0, 2)), np.zeros(0, bool)
    return np.concatenate(pts), np.concatenate(seen)


def jitter_px(tracks: list[tuple[np.ndarray, np.ndarray]], seen_only: bool = True) -> np.ndarray:
    """Displacements (px) of each point between consecutive frames of (points, seen) pairs; with seen_only, only
    points seen in both frames."""
    d = []
    for (a, sa), (b, sb) in zip(tracks, tracks[1:]):
        if a.shape != b.shape:
            continue
        m = np.linalg.norm(b - a, axis=1)
        d.append(m[sa & sb] if seen_only else m)
    return np.concatenate(d) if d else np.zeros(0)


def piece_groups(garment) -> dict[str, list[int]]:
    """Garment pieces: anchor -> piece ids (1 + part index, as GarmentRenderer.piece_ids) of its visible parts."""
    from edge.tryon.meshes import vertex_shade  # noqa: PLC0415

    groups: dict[str, list[int]] = {}
    for i, p in enumerate(garment.parts):
        shade = vertex_shade(p.mesh)
        if shade is not None and float(shade[:, 3].max()) == 0.0:
            continue  # holdout: not a piece of fabric
        groups.setdefault(p.anchor, []).append(i + 1)
    return groups


def layer_to_frame(layer, attr: str = "alpha") -> np.ndarray:
    """A RenderOutput's alpha (uint8) or cut (bool) as a full-frame array."""
    h, w = layer.frame_size
    x, y, bw, bh = layer.bbox
    if attr == "alpha":
        out = np.zeros((h, w), np.uint8)
        if not layer.empty:
            out[y:y + bh, x:x + bw] = layer.rgba[..., 3]
    else:
        out = np.zeros((h, w), bool)
        if not layer.empty and layer.cut is not None:
            out[y:y + bh, x:x + bw] = layer.cut
    return out


def piece_fragments(alpha: np.ndarray, cut: np.ndarray, ids: np.ndarray, groups: dict[str, list[int]]
                    ) -> dict[str, tuple[int, int]]:
    """anchor -> (fragments, raw components) of each visible piece. fragments: components of the whole visible
    garment joined through the pixels body parts in front cut away, that hold pixels of this piece (a sleeve seen
    on both sides of the torso's edge, a shirt seen above and below a forearm: one); raw: components of the
    piece's own visible pixels."""
    visible = alpha > 0
    n, labels = cv2.connectedComponents((visible | cut).astype(np.uint8), connectivity=8)
    out = {}
    for anchor, pid in groups.items():
        v = visible & np.isin(ids, pid)
        if not v.any():
            continue
        out[anchor] = (len(np.unique(labels[v])), components(v))
    return out
