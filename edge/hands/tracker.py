"""Hand ROIs per frame: the previous frame's landmarks (tracking), else the pose wrists, else the palm detector.

MediaPipe Hands runs the palm detector until it has hands and then tracks them from their landmarks; MediaPipe
Holistic takes the first ROI from the pose instead. Here a hand is tracked from its landmarks while its flag holds;
a side without a track (or whose track ROI is far from where the pose sees that hand now: a fast swipe) gets its ROI
from the pose (wrist, index, pinky) when the pose sees it (raised, with `raised_only`); the palm detector runs only
while no hand is tracked (`palm_detection = "fallback"`), at most every `palm_every_n`-th step. With a pose, a palm
the detector finds is kept only if it can be that person's hand (see `HandTracker._palm_key`): a hand raised by
someone behind the shopper is no gesture.
"""
from __future__ import annotations

import logging

import numpy as np

from edge.hands.config import HandsConfig
from edge.hands.detector import PalmDetector
from edge.hands.landmarks import HandLandmarkModel
from edge.hands.roi import POSE_HAND, overlap, roi_from_landmarks, roi_from_pose
from edge.hands.types import Hand
from edge.pose.types import LM, Roi

log = logging.getLogger(__name__)
HIPS = (23, 24)
SHOULDER = {"left": LM["left_shoulder"], "right": LM["right_shoulder"]}
STALE = 0.5  # a track whose ROI centre is this far (x the smaller ROI) from the pose's ROI of that hand is stale
REACH = 2.0  # a hand's ROI centre is at most this many shoulder widths from its shoulder (arm's length ~1.9)
SAME_HAND = 0.5  # a palm this near (x the smaller ROI) the last ROI of a lost palm<i> hand is that hand again
PALM_MEMORY = 4  # palm<i> hands whose last ROI is remembered


def pose_hand_rois(pose_landmarks: np.ndarray, cfg: HandsConfig) -> dict[str, Roi]:
    """{side: ROI} for the pose's visible (and, with raised_only, raised) hands; pose_landmarks (33, 5) px."""
    out = {}
    hip_y = float(np.mean(pose_landmarks[list(HIPS), 1]))
    for side, idx in POSE_HAND.items():
        if not np.isfinite(pose_landmarks[list(idx)][:, [0, 1, 3]]).all():  # a broken pose output: no ROI
            continue
        if float(np.min(pose_landmarks[list(idx), 3])) < cfg.pose_visibility:
            continue
        if cfg.raised_only and pose_landmarks[idx[0], 1] >= hip_y:
            continue
        roi = roi_from_pose(pose_landmarks, side)
        if roi.size > 4:
            out[side] = roi
    return out


