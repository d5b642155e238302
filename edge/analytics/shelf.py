"""Shelf interaction: a tracked person's wrist inside a shelf polygon for N consecutive frames."""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from edge.analytics.base import make_event, points_in_polygon, r3
from edge.core.detections import Detections
from edge.core.events import Event

log = logging.getLogger(__name__)


@dataclass
class _Reach:
    inside: int = 0  # consecutive frames with a hand inside
    outside: int = 0  # consecutive frames without
    start_t: float = 0.0
    active: bool = False


class ShelfInteraction:
    """Emits `product_interaction` (shelf, track_id, hand, start_t) when one of a confirmed track's `keypoints`
    (score >= min_score and > 0: a zero score is a keypoint not found, at (0, 0)) has been inside the shelf polygon
    for `min_frames` consecutive frames. The reach ends after `release_frames` consecutive frames with no hand inside
    (or the track undetected); a new reach can then start. Needs detections with keypoints and keypoint names."""

    def __init__(self, name: str, polygon, *, keypoints=("left_wrist", "right_wrist"), min_frames: int = 3,
                 release_frames: int = 3, min_score: float = 0.5, source: str = "default"):
        self.name, self.source = name, source
        self.polygon = np.asarray(polygon, np.float64).reshape(-1, 2)
        self.keypoints = tuple(keypoints)
        self.min_frames, self.release_frames, self.min_score = max(1, min_frames), max(1, release_frames), min_score
        self.interactions = 0
        self._reach: dict[int, _Reach] = {}
        self._warned = False

    @classmethod
    def from_config(cls, c, source: str = "default") -> ShelfInteraction:
        """From an edge.analytics.config.ShelfConfig."""
        return cls(c.name, c.polygon, keypoints=c.keypoints, min_frames=c.min_frames,
                   release_frames=c.release_frames, min_score=c.min_score, source=source)

    @property
    def active(self) -> frozenset[int]:
        """Tracks reaching into the shelf now."""
        return frozenset(tid for tid, r in self._reach.items() if r.active)

    def _hands(self, detections: Detections) -> dict[int, str | None]:
        """Track id -> name of the first keypoint inside the polygon (None: no hand inside)."""
        ids = detections.require_tracked()
        rows = np.flatnonzero(ids >= 0)
        if len(rows) == 0:
            return {}
        names = [k for k in self.keypoints if detections.keypoint_names and k in detections.keypoint_names]
        if detections.keypoints is None or not names:
            if not self._warned:
                log.warning("shelf %r: detections carry no %s keypoints; no interactions can be seen", self.name,
                            "/".join(self.keypoints))
                self._warned = True
            return {}
        sub = detections[rows]
        score = max(self.min_score, float(np.finfo(np.float32).tiny))  # score 0 is no keypoint, even at min_score 0
        inside = np.stack([points_in_polygon(sub.anchors(k, score), self.polygon) for k in names], 1)
        out: dict[int, str | None] = {}
        for tid, row in zip(ids[rows].tolist(), inside):
            hit = next((names[i] for i in np.flatnonzero(row)), None)
            if out.get(tid) is None:
                out[tid] = hit
        return out

    def update(self, detections: Detections, t: float, t_wall: float | None = None) -> list[Event]:
        """Advance to one frame; returns product_interaction events."""
        hands = self._hands(detections)
        out = []
        for tid in sorted(set(hands) | set(self._reach)):
            hand = hands.get(tid)
            r = self._reach.get(tid)
            if hand is None:
                if r is None:
                    continue
                r.inside, r.outside = 0, r.outside + 1
                if not r.active or r.outside >= self.release_frames:
                    del self._reach[tid]
                continue
            if r is None:
                r = self._reach[tid] = _Reach(start_t=t)
            r.outside = 0
            r.inside += 1
            if not r.active and r.inside >= self.min_frames:
                r.active = True
                self.interactions += 1
                out.append(make_event("product_interaction", {
                    "shelf": self.name, "track_id": tid, "hand": hand, "start_t": r3(r.start_t)},
                    t, t_wall, self.source))
        return out
