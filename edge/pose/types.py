"""Pose results shared by pose, try-on and behaviour analytics."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# BlazePose 33-landmark topology (index names).
LANDMARK_NAMES = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye", "right_eye_outer",
    "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_pinky", "right_pinky", "left_index", "right_index",
    "left_thumb", "right_thumb", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "left_heel", "right_heel", "left_foot_index", "right_foot_index",
)
LM = {n: i for i, n in enumerate(LANDMARK_NAMES)}


@dataclass
class Roi:
    """Rotated square region in image pixels."""

    cx: float
    cy: float
    size: float
    rotation: float  # radians


@dataclass
class PersonPose:
    track_id: int
    landmarks: np.ndarray  # (33, 5) x, y (image px), z (px-scale, relative to hips), visibility, presence
    world: np.ndarray  # (33, 3) metres, origin between the hips
    score: float  # pose presence flag in [0, 1]
    roi: Roi
    mask: np.ndarray | None = None  # HxW float32 [0,1] in image coordinates (segmentation), if enabled


@dataclass
class PoseResult:
    frame_seq: int
    t: float  # stream time of the frame (edge.core.frames.Frame.t): media time for recorded media
    image_size: tuple[int, int]  # (h, w)
    people: list[PersonPose] = field(default_factory=list)
    detector_ran: bool = False
    timings_ms: dict[str, float] = field(default_factory=dict)
    clock: str = "capture"  # "media" (recorded media) or "capture" (live), see Frame.clock