class HandTracker:
    """The hands of one person in one video stream. Not thread-safe."""

    def __init__(self, cfg: HandsConfig, landmarks: HandLandmarkModel, palms: PalmDetector | None = None):
        self.cfg, self.landmarks, self.palms = cfg, landmarks, palms
        self.tracks: dict[str, Roi] = {}  # key -> next ROI (from this frame's landmarks)
        self._since_palm = cfg.palm_every_n  # the first step may run the detector at once
        self._palm_rois: dict[str, Roi] = {}  # palm<i> key -> that hand's last tracking ROI, most recent last
        self._next_palm = 0  # palm<i> keys are never handed to another hand (the gestures follow hands by key)

    def reset(self) -> None:
        self.tracks.clear()
        self._palm_rois.clear()
        self._since_palm = self.cfg.palm_every_n

    def step(self, image_rgb: np.ndarray, pose_landmarks: np.ndarray | None = None) -> tuple[list[Hand], bool]:
        """Hands in one RGB frame; pose_landmarks: the person's (33, 5) px landmarks or None. Returns (hands,
        palm detector ran)."""
        cfg = self.cfg
        if image_rgb.size == 0:  # an empty frame: nothing to see, the tracks carry over to the next one
            return [], False
        tracks = dict(self.tracks)
        pose_rois = pose_hand_rois(pose_landmarks, cfg) if pose_landmarks is not None else {}
        for side, roi in pose_rois.items():  # a fast hand left its last ROI: the pose (this frame) knows better,
            # unless the pose's ROI lies on another tracked hand: the pose swapped the sides, the tracks did not
            if side in tracks and overlap(tracks[side], roi) > STALE and not any(
                    overlap(r, roi) <= STALE for k, r in self.tracks.items() if k != side):
                del tracks[side]
        cands: list[tuple[str, Roi, str]] = [(k, r, "track") for k, r in tracks.items()]
        for side, roi in pose_rois.items():
            if side not in tracks and not any(overlap(roi, r) < 0.5 for _, r, _ in cands):
                cands.append((side, roi, "pose"))
        palm_ran = False
        self._since_palm += 1
        want = cfg.palm_detection == "always" or (cfg.palm_detection == "fallback" and not self.tracks
                                                   and self._since_palm >= cfg.palm_every_n)
        if want and self.palms is not None and len(cands) < cfg.max_hands:
            palm_ran, self._since_palm = True, 0
            for roi in self.palms.rois(image_rgb, cfg.max_hands):
                if not any(overlap(roi, r) < 0.5 for _, r, _ in cands):
                    key = self._palm_key(roi, pose_landmarks, {k for k, _, _ in cands})
                    if key is None:
                        log.debug("palm at (%.0f, %.0f) is not the person's hand: ignored", roi.cx, roi.cy)
                        continue
                    cands.append((key, roi, "palm"))
        hands: list[Hand] = []
        for key, roi, source in cands[:cfg.max_hands + 2]:
            h = self.landmarks(image_rgb, roi)
            if not h.score >= cfg.presence_threshold or not np.isfinite(h.landmarks).all():  # NaN: a broken model
                continue
            h.key, h.source, h.roi_next = key, source, roi_from_landmarks(h.landmarks)
            hands.append(h)
        hands = self._dedupe(hands)[:cfg.max_hands]
        self.tracks = {h.key: h.roi_next for h in hands}
        for h in hands:
            if h.key not in POSE_HAND:
                self._palm_rois.pop(h.key, None)
                self._palm_rois[h.key] = h.roi_next
        for k in list(self._palm_rois)[:-PALM_MEMORY]:
            del self._palm_rois[k]
        return hands, palm_ran

    def _palm_key(self, roi: Roi, pose_landmarks: np.ndarray | None, taken: set[str]) -> str | None:
        """Whose hand a palm detection is. Without a pose: a palm<i> key. With one: the side of the nearest
        free pose wrist the pose sees (visibility >= pose_visibility) within the ROI size; else palm<i> if a free
        side whose wrist the pose does not see can reach it (within REACH shoulder widths of that shoulder, or
        the shoulders are not seen); else None: not this person's hand (someone behind the shopper). palm<i>: the
        key of a lost palm hand whose last ROI it is at (SAME_HAND), else a new one: a key never passes to another
        hand (a hand found as another was lost would take its key, and the gestures would see that hand jump)."""
        if pose_landmarks is not None:
            free = [s for s in POSE_HAND if s not in taken]
            vis = self.cfg.pose_visibility
            at = np.array([roi.cx, roi.cy])
            near = {s: float(np.hypot(*(pose_landmarks[POSE_HAND[s][0], :2] - at))) for s in free
                    if pose_landmarks[POSE_HAND[s][0], 3] >= vis}
            near = {s: d for s, d in near.items() if np.isfinite(d)}  # a broken (NaN) wrist is not seen
            if near and min(near.values()) < roi.size:
                return min(near, key=near.get)
            sh = pose_landmarks[[SHOULDER["left"], SHOULDER["right"]]]
            width = float(np.hypot(*(sh[0, :2] - sh[1, :2])))
            if float(sh[:, 3].min()) >= vis and np.isfinite(width) and not any(
                    s not in near and np.hypot(*(pose_landmarks[SHOULDER[s], :2] - at)) <= REACH * width
                    for s in free):
                return None
        lost = [(overlap(roi, r), k) for k, r in self._palm_rois.items() if k not in taken]
        if lost and min(lost)[0] < SAME_HAND:
            return min(lost)[1]
        self._next_palm += 1
        return f"palm{self._next_palm - 1}"

    @staticmethod
    def _dedupe(hands: list[Hand]) -> list[Hand]:
        """Two ROIs that converged on the same hand: keep the more confident one."""
        out: list[Hand] = []
        for h in sorted(hands, key=lambda h: -h.score):
            if any(overlap(h.roi_next, o.roi_next) < 0.3 for o in out):
                continue
            out.append(h)
        return out
