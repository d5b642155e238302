"""Landmark model (BlazePose pose_landmark_full): ROI crop → Session.run → landmarks in image coordinates.

Decoding follows MediaPipe's TensorsToPoseLandmarksAndSegmentation + inverse projection: sigmoid on visibility and
presence, heatmap refinement (7x7 kernel), projection of crop px to image px, world landmarks rotated by the ROI
angle, segmentation logits → sigmoid → warped back into the image.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from edge.backends.base import Session
from edge.pose.detection import sigmoid
from edge.pose.roi import crop, to_image
from edge.pose.types import Roi

NUM_LANDMARKS = 33
NUM_RAW = 39  # 33 body + 2 auxiliary (ROI centre, scale point) + 4 unused


@dataclass
class LandmarkOutput:
    """One ROI's result, in image coordinates."""

    landmarks: np.ndarray  # (33, 5) x, y, z (px), visibility, presence
    aux: np.ndarray  # (2, 2) px: tracking-ROI centre and scale point
    world: np.ndarray  # (33, 3) metres, origin between the hips
    flag: float  # pose presence in [0, 1]
    roi: Roi
    mask: np.ndarray | None = None  # (H, W) float32 in [0, 1]


def refine_from_heatmap(xy_norm: np.ndarray, heatmap: np.ndarray, kernel: int = 7, min_conf: float = 0.5
                        ) -> np.ndarray:
    """MediaPipe RefineLandmarksFromHeatmap: replace (x, y) by the sigmoid-weighted mean cell of a kernel window
    around each landmark when the window's peak confidence reaches min_conf. xy_norm (N, 2) in [0, 1] of the
    crop; heatmap (H, W, N) logits. Returns refined (N, 2)."""
    hh, hw, n = heatmap.shape
    out = xy_norm.copy()
    if not np.isfinite(xy_norm).all():  # a broken model's output: nothing to refine (the tracker drops it)
        return out
    col = np.trunc(xy_norm[:, 0] * hw).astype(int)
    row = np.trunc(xy_norm[:, 1] * hh).astype(int)
    # MediaPipe skips a landmark when its column is outside or its row is negative (rows past the end shrink
    # the window to nothing or to a few rows).
    ok = (col >= 0) & (col < hw) & (row >= 0)
    off = (kernel - 1) // 2
    k = np.arange(-off, off + 1)
    rows = row[:, None] + k  # (N, K)
    cols = col[:, None] + k
    rv = (rows >= 0) & (rows < hh)
    cv = (cols >= 0) & (cols < hw)
    rr = np.clip(rows, 0, hh - 1)
    cc = np.clip(cols, 0, hw - 1)
    ch = np.arange(n)
    win = heatmap[rr[:, :, None], cc[:, None, :], ch[:, None, None]]  # (N, K, K)
    conf = sigmoid(win.astype(np.float64)) * (rv[:, :, None] & cv[:, None, :])
    total = conf.sum((1, 2))
    peak = conf.max((1, 2))
    mean_col = (conf * cc[:, None, :]).sum((1, 2)) / np.maximum(total, 1e-30)
    mean_row = (conf * rr[:, :, None]).sum((1, 2)) / np.maximum(total, 1e-30)
    use = ok & (peak >= min_conf) & (total > 0)
    out[use, 0] = mean_col[use] / hw
    out[use, 1] = mean_row[use] / hh
    return out


