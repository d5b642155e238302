"""Hand ROIs (MediaPipe semantics, in image px): from a palm detection, from the previous frame's hand landmarks
(tracking) and from the pose model's wrist / index / pinky landmarks (MediaPipe Holistic). The crop itself is the
pose stage's rotated affine crop (edge.pose.roi.crop)."""
from __future__ import annotations

import math

import numpy as np

from edge.pose.anchors import ssd_anchors
from edge.pose.roi import normalize_angle
from edge.pose.types import Roi

# palm detector keypoints: 0 wrist centre, 1 index MCP, 2 middle MCP, 3 ring MCP, 4 pinky MCP, 5 thumb CMC, 6 thumb MCP
PALM_WRIST, PALM_MIDDLE = 0, 2
# pose landmarks of each hand: wrist, pinky, index
POSE_HAND = {"left": (15, 17, 19), "right": (16, 18, 20)}
# MediaPipe HandLandmarkLandmarksToRoi: the landmarks that bound the tracking ROI (no finger tips, no DIPs)
TRACK_SUBSET = (0, 1, 2, 3, 5, 6, 9, 10, 13, 14, 17, 18)


def palm_anchors(size: int = 192) -> np.ndarray:
    """The palm detector's SSD anchors: 4 layers, strides 8, 16, 16, 16 (2016 at 192)."""
    return ssd_anchors(size, 4, (8, 16, 16, 16))


def rotation_to(p0: np.ndarray, p1: np.ndarray) -> float:
    """Rotation that makes p0 → p1 point up (MediaPipe target angle 90°)."""
    return normalize_angle(math.pi / 2 - math.atan2(-(p1[1] - p0[1]), p1[0] - p0[0]))


def transform(cx: float, cy: float, w: float, h: float, rotation: float, scale: float, shift_y: float) -> Roi:
    """RectTransformationCalculator (shift_x 0, square_long, scale_x = scale_y) on a rect in px."""
    cx -= h * shift_y * math.sin(rotation)
    cy += h * shift_y * math.cos(rotation)
    return Roi(float(cx), float(cy), float(max(w, h) * scale), float(rotation))


def roi_from_palm(box: np.ndarray, keypoints: np.ndarray) -> Roi:
    """PalmDetectionDetectionToRoi: the box, rotated wrist → middle MCP, scaled 2.6, shifted up 0.5."""
    x1, y1, x2, y2 = box
    rot = rotation_to(keypoints[PALM_WRIST], keypoints[PALM_MIDDLE])
    return transform((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, rot, 2.6, -0.5)


def roi_from_landmarks(xy: np.ndarray) -> Roi:
    """HandLandmarkLandmarksToRoi: tracking ROI from (21, 2) image px landmarks (scale 2.0, shift up 0.1)."""
    p = xy[list(TRACK_SUBSET), :2].astype(np.float64)
    far = (p[4] + p[8]) / 2  # index and ring MCP, then with the middle MCP
    far = (far + p[6]) / 2
    rot = rotation_to(p[0], far)
    centre = (p.min(0) + p.max(0)) / 2
    c, s = math.cos(-rot), math.sin(-rot)
    d = p - centre
    q = np.stack([d[:, 0] * c - d[:, 1] * s, d[:, 0] * s + d[:, 1] * c], 1)
    lo, hi = q.min(0), q.max(0)
    mid = (lo + hi) / 2
    c2, s2 = math.cos(rot), math.sin(rot)
    cx = mid[0] * c2 - mid[1] * s2 + centre[0]
    cy = mid[0] * s2 + mid[1] * c2 + centre[1]
    w, h = hi - lo
    return transform(cx, cy, w, h, rot, 2.0, -0.1)


# MediaPipe Holistic scales the pose's hand box by 2.7 for its hand re-crop model; fed straight to the landmark
# model that crop is too wide (pasted real hands, scripted pose noise: hand found 19% at 2.7, 29% at 2.0, 71% at
# 1.5, 75% at 1.3: devtools/hand_scenes.py). 1.5 keeps a margin for pose error; the next frame tracks.
POSE_ROI_SCALE = 1.5


def roi_from_pose(landmarks: np.ndarray, side: str, scale: float = POSE_ROI_SCALE) -> Roi:
    """HandDetectionsFromPoseToRectsCalculator: a hand ROI from pose landmarks (33, >=2) px of one side.

    Centre: the estimated middle finger (2/3 index + 1/3 pinky knuckle), size twice its distance to the wrist,
    rotated wrist → middle finger, then scaled (POSE_ROI_SCALE) and shifted up 0.1."""
    wi, pi, ii = POSE_HAND[side]
    wrist, pinky, index = (landmarks[i, :2].astype(np.float64) for i in (wi, pi, ii))
    middle = (2 * index + pinky) / 3
    size = 2 * float(np.hypot(*(middle - wrist)))
    return transform(middle[0], middle[1], size, size, rotation_to(wrist, middle), scale, -0.1)


def overlap(a: Roi, b: Roi) -> float:
    """Distance of two ROI centres over the smaller ROI size (< ~0.3: the same hand)."""
    return float(math.hypot(a.cx - b.cx, a.cy - b.cy) / max(min(a.size, b.size), 1e-6))
