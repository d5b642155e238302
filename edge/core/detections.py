"""Detections of one frame (supervision-style `sv.Detections`): boxes, scores, classes, optional keypoints and
track ids, as parallel numpy arrays. Detectors produce them, the tracker fills `tracker_id`, analytics consume them.

Coordinates are frame pixels. `tracker_id` is -1 for a detection that belongs to no confirmed track.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

BOX_ANCHORS = ("bottom_center", "center", "top_center")

# COCO-17 keypoint order (MoveNet, most multi-person pose models). BlazePose's 33 names live in edge.pose.types.
COCO_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
)


@dataclass
class Detections:
    """N detections as parallel arrays.

    xyxy (N, 4) float32 frame px; score (N,) float32; class_id (N,) int32; keypoints (N, K, 3) float32 x, y, score
    or None; tracker_id (N,) int64 or None (None: not tracked; -1: no confirmed track); keypoint_names: the K
    names (e.g. COCO_KEYPOINTS), needed for named keypoint anchors such as "left_wrist".
    """

    xyxy: np.ndarray
    score: np.ndarray
    class_id: np.ndarray
    keypoints: np.ndarray | None = None
    tracker_id: np.ndarray | None = None
    keypoint_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, np.float32).reshape(-1, 4)
        n = len(self.xyxy)
        self.score = np.asarray(self.score, np.float32).reshape(-1)
        self.class_id = np.asarray(self.class_id, np.int32).reshape(-1)
        if self.score.shape != (n,) or self.class_id.shape != (n,):
            raise ValueError(f"Detections: score {self.score.shape} and class_id {self.class_id.shape} must be ({n},)")
        if self.keypoints is not None:
            self.keypoints = np.asarray(self.keypoints, np.float32)
            if self.keypoints.ndim != 3 or self.keypoints.shape[0] != n or self.keypoints.shape[2] != 3:
                raise ValueError(f"Detections: keypoints must be ({n}, K, 3), got {self.keypoints.shape}")
        if self.tracker_id is not None:
            self.tracker_id = np.asarray(self.tracker_id, np.int64).reshape(-1)
            if self.tracker_id.shape != (n,):
                raise ValueError(f"Detections: tracker_id must be ({n},), got {self.tracker_id.shape}")
        if self.keypoint_names is not None:
            self.keypoint_names = tuple(self.keypoint_names)
            if self.keypoints is not None and len(self.keypoint_names) != self.keypoints.shape[1]:
                raise ValueError(f"Detections: {len(self.keypoint_names)} keypoint names for "
                                 f"{self.keypoints.shape[1]} keypoints")

    @classmethod
    def empty(cls, num_keypoints: int | None = None, keypoint_names: Sequence[str] | None = None,
              tracked: bool = False) -> Detections:
        """No detections (optionally with a (0, K, 3) keypoint array and a (0,) tracker_id)."""
        if keypoint_names is not None and num_keypoints is None:
            num_keypoints = len(keypoint_names)
        kp = None if num_keypoints is None else np.zeros((0, num_keypoints, 3), np.float32)
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), kp,
                   np.zeros(0, np.int64) if tracked else None, keypoint_names)

    def __len__(self) -> int:
        return len(self.xyxy)

    def is_empty(self) -> bool:
        return len(self) == 0

    def __getitem__(self, index) -> Detections:
        """Rows by int, slice, index array or boolean mask; always a Detections."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        if isinstance(index, np.ndarray) and index.dtype == bool and index.shape != (len(self),):
            raise IndexError(f"boolean mask of shape {index.shape} for {len(self)} detections")
        return Detections(self.xyxy[index], self.score[index], self.class_id[index],
                          None if self.keypoints is None else self.keypoints[index],
                          None if self.tracker_id is None else self.tracker_id[index], self.keypoint_names)

    def with_tracker_id(self, tracker_id) -> Detections:
        """A copy sharing the arrays, with `tracker_id` set."""
        return Detections(self.xyxy, self.score, self.class_id, self.keypoints, tracker_id, self.keypoint_names)

    @property
    def confirmed(self) -> Detections:
        """The rows with a confirmed track (tracker_id >= 0); raises when the detections were never tracked."""
        return self[self.require_tracked() >= 0]

    def require_tracked(self) -> np.ndarray:
        if self.tracker_id is None:
            raise ValueError("these detections carry no tracker_id: run them through a tracker first")
        return self.tracker_id

    @property
    def area(self) -> np.ndarray:
        wh = np.clip(self.xyxy[:, 2:] - self.xyxy[:, :2], 0, None)
        return wh[:, 0] * wh[:, 1]

    def keypoint_index(self, name: str) -> int:
        if self.keypoint_names is None or name not in self.keypoint_names:
            raise KeyError(f"keypoint {name!r} unknown: these detections have keypoint names "
                           f"{self.keypoint_names and list(self.keypoint_names)}")
        return self.keypoint_names.index(name)

    def anchors(self, anchor: str = "bottom_center", min_score: float = 0.5) -> np.ndarray:
        """(N, 2) float32 reference points: a box anchor (BOX_ANCHORS) or a keypoint name (e.g. "left_wrist",
        NaN where the keypoint is missing or its score is below min_score)."""
        b = self.xyxy
        if anchor == "bottom_center":
            return np.stack([(b[:, 0] + b[:, 2]) / 2, b[:, 3]], 1)
        if anchor == "center":
            return np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], 1)
        if anchor == "top_center":
            return np.stack([(b[:, 0] + b[:, 2]) / 2, b[:, 1]], 1)
        if self.keypoints is None:
            if self.keypoint_names is None:
                raise KeyError(f"anchor {anchor!r}: not one of {BOX_ANCHORS} and these detections have no keypoints")
            return np.full((len(self), 2), np.nan, np.float32)
        kp = self.keypoints[:, self.keypoint_index(anchor)]
        return np.where((kp[:, 2] >= min_score)[:, None], kp[:, :2], np.nan).astype(np.float32)

    @classmethod
    def merge(cls, parts: Sequence[Detections]) -> Detections:
        """Concatenate detections of one frame (all with or all without keypoints / tracker ids)."""
        parts = list(parts)
        if not parts:
            return cls.empty()
        if len({p.keypoints is None for p in parts}) > 1 or len({p.tracker_id is None for p in parts}) > 1:
            raise ValueError("merge: every part needs keypoints (and tracker ids) or none does")
        names = next((p.keypoint_names for p in parts if p.keypoint_names is not None), None)
        return cls(np.concatenate([p.xyxy for p in parts]), np.concatenate([p.score for p in parts]),
                   np.concatenate([p.class_id for p in parts]),
                   None if parts[0].keypoints is None else np.concatenate([p.keypoints for p in parts]),
                   None if parts[0].tracker_id is None else np.concatenate([p.tracker_id for p in parts]), names)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of two sets of xyxy boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), 1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), 1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)
