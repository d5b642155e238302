"""BlazeFace full range (the zoo's `face_detection_full_range`): letterbox, Session.run, anchor decoding and
weighted NMS, on the whole image and on overlapping tiles so that small (far) faces are found too."""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from edge.backends.base import Session
from edge.pose.detection import letterbox, sigmoid, weighted_nms

# the 6 keypoints of a BlazeFace detection
KEYPOINTS = ("right_eye", "left_eye", "nose_tip", "mouth_centre", "right_ear_tragion", "left_ear_tragion")


@lru_cache(maxsize=4)
def face_anchors(size: int = 192, stride: int = 4) -> np.ndarray:
    """BlazeFace full range: one layer, stride 4, one fixed-size anchor per cell (48x48 = 2304 at 192)."""
    fm = size // stride
    ys, xs = np.mgrid[0:fm, 0:fm]
    out = np.stack([(xs.ravel() + 0.5) / fm, (ys.ravel() + 0.5) / fm], 1).astype(np.float32)
    out.setflags(write=False)
    return out


@dataclass
class Face:
    score: float
    box: np.ndarray  # (4,) x1, y1, x2, y2 image px
    keypoints: np.ndarray  # (6, 2) image px, see KEYPOINTS


def tiles(w: int, h: int, grid: int, overlap: float = 0.25) -> list[tuple[int, int, int, int]]:
    """`grid` x `grid` overlapping windows (x1, y1, x2, y2) covering a w x h image."""
    if grid <= 1:
        return [(0, 0, w, h)]
    tw, th = w / (grid - (grid - 1) * overlap), h / (grid - (grid - 1) * overlap)
    out = []
    for j in range(grid):
        for i in range(grid):
            x1, y1 = int(round(i * tw * (1 - overlap))), int(round(j * th * (1 - overlap)))
            out.append((x1, y1, min(w, int(round(x1 + tw))), min(h, int(round(y1 + th)))))
    return out


class FaceDetector:
    """Faces in an RGB image: the whole image plus `tile_grids` (e.g. (2, 3): 2x2 and 3x3 overlapping tiles), merged
    by weighted NMS. `threshold` is the face score (MediaPipe uses 0.5; privacy blurring prefers recall)."""

    def __init__(self, session: Session, *, threshold: float = 0.4, nms_iou: float = 0.3,
                 tile_grids: tuple[int, ...] = (2, 3)):
        self.session = session
        self.threshold, self.nms_iou, self.tile_grids = threshold, nms_iou, tuple(tile_grids)
        self.input_name = session.inputs[0].name
        shape = session.inputs[0].shape
        self.size = int(shape[1]) if len(shape) == 4 and shape[1] > 0 else 192

    def _window(self, image_rgb: np.ndarray, x0: int, y0: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(boxes (N, 4), keypoints (N, 6, 2), scores (N,)) above the threshold in full-image px."""
        tensor, lb = letterbox(image_rgb, self.size)
        out = self.session.run({self.input_name: tensor})
        scores = sigmoid(out["Identity_1"].reshape(-1))
        keep = np.nonzero(scores >= self.threshold)[0]
        if len(keep) == 0:
            return np.zeros((0, 4)), np.zeros((0, 6, 2)), np.zeros(0)
        size, a = self.size, face_anchors(self.size)[keep]
        r = out["Identity"].reshape(-1, 16)[keep].astype(np.float64) / size
        cx, cy, w, h = r[:, 0] + a[:, 0], r[:, 1] + a[:, 1], r[:, 2], r[:, 3]
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1) * size
        kps = (r[:, 4:].reshape(-1, 6, 2) + a[:, None, :]) * size
        boxes = (boxes - [lb.pad_x, lb.pad_y, lb.pad_x, lb.pad_y]) / lb.scale + [x0, y0, x0, y0]
        kps = (kps - [lb.pad_x, lb.pad_y]) / lb.scale + [x0, y0]
        return boxes, kps, scores[keep]

    def __call__(self, image_rgb: np.ndarray) -> list[Face]:
        """Faces in image px, best score first."""
        h, w = image_rgb.shape[:2]
        windows = [(0, 0, w, h)] + [t for g in self.tile_grids for t in tiles(w, h, g)]
        parts = [self._window(np.ascontiguousarray(image_rgb[y1:y2, x1:x2]), x1, y1) for x1, y1, x2, y2 in windows
                 if x2 - x1 >= 16 and y2 - y1 >= 16]
        boxes = np.concatenate([p[0] for p in parts])
        if len(boxes) == 0:
            return []
        kps, scores = np.concatenate([p[1] for p in parts]), np.concatenate([p[2] for p in parts])
        return [Face(s, b, k) for s, b, k in weighted_nms(boxes, kps, scores, self.nms_iou)]
