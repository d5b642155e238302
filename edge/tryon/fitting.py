"""Fit garment anchors to a person: 3D world landmarks + their 2D projections -> camera-space anchor poses.

1. Translation: BlazePose world landmarks (metres, hip-centred, camera-aligned axes) are placed in the camera by
   the translation t that best reprojects them onto the 2D landmarks (linear least squares, visibility-weighted).
2. Anchor frames from the camera-space joints: torso (shoulders + hips; yaw, roll and pitch follow the body),
   upper arms and forearms (rigid sleeve segments follow the bones), head (ears + eyes) and eyes (eyewear).
   The head landmarks (ears, eyes, nose) are not taken from the world landmarks' head (hip-centred, the least
   reliable part): each is back-projected along its 2D landmark's camera ray (intrinsics) to the head's depth
   from the body solve plus its world depth relative to the ears, so the head frames reproject exactly onto
   the 2D eye/ear landmarks (roll from the image, yaw from the relative depths).
3. Scale: shoulder width and torso length against the garment's reference body; sleeve length by bone length.
Image alignment (`align_2d`, the default): every body joint is back-projected along its 2D landmark's ray to its
depth from step 1 (world depth + translation), so anchors and occluders land on the person in the image while
the depth order (arm in front of or behind the body) still comes from the world landmarks.
Joints are One-Euro smoothed in camera space before the frames are built.
Output poses are OpenGL camera space (x right, y up, z toward the viewer) as pyrender expects.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from edge.pose.types import LM, PersonPose
from edge.tryon.anchors import DEFAULT_REF
from edge.tryon.intrinsics import Intrinsics
from edge.tryon.smoothing import OneEuroFilter

JOINTS = ("left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
          "left_hip", "right_hip", "left_ear", "right_ear", "left_eye", "right_eye", "nose",
          "left_index", "right_index", "left_pinky", "right_pinky", "left_thumb", "right_thumb", "mouth_left",
          "mouth_right")
J = {n: i for i, n in enumerate(JOINTS)}
_IDX = np.array([LM[n] for n in JOINTS])
_SOLVE = [LM[n] for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip", "left_elbow", "right_elbow",
                          "left_ear", "right_ear", "nose")]
_HEAD = [LM[n] for n in ("left_ear", "right_ear", "left_eye", "right_eye", "nose")]
_HEAD_J = [J[n] for n in ("left_ear", "right_ear", "left_eye", "right_eye", "nose")]
_EARS = [LM["left_ear"], LM["right_ear"]]
_BODY_J = [J[n] for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip", "left_ear", "right_ear")]
MIN_DEPTH_M = 0.05
CV_TO_GL = np.diag([1.0, -1.0, -1.0])
# Hips out of frame (low visibility): the model's hip guess is unreliable, so the torso length (the garment's
# vertical scale, i.e. where the hem falls) comes from the shoulder width with the reference body's proportion.
# Its pitch is unreliable too: the torso's up axis leans to the camera's up (an upright shopper). Between the two
# visibilities the measured and the prior values are blended.
HIP_VIS_TRUST = 0.6
HIP_VIS_IGNORE = 0.3
# One-Euro cutoff of a joint: x GUESS_CUTOFF at visibility <= GUESS_VIS[0] (out of frame / hidden: the model's
# guess wanders), full at >= GUESS_VIS[1]. A half-seen forearm (visibility 0.55-0.65, zidane.jpg) still jumps 5-10 px
# between frames of a still camera, so the ramp runs up to 1.0 (bench: anchor jitter p95 3.1 -> 1.7 px).
GUESS_VIS = (0.5, 1.0)
ALIGN_PX = (0.25, 0.75)  # image alignment weight 0 -> 1 over this reprojection error of the world solve (px)
ARM_SEEN = (0.2, 0.5)  # elbow / wrist visibility: below the first the arm hangs (hang_unseen_arms), above the second
# it follows the model
HANG_OUT = 0.15  # the hanging arm leans this much outward (per unit down)
GUESS_CUTOFF = 0.1


@dataclass
class BodyFit:
    """Camera-space joints (OpenCV axes, metres) and the anchor poses (OpenGL camera space, 4x4, with scale)."""

    joints: dict[str, np.ndarray]
    poses: dict[str, np.ndarray]
    translation: np.ndarray  # hip centre in OpenCV camera coordinates
    shoulder_width_m: float
    torso_length_m: float
    yaw_deg: float  # 0 = facing the camera, + = turned toward the wearer's left
    visibility: dict[str, float] = field(default_factory=dict)
    # per-level lateral scale of the torso parts (silhouette.TorsoSilhouette), None = the rigid garment
    torso_scale: np.ndarray | None = None


def solve_translation(world: np.ndarray, uv: np.ndarray, intr: Intrinsics, weights: np.ndarray) -> np.ndarray:
    """t minimising the reprojection error of world+t onto uv (linearised pinhole, weighted least squares)."""
    X, Y, Z = world[:, 0], world[:, 1], world[:, 2]
    du, dv = uv[:, 0] - intr.cx, uv[:, 1] - intr.cy
    n = len(world)
    A = np.zeros((2 * n, 3))
    b = np.zeros(2 * n)
    A[:n, 0], A[:n, 2], b[:n] = intr.fx, -du, du * Z - intr.fx * X
    A[n:, 1], A[n:, 2], b[n:] = intr.fy, -dv, dv * Z - intr.fy * Y
    w = np.sqrt(np.concatenate([weights, weights]))
    t, *_ = np.linalg.lstsq(A * w[:, None], b * w, rcond=None)
    return t


def head_from_2d(person: PersonPose, t: np.ndarray, intr: Intrinsics) -> np.ndarray:
    """Camera-space (OpenCV) ears, eyes and nose anchored on their 2D landmarks.

    Depth of each point = depth of the mid-ears from the body solve (world + t) + its world depth relative to
    the mid-ears; x/y = its 2D landmark's ray at that depth. Only relative depths come from the world head.
    """
    world = np.asarray(person.world, float)
    z_ears = float(world[_EARS, 2].mean() + t[2])
    z = np.maximum(z_ears + world[_HEAD, 2] - world[_EARS, 2].mean(), 0.05)
    uv = np.asarray(person.landmarks[_HEAD, :2], float)
    return np.stack([(uv[:, 0] - intr.cx) / intr.fx * z, (uv[:, 1] - intr.cy) / intr.fy * z, z], axis=1)


def _unit(v: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-9 else fallback


def frame_pose(origin, x_axis, y_axis, scale) -> np.ndarray:
    """4x4 from an origin and (approximately orthogonal) x/y axes; z = x cross y. Gram-Schmidt on y."""
    x = _unit(np.asarray(x_axis, float), np.array([1.0, 0, 0]))
    y = np.asarray(y_axis, float) - np.dot(y_axis, x) * x
    y = _unit(y, np.array([0, 1.0, 0]))
    z = np.cross(x, y)
    M = np.eye(4)
    M[:3, :3] = np.stack([x, y, z], axis=1) * np.asarray(scale, float)[None, :]
    M[:3, 3] = origin
    return M


def segment_pose(origin, end, forward_hint, radial: float, length_scale: float) -> np.ndarray:
    """Pose of a limb segment: origin at the proximal joint, local -y along the bone, z close to forward_hint."""
    y = _unit(origin - end, np.array([0, 1.0, 0]))
    z = forward_hint - np.dot(forward_hint, y) * y
    if np.linalg.norm(z) < 1e-6:
        z = np.cross(np.array([1.0, 0, 0]), y)
    z = _unit(z, np.array([0, 0, 1.0]))
    x = np.cross(y, z)
    M = np.eye(4)
    M[:3, :3] = np.stack([x, y, z], axis=1) * np.array([radial, length_scale, radial])[None, :]
    M[:3, 3] = origin
    return M


class BodyFitter:
    """Stateful fitter (holds the smoothing filter) for one tracked person."""

    def __init__(self, intr: Intrinsics, smoothing=None, min_visibility: float = 0.5,
                 ref: dict[str, float] | None = None, align_2d: bool = True):
        self.intr = intr
        self.align_2d = align_2d
        self.min_visibility = min_visibility
        self.ref = {**DEFAULT_REF, **(ref or {})}
        self._filter = None
        if smoothing is None or getattr(smoothing, "enabled", True):
            kw = {} if smoothing is None else {"min_cutoff": smoothing.min_cutoff, "beta": smoothing.beta,
                                               "d_cutoff": smoothing.d_cutoff}
            self._filter = OneEuroFilter(**kw)

    def reset(self) -> None:
        if self._filter:
            self._filter.reset()

    def camera_joints(self, person: PersonPose) -> tuple[np.ndarray, np.ndarray]:
        """(joints in OpenCV camera coordinates (len(JOINTS), 3), hip-centre translation)."""
        vis = np.clip(person.landmarks[:, 3], 0.0, 1.0)
        w = vis[_SOLVE]
        w = np.where(w > 0.2, w, 0.0)
        t = solve_translation(person.world[_SOLVE], person.landmarks[_SOLVE, :2], self.intr, w + 1e-6)
        joints = person.world[_IDX] + t
        if self.align_2d:  # x, y on the 2D landmark's ray, depth from the world solve
            z = np.maximum(joints[:, 2], 0.05)
            uv = np.asarray(person.landmarks[_IDX, :2], float)
            on_ray = np.stack([(uv[:, 0] - self.intr.cx) / self.intr.fx * z,
                               (uv[:, 1] - self.intr.cy) / self.intr.fy * z, z], axis=1)
            # blend in by the reprojection error: a joint the world solve already puts on its landmark stays
            err = np.linalg.norm(self.intr.project(joints) - uv, axis=1)
            w = np.clip((err - ALIGN_PX[0]) / (ALIGN_PX[1] - ALIGN_PX[0]), 0.0, 1.0)[:, None]
            joints = joints + w * (on_ray - joints)
        joints[_HEAD_J] = head_from_2d(person, t, self.intr)
        return joints, t

    def fit(self, person: PersonPose, t: float, ref: dict[str, float] | None = None) -> BodyFit | None:
        """Anchor poses for the garment (ref = its reference body); None if the shoulders are not visible or the
        landmarks the fit uses are not finite (NaN/inf never reach the smoothing filter)."""
        if not (np.isfinite(person.landmarks[_IDX]).all() and np.isfinite(person.world[_IDX]).all()):
            return None
        vis = person.landmarks[:, 3]
        if min(vis[LM["left_shoulder"]], vis[LM["right_shoulder"]]) < self.min_visibility:
            return None
        joints, trans = self.camera_joints(person)
        if not np.isfinite(joints).all() or joints[_BODY_J, 2].min() <= MIN_DEPTH_M:
            return None  # shoulders, hips or ears behind / at the camera, or a degenerate solve
        joints[:, 2] = np.maximum(joints[:, 2], MIN_DEPTH_M)  # a hand reaching toward a close camera
        hang_unseen_arms(joints, vis)
        if self._filter is not None:  # joints the model only guesses (low visibility) are smoothed harder
            guess = np.clip((vis[_IDX] - GUESS_VIS[0]) / (GUESS_VIS[1] - GUESS_VIS[0]), 0.0, 1.0)
            joints = self._filter(joints, t, (GUESS_CUTOFF + (1.0 - GUESS_CUTOFF) * guess)[:, None])
        return build_fit(joints, trans, {**self.ref, **(ref or {})},
                         {n: float(vis[LM[n]]) for n in JOINTS})


def hang_unseen_arms(joints: np.ndarray, vis: np.ndarray) -> None:
    """In place (OpenCV camera space): an elbow or wrist the model does not see (visibility below ARM_SEEN) is
    blended toward an arm hanging at the side (down the image, slightly outward, in the shoulders' depth plane,
    bone lengths from the shoulder width), so a sleeve on an arm out of frame hangs instead of following the
    model's guess, which can point it at the camera."""
    ls, rs = joints[J["left_shoulder"]], joints[J["right_shoulder"]]
    sw = float(np.linalg.norm(ls - rs))
    mid = (ls + rs) / 2
    for side in ("left", "right"):
        sh = joints[J[f"{side}_shoulder"]]
        out = np.array([np.sign(sh[0] - mid[0]) or 1.0, 0.0, 0.0])
        down = _unit(np.array([0.0, 1.0, 0.0]) + HANG_OUT * out, np.array([0.0, 1.0, 0.0]))
        parent = sh
        for joint, bone in (("elbow", "upper_arm"), ("wrist", "forearm")):
            j = J[f"{side}_{joint}"]
            prior = parent + down * DEFAULT_REF[bone] * sw / DEFAULT_REF["shoulder_width"]
            w = float(np.clip((vis[LM[f"{side}_{joint}"]] - ARM_SEEN[0]) / (ARM_SEEN[1] - ARM_SEEN[0]), 0.0, 1.0))
            joints[j] = w * joints[j] + (1.0 - w) * prior
            parent = joints[j]