class LandmarkModel:
    """Runs the landmark model on rotated square ROIs of an RGB image."""

    def __init__(self, session: Session, *, segmentation: bool = True, heatmap_refine: bool = True):
        self.session = session
        self.segmentation, self.heatmap_refine = segmentation, heatmap_refine
        self.input_name = session.inputs[0].name
        shape = session.inputs[0].shape  # (B, 256, 256, 3)
        self.size = int(shape[1]) if len(shape) == 4 and shape[1] > 0 else 256
        self.batchable = len(shape) == 4 and shape[0] == -1
        self.output_names = {o.name for o in session.outputs}

    def preprocess(self, image_rgb: np.ndarray, roi: Roi, *, bgr: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(1, 256, 256, 3) float32 RGB in [0, 1] and the crop px → image px affine (bgr: the image is BGR)."""
        return crop(image_rgb, roi, self.size, bgr=bgr)

    def run(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        return self.session.run({self.input_name: tensor})

    def postprocess(self, out: dict[str, np.ndarray], roi: Roi, affine: np.ndarray, image_hw: tuple[int, int],
                    index: int = 0) -> LandmarkOutput:
        size = self.size
        raw = out["Identity"][index].reshape(NUM_RAW, 5).astype(np.float64)
        xy = raw[:, :2] / size
        if self.heatmap_refine and "Identity_3" in out:
            xy = refine_from_heatmap(xy, out["Identity_3"][index])
        pts = to_image(xy * size, affine)
        lm = np.empty((NUM_LANDMARKS, 5), np.float64)
        lm[:, :2] = pts[:NUM_LANDMARKS]
        lm[:, 2] = raw[:NUM_LANDMARKS, 2] * (roi.size / size)
        lm[:, 3:5] = sigmoid(raw[:NUM_LANDMARKS, 3:5])
        w = out["Identity_4"][index].reshape(NUM_RAW, 3)[:NUM_LANDMARKS].astype(np.float64)
        c, s = math.cos(roi.rotation), math.sin(roi.rotation)
        world = np.stack([c * w[:, 0] - s * w[:, 1], s * w[:, 0] + c * w[:, 1], w[:, 2]], 1)
        flag = float(np.asarray(out["Identity_1"][index]).reshape(-1)[0])
        mask = None
        if self.segmentation and "Identity_2" in out:
            mask = self.mask_to_image(out["Identity_2"][index], affine, image_hw)
        return LandmarkOutput(lm, pts[NUM_LANDMARKS:NUM_LANDMARKS + 2].copy(), world, flag, roi, mask)

    @staticmethod
    def mask_to_image(logits: np.ndarray, affine: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
        """Segmentation logits (S, S, 1) in crop px → (H, W) probabilities in image px (0 outside the ROI).

        Only the ROI's bounding box is warped; the rest of the image stays 0."""
        prob = np.clip(logits[..., 0], -30, 30).astype(np.float32)
        np.negative(prob, out=prob)
        np.exp(prob, out=prob)
        prob += 1
        np.reciprocal(prob, out=prob)
        h, w = image_hw
        s = logits.shape[0]
        corners = to_image(np.array([[0, 0], [s, 0], [0, s], [s, s]], np.float64), affine)
        x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 1, [w, h])
        out = np.zeros((h, w), np.float32)
        if x1 <= x0 or y1 <= y0:
            return out
        a = affine.copy()
        a[:, 2] -= (x0, y0)  # `affine` maps crop px → image px: warpAffine's forward direction
        out[y0:y1, x0:x1] = cv2.warpAffine(prob, a, (int(x1 - x0), int(y1 - y0)), flags=cv2.INTER_LINEAR,
                                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return out

    def __call__(self, image_rgb: np.ndarray, rois: list[Roi], *, bgr: bool = False) -> list[LandmarkOutput]:
        """One LandmarkOutput per ROI (one batched run when the model has a dynamic batch axis)."""
        if not rois:
            return []
        crops = [self.preprocess(image_rgb, r, bgr=bgr) for r in rois]
        hw = image_rgb.shape[:2]
        if self.batchable and len(rois) > 1:
            out = self.run(np.concatenate([c[0] for c in crops]))
            return [self.postprocess(out, r, a, hw, i) for i, (r, (_, a)) in enumerate(zip(rois, crops))]
        return [self.postprocess(self.run(t), r, a, hw) for r, (t, a) in zip(rois, crops)]
