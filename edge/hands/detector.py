"""Palm detector (MediaPipe palm_detection_full / _lite): letterbox in [0, 1] → Session.run → the pose stage's SSD
decoding and weighted NMS with the palm anchors (7 keypoints per palm)."""
from __future__ import annotations

import numpy as np

from edge.backends.base import Session
from edge.hands.roi import palm_anchors, roi_from_palm
from edge.pose.detection import Detection, decode, letterbox
from edge.pose.types import Roi


class PalmDetector:
    """Palms in an RGB image; `rois()` turns them into hand-landmark ROIs."""

    def __init__(self, session: Session, *, threshold: float = 0.5, nms_iou: float = 0.3):
        self.session = session
        self.threshold, self.nms_iou = threshold, nms_iou
        self.input_name = session.inputs[0].name
        shape = session.inputs[0].shape  # (1, 192, 192, 3)
        self.size = int(shape[1]) if len(shape) == 4 and shape[1] > 0 else 192
        self.anchors = palm_anchors(self.size)

    def __call__(self, image_rgb: np.ndarray, max_detections: int | None = None) -> list[Detection]:
        """Palm detections in image px, best first (box + 7 keypoints: wrist, index/middle/ring/pinky MCP, thumb
        CMC and MCP)."""
        tensor, lb = letterbox(image_rgb, self.size, zero_one=True)
        out = self.session.run({self.input_name: tensor})
        return decode(out["Identity"], out["Identity_1"], lb, threshold=self.threshold, iou_threshold=self.nms_iou,
                      max_detections=max_detections, anchors=self.anchors)

    def rois(self, image_rgb: np.ndarray, max_hands: int = 2) -> list[Roi]:
        return [roi_from_palm(d.box, d.keypoints) for d in self(image_rgb, max_hands)]
