"""Multi-person detect-then-track: up to N tracks with stable ids, ROIs carried over from the previous frame.

Per frame: the detector runs only when fewer than `max_people` tracks exist (at once when there are none,
otherwise every `redetect_interval` frames), and at `max_people` every `verify_interval` frames when set (a track
no detection confirms gives way to an untracked detected person; one whose size ran away from its detection's is
re-anchored on it); a detection whose mid-hip centre lies within `match_distance` body scales of a track's is that
track and is ignored; the landmark model runs on every ROI; a track whose pose flag falls below `presence_threshold`
is dropped; the next ROI of a kept track comes from its smoothed auxiliary landmarks (MediaPipe's tracking mode).
A frame more than `max_gap_s` (or 3 frame intervals of a slower stream) of stream time after the previous one, or
before it, ends every track first.
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


def same_person(a: np.ndarray, b: np.ndarray, threshold: float) -> bool:
    """a, b: (2, 2) [centre, scale point] px. True when the centres are closer than `threshold` x the larger
    body scale."""
    return norm_distance(a, b) < threshold


def _scale(p: np.ndarray) -> float:
    """Body scale of p = [centre, scale point] px: their distance (at least 1e-6)."""
    return max(float(np.hypot(*(p[1] - p[0]))), 1e-6)


def norm_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Distance of the centres of a, b over the larger body scale (same_person compares it with a threshold)."""
    return float(np.hypot(*(a[0] - b[0]))) / max(_scale(a), _scale(b))


def size_ratio(a: np.ndarray, b: np.ndarray) -> float:
    """The larger body scale of a, b over the smaller (>= 1)."""
    sa, sb = _scale(a), _scale(b)
    return max(sa, sb) / min(sa, sb)


# verify_interval: a detection within CONFIRM_DISTANCE x body scale of a track's centre confirms it (looser than
# match_distance: an INT8 detector's keypoints sit up to ~0.4 x scale off the landmark model's on the same person,
# and dropping the track there would give that person a new id); a confirmed track within match_distance of its
# detection but more than RESIZE_RATIO x off its size is re-anchored on it, keeping its id. Never on position alone:
# when the detector misses a person, a neighbour half a body scale away is the nearest detection.
CONFIRM_DISTANCE, RESIZE_RATIO = 1.0, 1.5


