"""PoseResult people -> Detections (box of the visible landmarks, 33 BlazePose keypoints)."""
from __future__ import annotations

import numpy as np

from edge.core.detections import Detections
from edge.pose.types import LANDMARK_NAMES, PoseResult


def detections_from_pose(result: PoseResult, visibility: float = 0.5, keep_track_ids: bool = False) -> Detections:
    """One detection per person with a visible landmark in the frame: xyxy = box of the landmarks with visibility
    above `visibility`, clipped to the frame as a detector's boxes are (BlazePose puts feet below the frame below
    it, some visible: a zone drawn down to the frame's bottom must still hold that person), score = pose presence
    flag, class 0, keypoints (33, 3) = x, y, visibility (unclipped), keypoint_names = BlazePose's. With
    `keep_track_ids` the pose tracker's ids become tracker_id (its tracks are already stable)."""
    h, w = result.image_size
    boxes, scores, kps, ids = [], [], [], []
    for p in result.people:
        lm = np.asarray(p.landmarks, np.float32)
        vis = lm[:, 3] > visibility
        xy = lm[vis, :2]
        if not ((xy >= 0).all(1) & (xy[:, 0] <= w) & (xy[:, 1] <= h)).any():  # none visible in view
            continue
        boxes.append(np.clip(np.r_[xy.min(0), xy.max(0)], 0, [w, h, w, h]))
        scores.append(p.score)
        kps.append(lm[:, [0, 1, 3]])
        ids.append(p.track_id)
    if not boxes:
        return Detections.empty(keypoint_names=LANDMARK_NAMES, tracked=keep_track_ids)
    return Detections(np.array(boxes), np.array(scores), np.zeros(len(boxes), np.int32), np.stack(kps),
                      np.array(ids) if keep_track_ids else None, LANDMARK_NAMES)
