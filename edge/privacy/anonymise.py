"""Anonymised snapshots: every face blurred, by the face detector AND by the pose head region, optionally every person
masked by the segmentation; then downscaled, checked again (fail closed) and JPEG-encoded.

Order: the face detector (BlazeFace full range, whole frame + tiles) and a fresh single-frame pose pass (BlazePose:
head box from landmarks 0-10, i.e. nose, eyes, ears, mouth; segmentation mask) run on the full-resolution frame;
the regions are pixelated and blurred; the image is downscaled to `max_width` and JPEG-encoded; the face detector
runs again on what would leave the device (the decoded JPEG: compression can sharpen a blurred face's edges back
over the threshold) and any face it still finds is blurred too, up to `max_passes` times. If a face remains after
that, `AnonymisationError` is raised and nothing is sent. Only then is the JPEG `seal()`ed for the guard.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import threading
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge.privacy import guard
from edge.pose.landmarks import LandmarkOutput
from edge.privacy.faces import Face, FaceDetector, tiles

log = logging.getLogger(__name__)

HEAD_LANDMARKS = slice(0, 11)  # BlazePose nose, eyes (inner, centre, outer), ears, mouth corners
SHOULDERS = (11, 12)


class AnonymisationError(RuntimeError):
    """The image could not be anonymised (a face remained, or no model): nothing may be sent."""


def head_box(landmarks: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """(4,) x1, y1, x2, y2 px around the head of one BlazePose person (landmarks (33, >=2) image px), generous:
    the face landmarks span only eyes to mouth and ear to ear, so the box grows to the hair and the chin, and to at
    least half the shoulder width (a head seen in profile or from behind)."""
    h, w = image_size
    pts = np.asarray(landmarks, np.float64)[HEAD_LANDMARKS, :2]
    c = pts.mean(0)
    span = float(max(np.ptp(pts[:, 0]), np.ptp(pts[:, 1])))
    sh = float(np.hypot(*(np.asarray(landmarks)[SHOULDERS[0], :2] - np.asarray(landmarks)[SHOULDERS[1], :2])))
    s = max(span, 0.5 * sh, 6.0)
    box = np.array([c[0] - 1.1 * s, c[1] - 1.4 * s, c[0] + 1.1 * s, c[1] + 1.1 * s])
    return np.clip(box, 0, [w, h, w, h])


def face_region(face: Face, image_size: tuple[int, int], margin: float = 0.6) -> np.ndarray:
    """The detector's face box grown by `margin` of its size on each side (hair, chin, ears)."""
    h, w = image_size
    x1, y1, x2, y2 = face.box
    mx, my = (x2 - x1) * margin, (y2 - y1) * margin
    return np.clip(np.array([x1 - mx, y1 - my * 1.2, x2 + mx, y2 + my]), 0, [w, h, w, h])


def obscure(image: np.ndarray, box: np.ndarray, blocks: int = 6) -> bool:
    """Pixelate (about `blocks` cells across) and blur the box in place; False if it is empty."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return False
    roi = image[y1:y2, x1:x2]
    cell = max(2, int(round(max(x2 - x1, y2 - y1) / blocks)))
    small = cv2.resize(roi, (max(1, (x2 - x1) // cell), max(1, (y2 - y1) // cell)), interpolation=cv2.INTER_AREA)
    big = cv2.resize(small, (x2 - x1, y2 - y1), interpolation=cv2.INTER_NEAREST)
    k = (2 * cell) | 1  # smooth the cell edges too: blocky faces still look like faces to a detector
    image[y1:y2, x1:x2] = cv2.GaussianBlur(big, (k, k), 0)
    return True


def mask_person(image: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = (128, 128, 128)) -> bool:
    """Paint the person's segmentation (HxW in [0, 1], image coordinates), slightly grown, in a flat colour."""
    m = (np.asarray(mask) > 0.3).astype(np.uint8)
    if not m.any():
        return False
    grow = max(3, int(0.01 * max(image.shape[:2]))) | 1
    m = cv2.dilate(m, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow))).astype(bool)
    image[m] = colour
    return True


