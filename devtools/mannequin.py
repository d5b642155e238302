"""Synthetic capsule mannequin: a drawn person image + exactly matching PoseResult (33 landmarks, world, mask).

Used for tests, the benchmark's synthetic pose stage and the page demo when no camera/pose model is present.
Body-local axes: +x wearer's left, +y up, +z forward; the mannequin faces the camera at yaw 0.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from edge.pose.types import LANDMARK_NAMES, LM, PersonPose, PoseResult, Roi
from edge.tryon.intrinsics import Intrinsics

SKIN = (140, 170, 215)  # BGR
SHIRT = (185, 185, 180)
TROUSERS = (70, 55, 50)
HAIR = (40, 45, 60)

# arm presets: (upper-arm direction, forearm direction) in body-local coordinates, for the wearer's LEFT arm
# (x mirrored for the right arm unless a preset gives both)
ARM_DOWN = (np.array([0.25, -0.97, 0.0]), np.array([0.12, -0.98, 0.15]))
ARM_CROSS_R = (np.array([-0.25, -0.9, 0.35]), None)  # right arm: forearm aimed across the torso (set below)


def _unit(v):
    v = np.asarray(v, float)
    return v / np.linalg.norm(v)


def body_local_landmarks(left_arm=ARM_DOWN, right_arm=None, cross_right_forearm: bool = False) -> np.ndarray:
    """(33, 3) body-local landmark positions in metres, hip centre at the origin."""
    p = np.zeros((33, 3))

    def s(name, xyz):
        p[LM[name]] = xyz

    for side, sg in (("left", 1), ("right", -1)):
        s(f"{side}_hip", (sg * 0.10, 0.0, 0.0))
        s(f"{side}_shoulder", (sg * 0.18, 0.50, 0.0))
        s(f"{side}_knee", (sg * 0.10, -0.45, 0.02))
        s(f"{side}_ankle", (sg * 0.10, -0.88, 0.0))
        s(f"{side}_heel", (sg * 0.10, -0.93, -0.05))
        s(f"{side}_foot_index", (sg * 0.11, -0.95, 0.15))
        s(f"{side}_ear", (sg * 0.075, 0.675, 0.0))
        s(f"{side}_eye", (sg * 0.032, 0.675, 0.085))
        s(f"{side}_eye_inner", (sg * 0.018, 0.675, 0.088))
        s(f"{side}_eye_outer", (sg * 0.046, 0.675, 0.078))
    s("mouth_left", (0.025, 0.60, 0.088))
    s("mouth_right", (-0.025, 0.60, 0.088))
    s("nose", (0.0, 0.635, 0.105))
    mirror = np.array([-1.0, 1.0, 1.0])
    arms = {"left": left_arm, "right": right_arm or (ARM_DOWN[0] * mirror, ARM_DOWN[1] * mirror)}
    for side in ("left", "right"):
        u, f = arms[side]
        sh = p[LM[f"{side}_shoulder"]]
        el = sh + 0.28 * _unit(u)
        if side == "right" and cross_right_forearm:
            wr_target = np.array([0.12, 0.26, 0.24])  # in front of the belly, toward the left hip
            f = wr_target - el
        wr = el + 0.25 * _unit(f)
        d = _unit(wr - el)
        side_v = _unit(np.cross(d, [0, 0, 1.0]) if abs(d[2]) < 0.9 else np.cross(d, [0, 1.0, 0]))
        s(f"{side}_elbow", el)
        s(f"{side}_wrist", wr)
        s(f"{side}_index", wr + 0.09 * d)
        s(f"{side}_pinky", wr + 0.08 * d - 0.025 * side_v)
        s(f"{side}_thumb", wr + 0.05 * d + 0.03 * side_v)
    return p


@dataclass
class SyntheticPerson:
    image: np.ndarray  # BGR
    mask: np.ndarray  # HxW float32
    cam: np.ndarray  # (33, 3) OpenCV camera coordinates
    intr: Intrinsics
    visibility: np.ndarray

    def person_pose(self) -> PersonPose:
        uv = self.intr.project(self.cam)
        hip = (self.cam[LM["left_hip"]] + self.cam[LM["right_hip"]]) / 2
        z_px = (self.cam[:, 2] - hip[2]) * self.intr.fx / hip[2]
        lms = np.column_stack([uv, z_px, self.visibility, np.full(33, 0.99)]).astype(np.float32)
        sh = uv[[LM["left_shoulder"], LM["right_shoulder"]]].mean(0)
        hp = uv[[LM["left_hip"], LM["right_hip"]]].mean(0)
        roi = Roi(cx=float(hp[0]), cy=float(hp[1]), size=float(4 * np.linalg.norm(sh - hp)), rotation=0.0)
        return PersonPose(track_id=1, landmarks=lms, world=(self.cam - hip).astype(np.float32), score=0.99, roi=roi,
                          mask=self.mask)

    def pose_result(self, seq: int = 0, t: float = 0.0) -> PoseResult:
        h, w = self.image.shape[:2]
        return PoseResult(frame_seq=seq, t=t, image_size=(h, w), people=[self.person_pose()])


def background(width: int, height: int) -> np.ndarray:
    """A plain shop-like backdrop (wall gradient, shelf boards)."""
    g = np.linspace(200, 150, height, dtype=np.float32)[:, None, None]
    img = np.broadcast_to(np.concatenate([g * 0.95, g * 0.97, g], axis=2), (height, width, 3)).astype(np.uint8).copy()
    for k in range(3):
        y = int(height * (0.2 + 0.25 * k))
        cv2.rectangle(img, (0, y), (width // 6, y + max(2, height // 60)), (90, 110, 130), -1)
        cv2.rectangle(img, (width - width // 6, y), (width, y + max(2, height // 60)), (90, 110, 130), -1)
    return img


def render_person(intr: Intrinsics, yaw_deg: float = 0.0, distance: float = 1.8, hip_drop: float = 0.3,
                  x_offset: float = 0.0, cross_right_forearm: bool = False, left_arm=ARM_DOWN, right_arm=None,
                  bg: np.ndarray | None = None, skin: tuple = SKIN, shirt: tuple = SHIRT, trousers: tuple = TROUSERS,
                  girth: float = 1.0) -> SyntheticPerson:
    """Draw the mannequin (painter's algorithm over capsules) and return its image, mask and landmarks.

    skin / shirt / trousers: BGR colours; girth scales the limb radii and the torso outline (body size; the
    landmarks do not move)."""
    local = body_local_landmarks(left_arm, right_arm, cross_right_forearm)
    a = math.radians(yaw_deg)
    R = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    rot = local @ R.T
    cam = rot * np.array([1.0, -1.0, -1.0]) + np.array([x_offset, hip_drop, distance])
    W, H = intr.width, intr.height
    img = background(W, H) if bg is None else bg.copy()
    mask = np.zeros((H, W), np.uint8)
    uv = intr.project(cam)
    P = lambda n: cam[LM[n]]  # noqa: E731

    def px(n):
        return tuple(int(round(c)) for c in uv[LM[n]])

    def rad(r, z, g=girth):
        return max(1, int(round(r * g * intr.fx / z)))

    items = []  # (depth, draw-fn)

    def capsule(a_n, b_n, r, colour):
        z = (P(a_n)[2] + P(b_n)[2]) / 2
        items.append((z, lambda dst, c: cv2.line(dst, px(a_n), px(b_n), c if c is not None else colour,
                                                  2 * rad(r, z), cv2.LINE_AA)))

    z_t = (P("left_shoulder")[2] + P("right_hip")[2]) / 2
    # torso: polygon around shoulders and hips, pushed out by the body half-depth
    corners = []
    for n, grow in (("left_shoulder", 0.04), ("right_shoulder", 0.04), ("right_hip", 0.05), ("left_hip", 0.05)):
        c = uv[LM[n]]
        centre = uv[[LM["left_shoulder"], LM["right_shoulder"], LM["left_hip"], LM["right_hip"]]].mean(0)
        corners.append(c + (c - centre) / max(np.linalg.norm(c - centre), 1e-6) * grow * girth * intr.fx / z_t)
    poly = np.round(np.array(corners)).astype(np.int32)
    items.append((z_t - 0.05, lambda dst, c: cv2.fillConvexPoly(dst, poly, c if c is not None else shirt,
                                                                cv2.LINE_AA)))
    for side in ("left", "right"):
        capsule(f"{side}_hip", f"{side}_knee", 0.075, trousers)
        capsule(f"{side}_shoulder", f"{side}_elbow", 0.048, shirt)
        capsule(f"{side}_elbow", f"{side}_wrist", 0.038, skin)
        capsule(f"{side}_wrist", f"{side}_index", 0.04, skin)
    capsule("left_hip", "right_hip", 0.09, trousers)
    neck_top = (P("left_ear") + P("right_ear")) / 2
    head_c = neck_top + np.array([0, -0.03, 0])
    z_h = head_c[2]
    hc = tuple(int(round(c)) for c in intr.project(head_c))
    nb = tuple(int(round(c)) for c in intr.project((P("left_shoulder") + P("right_shoulder")) / 2))
    items.append((z_h + 0.02, lambda dst, c: cv2.line(dst, nb, hc, c if c is not None else skin,
                                                      2 * rad(0.05, z_h), cv2.LINE_AA)))
    items.append((z_h, lambda dst, c: cv2.ellipse(dst, hc, (rad(0.085, z_h, 1.0), rad(0.11, z_h, 1.0)), 0, 0, 360,
                                                  c if c is not None else skin, -1, cv2.LINE_AA)))
    items.append((z_h - 0.001, lambda dst, c: cv2.ellipse(dst, (hc[0], hc[1] - rad(0.04, z_h, 1.0)),
                                                          (rad(0.087, z_h, 1.0), rad(0.08, z_h, 1.0)), 0, 180, 360,
                                                          c if c is not None else HAIR, -1, cv2.LINE_AA)))
    for _, draw in sorted(items, key=lambda it: -it[0]):  # far first
        draw(img, None)
        draw(mask, 255)
    inside = (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
    vis = np.where(inside, 0.98, 0.05)
    return SyntheticPerson(image=img, mask=mask.astype(np.float32) / 255.0, cam=cam, intr=intr, visibility=vis)


assert len(LANDMARK_NAMES) == 33


class MannequinSource:
    """Iterable camera stand-in: a looping, gently moving mannequin (precomputed cycle), paced at `fps`.

    Each Frame carries the exact PoseResult in meta["pose_truth"] (see `TruthPose`).
    """

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0, n_cycle: int = 30,
                 intr: Intrinsics | None = None, realtime: bool = True, max_frames: int | None = None):
        self.intr = intr or Intrinsics.from_hfov(width, height, 60.0)
        self.fps, self.realtime, self.max_frames = fps, realtime, max_frames
        bg = background(self.intr.width, self.intr.height)
        self.cycle = []
        for k in range(n_cycle):
            ph = 2 * math.pi * k / n_cycle
            p = render_person(self.intr, yaw_deg=20 * math.sin(ph), x_offset=0.05 * math.sin(2 * ph),
                              cross_right_forearm=(k % n_cycle) >= n_cycle // 2, bg=bg)
            self.cycle.append(p)
        self._stop = False

    def stop(self) -> None:
        self._stop = True

    def __iter__(self):
        import time  # noqa: PLC0415

        from edge.core.frames import Frame  # noqa: PLC0415
        seq = 0
        period = 1.0 / self.fps
        t_next = time.monotonic()
        while not self._stop and (self.max_frames is None or seq < self.max_frames):
            if self.realtime:
                now = time.monotonic()
                if t_next > now:
                    time.sleep(t_next - now)
                t_next = max(t_next + period, time.monotonic() - period)
            p = self.cycle[seq % len(self.cycle)]
            t = time.monotonic()
            pr = p.pose_result(seq, t)
            yield Frame(image=p.image.copy(), seq=seq, t_capture=t, t_wall=time.time(), source="mannequin",
                        meta={"pose_truth": pr})
            seq += 1


class TruthPose:
    """Pose stage for synthetic frames: returns the PoseResult the mannequin source attached."""

    name = "synthetic"

    def process(self, frame) -> PoseResult:
        pr = frame.meta.get("pose_truth")
        if pr is None:
            h, w = frame.shape
            return PoseResult(frame_seq=frame.seq, t=frame.t, image_size=(h, w), clock=frame.clock)
        return pr
