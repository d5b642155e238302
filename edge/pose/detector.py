"""Person detector (BlazePose pose_detection): letterbox → Session.run → SSD decode + weighted NMS."""
from __future__ import annotations

import numpy as np

from edge.backends.base import Session
from edge.pose.detection import Detection, Letterbox, decode, letterbox


class PersonDetector:
    """Finds people in an RGB (or, with bgr=True, BGR) image; each detection carries the hip centre and full-body
    scale keypoints."""

    def __init__(self, session: Session, *, threshold: float = 0.5, nms_iou: float = 0.3):
        self.session = session
        self.threshold, self.nms_iou = threshold, nms_iou
        self.input_name = session.inputs[0].name
        shape = session.inputs[0].shape  # (1, 224, 224, 3)
        self.size = int(shape[1]) if len(shape) == 4 and shape[1] > 0 else 224

    def preprocess(self, image_rgb: np.ndarray, *, bgr: bool = False) -> tuple[np.ndarray, Letterbox]:
        return letterbox(image_rgb, self.size, bgr=bgr)

    def run(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = self.session.run({self.input_name: tensor})
        return out["Identity"], out["Identity_1"]

    def postprocess(self, raw_boxes: np.ndarray, raw_scores: np.ndarray, lb: Letterbox,
                    max_detections: int | None = None) -> list[Detection]:
        return decode(raw_boxes, raw_scores, lb, threshold=self.threshold, iou_threshold=self.nms_iou,
                      max_detections=max_detections)

    def __call__(self, image_rgb: np.ndarray, max_detections: int | None = None, *, bgr: bool = False
                 ) -> list[Detection]:
        """Detections in image px, best score first."""
        tensor, lb = self.preprocess(image_rgb, bgr=bgr)
        return self.postprocess(*self.run(tensor), lb, max_detections)