def build_fit(joints_cv: np.ndarray, trans: np.ndarray, ref: dict[str, float], visibility=None) -> BodyFit:
    """Anchor poses from camera-space joints (OpenCV axes, rows in JOINTS order; the hand points at the end may
    be left out)."""
    g = joints_cv @ CV_TO_GL.T  # OpenGL camera space
    P = {n: g[i] for n, i in J.items() if i < len(g)}
    mid_sh = (P["left_shoulder"] + P["right_shoulder"]) / 2
    mid_hip = (P["left_hip"] + P["right_hip"]) / 2
    sw = float(np.linalg.norm(P["left_shoulder"] - P["right_shoulder"]))
    tl = float(np.linalg.norm(mid_sh - mid_hip))
    vis = visibility or {}
    hip_vis = min(vis.get("left_hip", 1.0), vis.get("right_hip", 1.0))
    w = float(np.clip((hip_vis - HIP_VIS_IGNORE) / (HIP_VIS_TRUST - HIP_VIS_IGNORE), 0.0, 1.0))
    tl = w * tl + (1.0 - w) * sw * ref["torso_length"] / ref["shoulder_width"]
    sx = sw / ref["shoulder_width"]
    sy = tl / ref["torso_length"]
    up = mid_sh - mid_hip
    if w < 1.0:  # no reliable hips: no reliable pitch either; assume the shopper stands upright
        up = w * _unit(up, np.array([0, 1.0, 0])) + (1.0 - w) * np.array([0, 1.0, 0])
    torso = frame_pose(mid_sh, P["left_shoulder"] - P["right_shoulder"], up, [sx, sy, sx])
    fwd = torso[:3, 2] / np.linalg.norm(torso[:3, 2])
    poses = {"torso": torso}
    for side in ("left", "right"):
        sh, el, wr = P[f"{side}_shoulder"], P[f"{side}_elbow"], P[f"{side}_wrist"]
        poses[f"{side}_upper_arm"] = segment_pose(sh, el, fwd, sx, np.linalg.norm(el - sh) / ref["upper_arm"])
        poses[f"{side}_forearm"] = segment_pose(el, wr, fwd, sx, np.linalg.norm(wr - el) / ref["forearm"])
    poses.update(head_poses(P, ref))
    x_axis = torso[:3, 0] / np.linalg.norm(torso[:3, 0])
    yaw = math.degrees(math.atan2(-x_axis[2], x_axis[0]))
    return BodyFit(joints={n: joints_cv[i] for n, i in J.items() if i < len(joints_cv)}, poses=poses,
                   translation=trans, shoulder_width_m=sw, torso_length_m=tl, yaw_deg=yaw, visibility=visibility or {})


