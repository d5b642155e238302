"""Polygon zones over tracked people (supervision-style): an anchor point per person, membership with inertia."""
from __future__ import annotations

import cv2
import numpy as np

from edge.pose.types import LM, PersonPose

ANCHORS = ("bottom_center", "hips", "center")


def anchor_point(person: PersonPose, anchor: str = "bottom_center", visibility: float = 0.5) -> np.ndarray | None:
    """The person's reference point in image px: bottom centre of the visible landmarks' box (feet), mid-hip,
    or box centre. None when no landmark is visible."""
    lm = person.landmarks
    if anchor == "hips":
        return (lm[LM["left_hip"], :2] + lm[LM["right_hip"], :2]) / 2
    vis = lm[:, 3] > visibility
    if not vis.any():
        return None
    xy = lm[vis, :2]
    (x0, y0), (x1, y1) = xy.min(0), xy.max(0)
    if anchor == "bottom_center":
        return np.array([(x0 + x1) / 2, y1])
    if anchor == "center":
        return np.array([(x0 + x1) / 2, (y0 + y1) / 2])
    raise ValueError(f"unknown anchor {anchor!r}; choose one of {ANCHORS}")


class PolygonZone:
    """Tracks which people are inside a polygon. A person enters (or leaves) after `inertia` consecutive frames
    with the anchor inside (or outside); a track that disappears leaves at once."""

    def __init__(self, name: str, polygon, anchor: str = "bottom_center", inertia: int = 3):
        if anchor not in ANCHORS:
            raise ValueError(f"unknown anchor {anchor!r}; choose one of {ANCHORS}")
        self.name, self.anchor, self.inertia = name, anchor, max(1, int(inertia))
        self.polygon = np.asarray(polygon, np.float32).reshape(-1, 2)
        if len(self.polygon) < 3:
            raise ValueError(f"zone {name!r}: a polygon needs at least 3 points")
        self.inside: set[int] = set()
        self._streak: dict[int, int] = {}  # track id -> consecutive frames disagreeing with its current state

    @classmethod
    def from_config(cls, z) -> PolygonZone:
        return cls(z.name, z.polygon, z.anchor, z.inertia)

    def contains(self, point) -> bool:
        return cv2.pointPolygonTest(self.polygon, (float(point[0]), float(point[1])), False) >= 0

    def update(self, people: list[PersonPose]) -> tuple[list[int], list[int]]:
        """Feed one frame's people; returns (entered, left) track ids."""
        entered, left = [], []
        seen = set()
        for p in people:
            seen.add(p.track_id)
            pt = anchor_point(p, self.anchor)
            now_in = pt is not None and self.contains(pt)
            was_in = p.track_id in self.inside
            if now_in == was_in:
                self._streak[p.track_id] = 0
                continue
            n = self._streak.get(p.track_id, 0) + 1
            if n >= self.inertia:
                self._streak[p.track_id] = 0
                if now_in:
                    self.inside.add(p.track_id)
                    entered.append(p.track_id)
                else:
                    self.inside.discard(p.track_id)
                    left.append(p.track_id)
            else:
                self._streak[p.track_id] = n
        for tid in sorted(self.inside - seen):  # track lost
            self.inside.discard(tid)
            left.append(tid)
        for tid in list(self._streak):
            if tid not in seen:
                del self._streak[tid]
        return entered, left