@dataclass
class Track:
    id: int
    roi: Roi  # ROI for the next landmark run
    points: np.ndarray  # (2, 2) smoothed aux points [mid-hip centre, scale point] px
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
        self._nonfinite_warned = False
        self._last_t: float | None = None  # stream time of the previous step
        self._interval: float | None = None  # stream time between the last two steps

    def reset(self) -> None:
        self.tracks.clear()
        self._since_detect = 0

    def _finite(self, out: LandmarkOutput) -> bool:
        """Whether a landmark output is all numbers; a NaN/inf one (a damaged or overflowing model) makes or keeps
        no track, and is warned about once per stream."""
        if (np.isfinite(out.flag) and np.isfinite(out.landmarks).all() and np.isfinite(out.aux).all()
                and np.isfinite(out.world).all()):
            return True
        if not self._nonfinite_warned:
            self._nonfinite_warned = True
            log.warning("the pose landmark model gave non-finite outputs (NaN/inf): that person is not tracked (a "
                        "damaged or overflowing model file: run `edge doctor`, or choose another backend/precision)")
        return False

    def _want_detection(self) -> bool:
        if len(self.tracks) >= self.cfg.max_people:
            return bool(self.cfg.verify_interval) and self._since_detect + 1 >= self.cfg.verify_interval
        return not self.tracks or self._since_detect + 1 >= self.cfg.redetect_interval

    def _verify(self, dets: list) -> set[int]:
        """At max_people: each track takes its nearest detection within CONFIRM_DISTANCE (nearest pairs first, a
        detection confirms one track); a confirmed track at its detection but far off its size is re-anchored on it
        (same id, fresh smoothing); unconfirmed tracks give way, in track order, to as many detected people as
        would start a track (_untracked). Returns the indices of the confirming detections."""
        pts = [d.keypoints[:2] for d in dets]
        pairs = sorted((norm_distance(p, tr.points), i, j) for i, tr in enumerate(self.tracks)
                       for j, p in enumerate(pts))
        of_track: dict[int, int] = {}
        for d, i, j in pairs:
            if d < CONFIRM_DISTANCE and i not in of_track and j not in of_track.values():
                of_track[i] = j
        for i, j in of_track.items():
            tr = self.tracks[i]
            ratio = size_ratio(pts[j], tr.points)
            if ratio > RESIZE_RATIO and same_person(pts[j], tr.points, self.cfg.match_distance):
                log.debug("track %d re-anchored on its detection (%.2f of scale away, size %.2fx off)", tr.id,
                          norm_distance(pts[j], tr.points), ratio)
                tr.roi, tr.points = roi_from_detection(dets[j].keypoints), pts[j]
                tr.smoother = PoseSmoother(self.cfg.smoothing)
        confirming = set(of_track.values())
        # a detection within CONFIRM_DISTANCE of an unconfirmed track confirms another one (skipped), so with
        # match_distance <= CONFIRM_DISTANCE counting with the unconfirmed tracks still there is the same as after
        # dropping them (with a larger match_distance the count can only be lower: fewer drops)
        newcomers = len(self._untracked(dets, confirming))
        ghosts = [tr for i, tr in enumerate(self.tracks) if i not in of_track]
        for tr in ghosts[:newcomers]:
            log.debug("track %d dropped: no detection confirms it and an untracked person is detected", tr.id)
            self.tracks.remove(tr)
        return confirming

    def _untracked(self, dets: list, skip: set[int]) -> list[Roi]:
        """ROIs of the detected people nobody tracks, best first: not in `skip`, a usable ROI, not within
        match_distance of a track or of a better detection."""
        taken = [t.points for t in self.tracks]
        out: list[Roi] = []
        for j, det in enumerate(dets):
            pts = det.keypoints[:2]
            roi = roi_from_detection(det.keypoints)
            if j in skip or roi.size <= 1 or any(same_person(pts, q, self.cfg.match_distance) for q in taken):
                continue
            taken.append(pts)
            out.append(roi)
        return out

    def _new_rois(self, image_rgb: np.ndarray, bgr: bool) -> list[Roi]:
        """ROIs of detected people not already tracked, best first, up to the free track slots (at max_people:
        after verification; a detection that confirmed a track never starts another)."""
        dets = list(self.detector(image_rgb, bgr=bgr))
        skip = self._verify(dets) if len(self.tracks) >= self.cfg.max_people else set()
        free = self.cfg.max_people - len(self.tracks)
        return self._untracked(dets, skip)[:free] if free > 0 else []

    def step(self, image_rgb: np.ndarray, t: float, *, bgr: bool = False) -> tuple[list[PersonPose], bool]:
        """Process one RGB (bgr=True: BGR) frame captured at time t (s). Returns (people, detector_ran)."""
        last, self._last_t = self._last_t, t
        # a slow stream (a pose run every few seconds) is no gap: the limit grows to 3 of its frame intervals
        limit = max(self.cfg.max_gap_s, 3 * self._interval) if self._interval is not None else self.cfg.max_gap_s
        gap = None if last is None else t - last
        if self.tracks and gap is not None and not 0 <= gap <= limit:
            log.info("stream time jumped from %.3f s to %.3f s (max_gap_s %g): tracks %s end, people are detected "
                     "afresh", last, t, self.cfg.max_gap_s, [tr.id for tr in self.tracks])
            self.reset()
        if gap is not None:  # learnt across a reset too: else a stream slower than max_gap_s reset at every frame
            self._interval = gap if gap > 0 else None
        ran = self._want_detection()
        new_rois = self._new_rois(image_rgb, bgr) if ran else []
        self._since_detect = 0 if ran else self._since_detect + 1
        rois = [tr.roi for tr in self.tracks] + new_rois
        outs = self.landmarks(image_rgb, rois, bgr=bgr)
        n_old = len(self.tracks)
        kept: list[tuple[Track, LandmarkOutput]] = []
        for i, out in enumerate(outs):
            if not self._finite(out) or not out.flag >= self.cfg.presence_threshold:
                if i < n_old:
                    log.debug("track %d lost (pose flag %.2f)", self.tracks[i].id, out.flag)
                continue
            if i < n_old:
                tr = self.tracks[i]
            else:
                tr = Track(self._next_id, out.roi, out.aux, PoseSmoother(self.cfg.smoothing), t, t)
                self._next_id += 1
                log.debug("track %d started", tr.id)
            kept.append((tr, out))
        kept = self._dedupe(kept)
        people: list[PersonPose] = []
        self.tracks = []
        for tr, out in kept:
            lm, aux, world = tr.smoother(out.landmarks, out.aux, out.world, t)
            tr.roi, tr.points = roi_from_aux(aux), aux
            tr.last_seen, tr.frames = t, tr.frames + 1
            self.tracks.append(tr)
            people.append(PersonPose(tr.id, lm, world, out.flag, out.roi, out.mask))
        return people, ran

    def next_rois(self) -> list[Roi]:
        """The ROIs the next frame's landmark runs will use, one per track, in track order."""
        return [tr.roi for tr in self.tracks]

    def replay_rois(self, rois: list[Roi]) -> None:
        """Make the next frame use these ROIs (another run's `next_rois`), track by track; tracks beyond the list
        keep their own. For analysis: `edge bench pose` replays the FP32 pipeline's ROIs into an INT8 one to
        separate the model's own difference from what the tracking loop adds to it."""
        for tr, roi in zip(self.tracks, rois):
            tr.roi = roi

    def _dedupe(self, kept: list[tuple[Track, LandmarkOutput]]) -> list[tuple[Track, LandmarkOutput]]:
        """Two tracks that converged on the same person: keep the one that was already there, i.e. the existing
        track that moved least since the previous frame (a track whose person left slides over onto a neighbour
        and must not take their id), then the older one. Returns the kept tracks in id order."""
        def moved(p: tuple[Track, LandmarkOutput]) -> tuple[bool, float, int]:
            tr, o = p
            return tr.frames == 0, norm_distance(tr.points, o.aux) if tr.frames else 0.0, tr.id

        out: list[tuple[Track, LandmarkOutput]] = []
        for tr, o in sorted(kept, key=moved):
            if any(same_person(o.aux, o2.aux, self.cfg.match_distance) for _, o2 in out):
                log.debug("track %d merged into a track already on that person", tr.id)
                continue
            out.append((tr, o))
        return sorted(out, key=lambda p: p[0].id)

