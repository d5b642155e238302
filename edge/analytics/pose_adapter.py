"""PoseResult people -> Detections (box of the visible landmarks, 33 BlazePose keypoints)."""
from __future__ import annotations

import numpy as np

from edge.core.detections import Detections
from edge.pose.types import LANDMARK_NAMES, PoseResult


def detections_from_pose(result: PoseResult, visibility: float = 0.5, keep_track_ids: bool = False) -> Detections:
    """One detection per person with a visible landmark: xyxy = box of the landmarks with visibility above
    `visibility`, score = pose presence flag, class 0, keypoints (33, 3) = x, y, visibility, keypoint_names =
    BlazePose's. With `keep_track_ids` the pose tracker's ids become tracker_id (its tracks are already stable)."""
    boxes, scores, kps, ids = [], [], [], []
    for p in result.people:
        lm = np.asarray(p.landmarks, np.float32)
        vis = lm[:, 3] > visibility
        if not vis.any():
            continue
        xy = lm[vis, :2]
        boxes.append(np.r_[xy.min(0), xy.max(0)])
        scores.append(p.score)
        kps.append(lm[:, [0, 1, 3]])
        ids.append(p.track_id)
    if not boxes:
        return Detections.empty(keypoint_names=LANDMARK_NAMES, tracked=keep_track_ids)
    return Detections(np.array(boxes), np.array(scores), np.zeros(len(boxes), np.int32), np.stack(kps),
                      np.array(ids) if keep_track_ids else None, LANDMARK_NAMES)