def sharpness(image: np.ndarray, box: np.ndarray) -> float:
    """Variance of the Laplacian of the grey box (low = blurred); used by the tests and the snapshot report."""
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    roi = image[y1:y2, x1:x2]
    if roi.size == 0:
        return 0.0
    grey = cv2.cvtColor(roi, cv2.COLOR_BGR2GRAY) if roi.ndim == 3 else roi
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


@dataclass
class Anonymised:
    image: np.ndarray  # BGR, downscaled: the decoded `jpeg`, i.e. what is sent
    jpeg: bytes = b""  # the encoded image that was checked (no metadata)
    faces: int = 0  # face-detector regions blurred
    heads: int = 0  # pose head regions blurred (landmarks 0-10; the pose detector's face box where they were unsure)
    people_masked: int = 0
    extra_passes: int = 0  # faces found again on the downscaled image and blurred
    head_boxes: list[np.ndarray] = field(default_factory=list)  # in the output image's px
    face_boxes: list[np.ndarray] = field(default_factory=list)  # in the output image's px
    ms: float = 0.0


class Anonymiser:
    """Holds a face detector and a pose pipeline of its own (never the live pipeline's: it runs on the command
    thread). Thread-safe (one image at a time)."""

    def __init__(self, faces: FaceDetector, pose, *, mask_people: bool = False, max_width: int = 640,
                 jpeg_quality: int = 70, max_passes: int = 3, verify_threshold: float = 0.5):
        self.faces, self.pose = faces, pose
        # what leaves is checked at the detector's usual operating point (MediaPipe: 0.5), whatever `faces.threshold`
        # (recall first, usually lower: a blurred head still gives a face-shaped blob a weak score; a higher one must
        # not raise the check of what is sent)
        self.verify = FaceDetector(faces.session, threshold=verify_threshold,
                                   nms_iou=faces.nms_iou, tile_grids=faces.tile_grids)
        self.mask_people, self.max_width, self.jpeg_quality = mask_people, max_width, jpeg_quality
        self.max_passes = max_passes
        self._lock = threading.Lock()

    @classmethod
    def open(cls, zoo, models, *, face_threshold: float = 0.4, mask_people: bool = False, max_people: int = 8,
             **kw) -> Anonymiser:
        """Open the zoo's face detector (`models.face_detector`) and pose models (`models.pose_detector`,
        `models.pose_landmarks`: ModelRefs of the device config) for snapshots."""
        from edge.backends.auto import open_model
        from edge.pose.config import PoseConfig
        from edge.pose.pipeline import PosePipeline, open_sessions

        ref = models.face_detector
        face = FaceDetector(open_model(zoo, ref, options=ref.backend_options()), threshold=face_threshold)
        pcfg = PoseConfig(max_people=max_people, segmentation=mask_people, detection_threshold=0.4,
                          presence_threshold=0.4)
        det, lmk = open_sessions(models, zoo, pcfg)
        return cls(face, PosePipeline.from_sessions(pcfg, det, lmk), mask_people=mask_people, **kw)

    def close(self) -> None:
        self.faces.session.close()
        if self.pose is not None:
            self.pose.close()

    def _people(self, rgb: np.ndarray) -> list[tuple[np.ndarray, LandmarkOutput | None]]:
        """(face box of the pose detector, landmarks or None) per person: the BlazePose detector (it finds people
        by their face) on the whole frame and on the face detector's tiles, merged, then the landmark model."""
        from edge.pose.detection import weighted_nms
        from edge.pose.roi import roi_from_detection

        h, w = rgb.shape[:2]
        boxes, kps, scores = [], [], []
        for x1, y1, x2, y2 in [(0, 0, w, h)] + [t for g in self.faces.tile_grids for t in tiles(w, h, g)]:
            if x2 - x1 < 32 or y2 - y1 < 32:
                continue
            for d in self.pose.detector(np.ascontiguousarray(rgb[y1:y2, x1:x2])):
                boxes.append(d.box + [x1, y1, x1, y1])
                kps.append(d.keypoints + [x1, y1])
                scores.append(d.score)
        if not boxes:
            return []
        merged = weighted_nms(np.array(boxes), np.array(kps), np.array(scores), 0.3)
        rois = [roi_from_detection(k) for _, _, k in merged]
        outs = self.pose.landmarks(rgb, rois) if rois else []
        presence = self.pose.cfg.presence_threshold
        return [(box, out if out.flag >= presence else None) for (_, box, _), out in zip(merged, outs)]

    def anonymise(self, image_bgr: np.ndarray) -> Anonymised:
        """A blurred (and masked), downscaled copy; AnonymisationError if a face remains after `max_passes`."""
        t0 = time.perf_counter()
        with self._lock:
            img = np.ascontiguousarray(image_bgr).copy()
            size = img.shape[:2]
            rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            faces = self.faces(rgb)
            people = self._people(rgb) if self.pose is not None else []
            out = Anonymised(img)
            if self.mask_people:
                for _, lm in people:
                    if lm is not None and lm.mask is not None and mask_person(img, lm.mask):
                        out.people_masked += 1
            # pose: the head box of the landmarks; the pose detector's face box where the landmarks were unsure
            heads = [head_box(lm.landmarks, size) if lm is not None else face_region(Face(0.0, box, None), size)
                     for box, lm in people]
            regions = [face_region(f, size) for f in faces]
            out.heads = sum(obscure(img, b) for b in heads)
            out.faces = sum(obscure(img, b) for b in regions)
            scale = min(1.0, self.max_width / img.shape[1])
            if scale < 1.0:
                img = cv2.resize(img, (int(round(img.shape[1] * scale)), int(round(img.shape[0] * scale))),
                                 interpolation=cv2.INTER_AREA)
            out.head_boxes = [b * scale for b in heads]
            out.face_boxes = [b * scale for b in regions]
            while True:  # checked on what is sent: the JPEG, decoded
                out.jpeg, out.image = self._encode(img)
                left = self.verify(cv2.cvtColor(out.image, cv2.COLOR_BGR2RGB))
                if not left:
                    break
                if out.extra_passes >= self.max_passes:
                    raise AnonymisationError(f"a face was still detected after {self.max_passes} extra passes: "
                                             "snapshot refused")
                out.extra_passes += 1
                log.info("snapshot: %d face(s) found again after blurring (scores %s): blurring them too", len(left),
                         [round(f.score, 2) for f in left])
                for f in left:
                    box = face_region(f, img.shape[:2], margin=0.6)
                    obscure(img, box, blocks=3)
                    out.face_boxes.append(box)
            out.ms = (time.perf_counter() - t0) * 1e3
            return out

    def _encode(self, img: np.ndarray) -> tuple[bytes, np.ndarray]:
        """(JPEG bytes, the image they decode to); AnonymisationError if OpenCV cannot encode it."""
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else None
        if decoded is None:
            raise AnonymisationError("JPEG encoding failed")
        return buf.tobytes(), decoded

    def snapshot(self, image_bgr: np.ndarray) -> dict:
        """The `snapshot` command's result: the anonymised JPEG (base64, sealed for the payload guard) and what
        was done to it. Raises AnonymisationError."""
        a = self.anonymise(image_bgr)
        data = a.jpeg
        encoded = guard.seal(base64.b64encode(data).decode("ascii"))
        return {"format": "jpeg", "encoding": "base64", "width": int(a.image.shape[1]),
                "height": int(a.image.shape[0]), "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                "faces_blurred": a.faces, "heads_blurred": a.heads, "people_masked": a.people_masked,
                "extra_passes": a.extra_passes, "anonymise_ms": round(a.ms, 1), "image": encoded}
