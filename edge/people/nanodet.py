"""NanoDet-m (COCO-80) as a person detector for people at a distance: letterbox → Session.run → GFL decode of the
person class → NMS, optionally over overlapping tiles for small (far) people.

Model I/O (models/manifests/nanodet_m_416.toml): `input_1` (1, S, S, 3) BGR in [0, 1], letterboxed (the
normalisation is inside the model); `Identity` (1, N, 80) class probabilities and `Identity_1` (1, N, 44) box
side distributions (left, top, right, bottom × 11 bins) for the N = Σ (S/stride)² cells of strides 8, 16, 32.

Batches: `detect_batch(images)` runs every window (whole frame + tiles) of every image through the session in
batches of up to `session.max_batch` (OpenVINO: the batch-polymorphic model, see edge.backends.openvino_backend;
the onnxruntime and TFLite artefacts keep a fixed batch of 1: their graphs declare input (1, 416, 416, 3) and six
Reshape constants [1, 80, -1] / [1, 44, -1], and no runtime graph editor is installed, so they run one window per
call). A single image is a batch of one image: both paths give the same boxes.
"""
from __future__ import annotations

import logging
from functools import lru_cache

import numpy as np

from edge.backends.base import Session
from edge.core.detections import Detections
from edge.core.frames import Frame
from edge.people.letterbox import Letterbox, letterbox_u8, to_tensor
from edge.people.types import PersonDetection, to_detections

log = logging.getLogger(__name__)

STRIDES = (8, 16, 32)
BINS = 11  # distribution bins per side (reg_max 10)
PERSON = 0  # COCO class index of the model's outputs


class PeopleModelError(ValueError):
    """The session's model is not the kind this detector decodes (wrong inputs or outputs)."""


