"""Person detector pre/post-processing: letterbox, SSD box decoding, weighted NMS (MediaPipe semantics)."""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge.pose.anchors import ssd_anchors


@dataclass
class Letterbox:
    scale: float  # model px per image px
    pad_x: float  # model px left of the image
    pad_y: float  # model px above the image
    size: int


@dataclass
class Detection:
    score: float
    box: np.ndarray  # (4,) x1, y1, x2, y2 in image px (face box)
    keypoints: np.ndarray  # (K, 2) image px; pose detector (4): 0 mid-hip, 1 full-body scale point, 2 mid-shoulder,
    # 3 upper-body scale


def letterbox(image_rgb: np.ndarray, size: int = 224, zero_one: bool = False, *, bgr: bool = False
              ) -> tuple[np.ndarray, Letterbox]:
    """Keep aspect ratio, centre, zero border, bilinear warp (MediaPipe ImageToTensor on CPU).

    Returns (1, size, size, 3) float32 RGB in [-1, 1] (in [0, 1] with zero_one, e.g. the palm detector) and the
    transform. bgr: the image is BGR; only the letterboxed result is converted (same values).
    """
    h, w = image_rgb.shape[:2]
    side = max(h, w)
    s = size / side
    pad_x, pad_y = (side - w) / 2 * s, (side - h) / 2 * s
    m = np.array([[s, 0.0, pad_x], [0.0, s, pad_y]], np.float64)
    canvas = cv2.warpAffine(image_rgb, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                            borderValue=0)
    if bgr:
        canvas = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)
    tensor = canvas.astype(np.float32)
    if zero_one:
        tensor *= 1 / 255.0
    else:
        tensor *= 1 / 127.5
        tensor -= 1.0
    return tensor[None], Letterbox(s, pad_x, pad_y, size)


def sigmoid(x: np.ndarray, clip: float = 100.0) -> np.ndarray:
    """Logistic function on clipped logits (MediaPipe score_clipping_thresh), computed in float64."""
    return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(x, np.float64), -clip, clip)))


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (4,) box against (N, 4) boxes, x1y1x2y2."""
    xx1 = np.maximum(box[0], boxes[:, 0])
    yy1 = np.maximum(box[1], boxes[:, 1])
    xx2 = np.minimum(box[2], boxes[:, 2])
    yy2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(box) + area(boxes) - inter + 1e-9)


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.3
                 ) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """MediaPipe WEIGHTED NMS: each cluster (IoU > threshold with its best box) is averaged by score."""
    order = np.argsort(-scores, kind="stable")
    remaining = order
    out = []
    while len(remaining):
        best = remaining[0]
        ov = iou(boxes[best], boxes[remaining])
        members = remaining[ov > iou_threshold]
        if len(members) == 0:  # degenerate (zero-area) box: keep it alone
            members = remaining[:1]
        w = scores[members][:, None]
        box = (boxes[members] * w).sum(0) / w.sum()
        kps = (keypoints[members] * w[:, :, None]).sum(0) / w.sum()
        out.append((float(scores[best]), box, kps))
        remaining = remaining[~np.isin(remaining, members)]
    return out


def decode(raw_boxes: np.ndarray, raw_scores: np.ndarray, lb: Letterbox, *, threshold: float = 0.5,
           iou_threshold: float = 0.3, max_detections: int | None = None,
           anchors: np.ndarray | None = None) -> list[Detection]:
    """raw_boxes (1, N, 4 + 2K), raw_scores (1, N, 1) → detections in image px, best first.

    anchors: (N, 2) centres in [0, 1]; default the BlazePose detector's (`ssd_anchors(lb.size)`). Other MediaPipe
    SSD detectors (the palm detector, 7 keypoints) pass theirs."""
    size = lb.size
    anchors = ssd_anchors(size) if anchors is None else anchors
    scores = sigmoid(raw_scores.reshape(-1))
    keep = np.nonzero(scores >= threshold)[0]
    if len(keep) == 0:
        return []
    c = raw_boxes.shape[-1]
    r = raw_boxes.reshape(-1, c)[keep] / size
    ok = (r[:, 2] >= 0) & (r[:, 3] >= 0)  # MediaPipe's TensorsToDetections drops boxes of negative (or NaN) size
    if not ok.all():
        keep, r = keep[ok], r[ok]
        if len(keep) == 0:
            return []
    a = anchors[keep]
    cx, cy, w, h = r[:, 0] + a[:, 0], r[:, 1] + a[:, 1], r[:, 2], r[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    kps = r[:, 4:].reshape(len(keep), (c - 4) // 2, 2) + a[:, None, :]
    dets = []
    for score, box, kp in weighted_nms(boxes, kps, scores[keep], iou_threshold):
        box = (box * size - [lb.pad_x, lb.pad_y, lb.pad_x, lb.pad_y]) / lb.scale
        kp = (kp * size - [lb.pad_x, lb.pad_y]) / lb.scale
        dets.append(Detection(score, box.astype(np.float64), kp.astype(np.float64)))
        if max_detections and len(dets) >= max_detections:
            break
    return dets