def head_poses(P: dict[str, np.ndarray], ref: dict[str, float]) -> dict[str, np.ndarray]:
    """`head` and `eyes` anchor poses from OpenGL camera-space ears and eyes.

    head: origin mid-ears, x = right -> left (mean of the ear and eye axes: roll and yaw), z forward, pitched so
    the eye midpoint lies in the canonical direction (0, eye_height, eye_depth); uniform scale ear-to-ear
    distance / ref ear_width. eyes: origin mid-eyes (nose bridge), x = right eye -> left eye, z = the head's
    forward; x scaled by the inter-eye distance / ref eye_width (lens centres land on the eyes), y and z by the
    head's scale (temples reach the ears).
    """
    le, re, ly, ry = P["left_ear"], P["right_ear"], P["left_eye"], P["right_eye"]
    ex = np.array([1.0, 0, 0])
    ear_w = float(np.linalg.norm(le - re))
    eye_w = float(np.linalg.norm(ly - ry))
    x_eye = _unit(ly - ry, ex)
    hx = _unit(_unit(le - re, x_eye) + x_eye, ex)
    mid_ear, mid_eye = (le + re) / 2, (ly + ry) / 2
    v = mid_eye - mid_ear
    z0 = _unit(v - np.dot(v, hx) * hx, np.array([0, 0, 1.0]))
    y0 = np.cross(z0, hx)
    a = math.atan2(ref.get("eye_height", DEFAULT_REF["eye_height"]), ref.get("eye_depth", DEFAULT_REF["eye_depth"]))
    hz = math.cos(a) * z0 - math.sin(a) * y0
    hy = math.sin(a) * z0 + math.cos(a) * y0
    hs = ear_w / ref["ear_width"]
    es = eye_w / ref.get("eye_width", DEFAULT_REF["eye_width"])
    return {"head": frame_pose(mid_ear, hx, hy, [hs, hs, hs]),
            "eyes": frame_pose(mid_eye, x_eye, np.cross(hz, x_eye), [es, hs, hs])}