@lru_cache(maxsize=8)
def centres(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres (N, 2) in model px and their strides (N,), stride 8 cells first, row-major."""
    pts, st = [], []
    for s in STRIDES:
        fm = -(-size // s)
        ys, xs = np.mgrid[0:fm, 0:fm]
        pts.append(np.stack([(xs.ravel() + 0.5) * s, (ys.ravel() + 0.5) * s], 1))
        st.append(np.full(fm * fm, float(s)))
    return np.concatenate(pts), np.concatenate(st)


def decode(scores: np.ndarray, dists: np.ndarray, size: int, threshold: float,
           class_id: int = PERSON) -> tuple[np.ndarray, np.ndarray]:
    """Raw outputs of one image → (boxes (K, 4) x1y1x2y2 model px, scores (K,)) of cells scoring >= threshold.

    Each side's distance is the expectation of its softmax over 11 bins, in units of the cell's stride."""
    sc = np.asarray(scores, np.float32).reshape(-1, scores.shape[-1])[:, class_id]
    keep = np.nonzero(sc >= threshold)[0]
    if len(keep) == 0:
        return np.zeros((0, 4)), np.zeros(0)
    pts, st = centres(size)
    if len(pts) != len(sc):
        raise PeopleModelError(f"{len(sc)} cells in the output, a {size}px NanoDet has {len(pts)}")
    d = np.asarray(dists, np.float64).reshape(len(sc), 4, BINS)[keep]
    with np.errstate(invalid="ignore", over="ignore"):  # non-finite logits give NaN sides, dropped below
        d = np.exp(d - d.max(axis=2, keepdims=True))
        d = (d / d.sum(axis=2, keepdims=True)) @ np.arange(BINS, dtype=np.float64) * st[keep, None]
    c = pts[keep]
    boxes = np.stack([c[:, 0] - d[:, 0], c[:, 1] - d[:, 1], c[:, 0] + d[:, 2], c[:, 1] + d[:, 3]], 1)
    ok = np.isfinite(boxes).all(1)  # a cell whose side logits overflowed has no box (NaN would wreck NMS)
    return boxes[ok], sc[keep][ok].astype(np.float64)


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (4,) box against (N, 4) boxes, x1y1x2y2."""
    lt = np.maximum(box[:2], boxes[:, :2])
    rb = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(box) + area(boxes) - inter + 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int | None = None) -> np.ndarray:
    """Greedy hard NMS: indices of the kept boxes, best score first."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    while len(order) and (max_keep is None or len(keep) < max_keep):
        i = order[0]
        keep.append(i)
        order = order[1:][~(iou(boxes[i], boxes[order[1:]]) > iou_threshold)]  # a NaN IoU suppresses nothing
    return np.array(keep, dtype=np.int64)


def tile_windows(w: int, h: int, cols: int, rows: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """The whole frame, then a cols x rows grid of tiles overlapping by `overlap` of a tile (x0, y0, x1, y1)."""
    wins = [(0, 0, w, h)]
    if cols * rows <= 1:
        return wins
    tw, th = w / (cols - (cols - 1) * overlap), h / (rows - (rows - 1) * overlap)
    for r in range(rows):
        for c in range(cols):
            x0, y0 = c * tw * (1 - overlap), r * th * (1 - overlap)
            wins.append((int(round(x0)), int(round(y0)), int(round(min(x0 + tw, w))), int(round(min(y0 + th, h)))))
    return wins


class NanoDetPeople:
    """People in a BGR frame: boxes in frame px, best first.

    tiles=(cols, rows): besides the whole frame, the model runs on cols x rows overlapping tiles (default 2x1:
    3 runs per frame); a tile keeps only boxes under `tile_max_height` of the tile that do not touch an inner tile
    edge, and all boxes are merged by NMS. On devtools/detector_eval.py's set 2x1 lifts recall of 30-80 px people
    at 0.1 false positives per frame from 0.22 to 0.31 (models/cards/nanodet_m_416.md); (1, 1) = one run.
    threshold 0.5 gives ~0.1 false positives per frame with 2x1 tiles (0.45 with one run)."""

    def __init__(self, session: Session, *, threshold: float = 0.5, nms_iou: float = 0.6,
                 tiles: tuple[int, int] = (2, 1), overlap: float = 0.2, tile_max_height: float = 0.6,
                 max_detections: int = 100):
        self.session = session
        self.threshold, self.nms_iou, self.max_detections = threshold, nms_iou, max_detections
        self.tiles, self.overlap, self.tile_max_height = tuple(tiles), overlap, tile_max_height
        self.size = self._check(session)
        self.input_name = session.inputs[0].name

    @property
    def max_batch(self) -> int:
        """Windows per session call (the session's, read each time: a wrapper may swap the session)."""
        return max(1, int(getattr(self.session, "max_batch", 1)))

    @staticmethod
    def _check(session: Session) -> int:
        where = getattr(getattr(session, "info", None), "path", "<session>")
        shape = tuple(session.inputs[0].shape) if session.inputs else ()
        if (len(session.inputs) != 1 or len(shape) != 4 or shape[0] not in (1, -1) or shape[3] != 3
                or shape[1] != shape[2] or shape[1] <= 0):
            raise PeopleModelError(f"{where}: not a NanoDet person model: expected one (1, S, S, 3) input, got "
                                   f"{[(t.name, t.shape) for t in session.inputs]}")
        size = int(shape[1])
        n = len(centres(size)[0])
        outs = {t.name: tuple(t.shape) for t in session.outputs}
        want = {"Identity": (1, n, 80), "Identity_1": (1, n, 4 * BINS)}
        for name, s in want.items():
            got = outs.get(name)
            if got is None or len(got) != 3 or any(g not in (-1, x) for g, x in zip(got, s)):
                raise PeopleModelError(f"{where}: not a NanoDet person model: expected outputs {want}, got {outs}")
        return size

    def preprocess(self, image_bgr: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        canvas, lb = letterbox_u8(image_bgr, self.size)
        return to_tensor(canvas), lb

    def run(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw outputs of a (B, S, S, 3) tensor, B <= max_batch."""
        out = self.session.run({self.input_name: tensor})
        return out["Identity"], out["Identity_1"]

    def run_windows(self, tensors: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Raw outputs of each (1, S, S, 3) tensor, run in batches of up to max_batch."""
        out, mb = [], self.max_batch
        for i in range(0, len(tensors), mb):
            chunk = tensors[i:i + mb]
            scores, dists = self.run(chunk[0] if len(chunk) == 1 else np.concatenate(chunk))
            out += [(scores[j:j + 1], dists[j:j + 1]) for j in range(len(chunk))]
        return out

    def postprocess(self, scores: np.ndarray, dists: np.ndarray, lb: Letterbox,
                    threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Frame-px boxes and scores after NMS."""
        boxes, sc = decode(scores, dists, self.size, self.threshold if threshold is None else threshold)
        keep = nms(boxes, sc, self.nms_iou, self.max_detections)
        return lb.to_frame(boxes[keep]), sc[keep]

    def detect_boxes(self, image_bgr: np.ndarray, threshold: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(boxes (K, 4) frame px, scores (K,)), over the tiles when configured, best first."""
        return self.detect_batch([image_bgr], threshold)[0]

    def detect_batch(self, images: list[np.ndarray], threshold: float | None = None
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
        """detect_boxes of each image, with the windows of all images run in batches of up to max_batch."""
        thr = self.threshold if threshold is None else threshold
        jobs, tensors = [], []  # (image index, window, whole?, letterbox) per window
        for k, image in enumerate(images):
            h, w = image.shape[:2]
            if image.size == 0:  # an empty frame (a camera hiccup): nobody in it, the batch's other frames go on
                continue
            for x0, y0, x1, y1 in tile_windows(w, h, *self.tiles, self.overlap):
                whole = (x0, y0, x1, y1) == (0, 0, w, h)
                tensor, lb = self.preprocess(image if whole else image[y0:y1, x0:x1])
                jobs.append((k, (x0, y0, x1, y1), whole, lb))
                tensors.append(tensor)
        per_image: list[tuple[list, list]] = [([], []) for _ in images]
        for (k, (x0, y0, x1, y1), whole, lb), raw in zip(jobs, self.run_windows(tensors)):
            b, s = self.postprocess(*raw, lb, thr)
            if not whole and len(b):
                h, w = images[k].shape[:2]
                e = 2.0
                inner = (((b[:, 0] <= e) & (x0 > 0)) | ((b[:, 2] >= x1 - x0 - e) & (x1 < w)) |
                         ((b[:, 1] <= e) & (y0 > 0)) | ((b[:, 3] >= y1 - y0 - e) & (y1 < h)))
                big = (b[:, 3] - b[:, 1]) > self.tile_max_height * (y1 - y0)
                b, s = b[~(inner | big)] + [x0, y0, x0, y0], s[~(inner | big)]
            per_image[k][0].append(b)
            per_image[k][1].append(s)
        out = []
        for image, (all_b, all_s) in zip(images, per_image):
            h, w = image.shape[:2]
            if not all_b:  # an empty frame
                out.append((np.zeros((0, 4)), np.zeros(0)))
                continue
            boxes, scores = np.concatenate(all_b).reshape(-1, 4), np.concatenate(all_s)
            if len(all_b) > 1:
                keep = nms(boxes, scores, self.nms_iou, self.max_detections)
                boxes, scores = boxes[keep], scores[keep]
            boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
            boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
            out.append((boxes, scores))
        return out

    def __call__(self, image_bgr: np.ndarray) -> list[PersonDetection]:
        boxes, scores = self.detect_boxes(image_bgr)
        return [PersonDetection(b, float(s)) for b, s in zip(boxes, scores)]

    def frame_detections(self, frame: Frame) -> Detections:
        """People in a source Frame as Detections (the BehaviourStage detector)."""
        return to_detections(self(frame.image))

    def frame_detections_batch(self, frames: list[Frame]) -> list[Detections]:
        """frame_detections of each frame, their windows batched (detect_batch)."""
        return [to_detections([PersonDetection(b, float(s)) for b, s in zip(boxes, scores)])
                for boxes, scores in self.detect_batch([f.image for f in frames])]
