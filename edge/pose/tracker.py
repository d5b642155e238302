"""Multi-person detect-then-track: up to N tracks with stable ids, ROIs carried over from the previous frame.

Per frame: the detector runs only when fewer than `max_people` tracks exist (at once when there are none,
otherwise every `redetect_interval` frames); detections whose ROI overlaps a track are that track and are ignored;
the landmark model runs on every ROI; a track whose pose flag falls below `presence_threshold` is dropped; the
next ROI of a kept track comes from its smoothed auxiliary landmarks (MediaPipe's tracking mode).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from edge.pose.config import PoseConfig
from edge.pose.detector import PersonDetector
from edge.pose.landmarks import LandmarkModel, LandmarkOutput
from edge.pose.roi import roi_from_aux, roi_from_detection
from edge.pose.smoothing import PoseSmoother
from edge.pose.types import PersonPose, Roi

log = logging.getLogger(__name__)


def roi_iou(a: Roi, b: Roi) -> float:
    """IoU of the axis-aligned squares of two ROIs (rotation ignored: cheap and good enough to match people)."""
    ha, hb = a.size / 2, b.size / 2
    ix = max(0.0, min(a.cx + ha, b.cx + hb) - max(a.cx - ha, b.cx - hb))
    iy = max(0.0, min(a.cy + ha, b.cy + hb) - max(a.cy - ha, b.cy - hb))
    inter = ix * iy
    union = a.size ** 2 + b.size ** 2 - inter
    return inter / union if union > 0 else 0.0


@dataclass
class Track:
    id: int
    roi: Roi  # ROI for the next landmark run
    smoother: PoseSmoother
    first_seen: float
    last_seen: float
    frames: int = 0


class PoseTracker:
    """Holds the tracks of one video stream. Not thread-safe."""

    def __init__(self, cfg: PoseConfig, detector: PersonDetector, landmarks: LandmarkModel):
        self.cfg, self.detector, self.landmarks = cfg, detector, landmarks
        self.tracks: list[Track] = []
        self._next_id = 1
        self._since_detect = 0

    def reset(self) -> None:
        self.tracks.clear()
        self._since_detect = 0

    def _want_detection(self) -> bool:
        if len(self.tracks) >= self.cfg.max_people:
            return False
        return not self.tracks or self._since_detect >= self.cfg.redetect_interval

    def _new_rois(self, image_rgb: np.ndarray) -> list[Roi]:
        """ROIs of detected people not already tracked, best first, up to the free track slots."""
        free = self.cfg.max_people - len(self.tracks)
        out: list[Roi] = []
        for det in self.detector(image_rgb):
            roi = roi_from_detection(det.keypoints)
            if roi.size <= 1:
                continue
            if any(roi_iou(roi, r) > self.cfg.track_iou for r in [t.roi for t in self.tracks] + out):
                continue
            out.append(roi)
            if len(out) >= free:
                break
        return out

    def step(self, image_rgb: np.ndarray, t: float) -> tuple[list[PersonPose], bool]:
        """Process one RGB frame captured at time t (s). Returns (people, detector_ran)."""
        ran = self._want_detection()
        new_rois = self._new_rois(image_rgb) if ran else []
        self._since_detect = 0 if ran else self._since_detect + 1
        rois = [tr.roi for tr in self.tracks] + new_rois
        outs = self.landmarks(image_rgb, rois)
        n_old = len(self.tracks)
        kept: list[tuple[Track, LandmarkOutput]] = []
        for i, out in enumerate(outs):
            if out.flag < self.cfg.presence_threshold:
                if i < n_old:
                    log.debug("track %d lost (pose flag %.2f)", self.tracks[i].id, out.flag)
                continue
            if i < n_old:
                tr = self.tracks[i]
            else:
                tr = Track(self._next_id, out.roi, PoseSmoother(self.cfg.smoothing), t, t)
                self._next_id += 1
                log.debug("track %d started", tr.id)
            kept.append((tr, out))
        kept = self._dedupe(kept)
        people: list[PersonPose] = []
        self.tracks = []
        for tr, out in kept:
            lm, aux, world = tr.smoother(out.landmarks, out.aux, out.world, t)
            tr.roi = roi_from_aux(aux)
            tr.last_seen, tr.frames = t, tr.frames + 1
            self.tracks.append(tr)
            people.append(PersonPose(tr.id, lm, world, out.flag, out.roi, out.mask))
        return people, ran

    def _dedupe(self, kept: list[tuple[Track, LandmarkOutput]]) -> list[tuple[Track, LandmarkOutput]]:
        """Two tracks that converged on the same person: keep the older one."""
        kept = sorted(kept, key=lambda p: p[0].id)
        out: list[tuple[Track, LandmarkOutput]] = []
        for tr, o in kept:
            nxt = roi_from_aux(o.aux)
            if any(roi_iou(nxt, roi_from_aux(o2.aux)) > self.cfg.track_iou for _, o2 in out):
                log.debug("track %d merged into an older track", tr.id)
                continue
            out.append((tr, o))
        return out
