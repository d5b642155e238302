"""Hand landmark model (MediaPipe hand_landmark_full / _lite): rotated 224 crop → 21 landmarks in image px.

Outputs (canonical names): Identity (1, 63) landmarks x, y in crop px, z in crop px x NORMALIZE_Z; Identity_1 (1, 1)
hand presence (a probability); Identity_2 (1, 1) handedness (probability of "Left" on a mirrored image); Identity_3
(1, 63) world landmarks in metres.
"""
from __future__ import annotations

import math

import numpy as np

from edge.backends.base import Session
from edge.hands.types import NUM_HAND_LANDMARKS, Hand
from edge.pose.roi import crop, to_image
from edge.pose.types import Roi

# MediaPipe's hand_landmark_cpu.pbtxt decodes z with TensorsToLandmarksCalculator normalize_z 0.4 ("to account for
# the Z coordinate distribution in the training data"): z = raw z / 0.4, in crop px
NORMALIZE_Z = 0.4


class HandLandmarkModel:
    """Runs the hand landmark model on rotated square ROIs of an RGB image."""

    def __init__(self, session: Session):
        self.session = session
        self.input_name = session.inputs[0].name
        shape = session.inputs[0].shape  # (1, 224, 224, 3)
        self.size = int(shape[1]) if len(shape) == 4 and shape[1] > 0 else 224

    def postprocess(self, out: dict[str, np.ndarray], roi: Roi, affine: np.ndarray) -> Hand:
        size = self.size
        raw = np.asarray(out["Identity"]).reshape(NUM_HAND_LANDMARKS, 3).astype(np.float64)
        lm = np.empty((NUM_HAND_LANDMARKS, 3), np.float64)
        lm[:, :2] = to_image(raw[:, :2], affine)
        lm[:, 2] = raw[:, 2] / NORMALIZE_Z * (roi.size / size)
        w = np.asarray(out["Identity_3"]).reshape(NUM_HAND_LANDMARKS, 3).astype(np.float64)
        c, s = math.cos(roi.rotation), math.sin(roi.rotation)
        world = np.stack([c * w[:, 0] - s * w[:, 1], s * w[:, 0] + c * w[:, 1], w[:, 2]], 1)
        flag = float(np.asarray(out["Identity_1"]).reshape(-1)[0])
        handed = float(np.asarray(out["Identity_2"]).reshape(-1)[0])
        return Hand(lm, world, flag, handed, roi)

    def __call__(self, image_rgb: np.ndarray, roi: Roi) -> Hand:
        tensor, affine = crop(image_rgb, roi, self.size)
        return self.postprocess(self.session.run({self.input_name: tensor}), roi, affine)
