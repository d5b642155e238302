"""Polygon zone occupancy and dwell per confirmed track, with entry inertia and exit grace on the stream clock."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.analytics.base import make_event, points_in_polygon, r3, tracked_points
from edge.core.detections import BOX_ANCHORS, Detections
from edge.core.events import Event


@dataclass
class Visit:
    """One track's stay in a zone. While `member` is False it is only a candidate (inside for too short)."""

    track_id: int
    member: bool = False
    streak: int = 0  # consecutive frames inside while a candidate
    streak_t: float = 0.0  # first frame of that streak (becomes enter_t)
    streak_t_wall: float | None = None
    enter_t: float = 0.0
    enter_t_wall: float | None = None
    out_t: float | None = None  # first frame not inside while a member (becomes exit_t)
    out_t_wall: float | None = None
    last_point: np.ndarray | None = None  # last anchor point seen inside


class PolygonZone:
    """Which confirmed tracks are inside a polygon, judged by one anchor point per track.

    A track enters after its anchor has been inside for `enter_frames` consecutive frames and `enter_s` seconds;
    the visit starts at the first of those frames. It leaves once it has been outside or undetected for `exit_s`
    seconds (exit grace); the visit ends at the first such frame, and a later return starts a new visit (the dwell
    timer resets). Unconfirmed detections (tracker_id -1) are ignored.

    `update` returns `zone_entered` (track_id, enter_t, enter_t_wall) and `zone_left` (track_id, enter_t,
    enter_t_wall, exit_t, exit_t_wall, dwell_s) events when `events` is true; `step` returns the raw transitions
    for objects built on a zone (queue, loitering, kiosk help)."""

    def __init__(self, name: str, polygon, *, anchor: str = "bottom_center", enter_frames: int = 3,
                 enter_s: float = 0.0, exit_s: float = 1.0, events: bool = True, source: str = "default"):
        if anchor not in BOX_ANCHORS:
            raise ValueError(f"zone {name!r}: unknown anchor {anchor!r}; choose one of {BOX_ANCHORS}")
        self.name, self.anchor, self.source, self.events = name, anchor, source, events
        self.polygon = np.asarray(polygon, np.float64).reshape(-1, 2)
        if len(self.polygon) < 3:
            raise ValueError(f"zone {name!r}: a polygon needs at least 3 points")
        self.enter_frames, self.enter_s, self.exit_s = max(1, int(enter_frames)), float(enter_s), float(exit_s)
        self._visits: dict[int, Visit] = {}
        self._t: float | None = None

    @classmethod
    def from_config(cls, z, source: str = "default", events: bool | None = None) -> PolygonZone:
        """From an edge.analytics.config.ZoneConfig."""
        return cls(z.name, z.polygon, anchor=z.anchor, enter_frames=z.enter_frames, enter_s=z.enter_s,
                   exit_s=z.exit_s, events=z.events if events is None else events, source=source)

    # read-only state
    @property
    def members(self) -> dict[int, Visit]:
        """Track id -> visit, for the tracks inside (including those within the exit grace)."""
        return {tid: v for tid, v in self._visits.items() if v.member}

    @property
    def inside(self) -> frozenset[int]:
        return frozenset(self.members)

    @property
    def count(self) -> int:
        return sum(v.member for v in self._visits.values())

    def dwell_of(self, track_id: int, t: float | None = None) -> float | None:
        """Seconds since the track's visit started (at `t`, default the last update), or None when not inside."""
        v = self._visits.get(track_id)
        if v is None or not v.member:
            return None
        return (self._t if t is None else t) - v.enter_t

    def contains(self, points) -> np.ndarray:
        return points_in_polygon(points, self.polygon)

    def step(self, detections: Detections, t: float, t_wall: float | None = None) -> tuple[list[Visit], list[Visit]]:
        """Advance to one frame; returns (visits that started, visits that ended) in track id order."""
        self._t = t
        pts = tracked_points(detections, self.anchor)
        inside = dict(zip(pts, self.contains(np.array(list(pts.values())).reshape(-1, 2)).tolist()))
        entered, left = [], []
        for tid in sorted(set(inside) | set(self._visits)):
            now_in = inside.get(tid, False)
            v = self._visits.get(tid)
            if v is None:
                if not now_in:
                    continue
                v = self._visits[tid] = Visit(tid)
            if now_in:
                v.last_point = np.asarray(pts[tid], np.float64)
                if v.member:
                    v.out_t = v.out_t_wall = None
                    continue
                if v.streak == 0:
                    v.streak_t, v.streak_t_wall = t, t_wall
                v.streak += 1
                if v.streak >= self.enter_frames and t - v.streak_t >= self.enter_s:
                    v.member, v.enter_t, v.enter_t_wall = True, v.streak_t, v.streak_t_wall
                    entered.append(v)
                continue
            if not v.member:  # a candidate that stepped out or vanished starts over
                del self._visits[tid]
                continue
            if v.out_t is None:
                v.out_t, v.out_t_wall = t, t_wall
            if t - v.out_t >= self.exit_s:
                del self._visits[tid]
                left.append(v)
        return entered, left

    def update(self, detections: Detections, t: float, t_wall: float | None = None) -> list[Event]:
        """Advance to one frame; returns zone_entered / zone_left events (none when `events` is false)."""
        entered, left = self.step(detections, t, t_wall)
        if not self.events:
            return []
        out = [make_event("zone_entered", {"zone": self.name, "track_id": v.track_id, "enter_t": r3(v.enter_t),
                                           "enter_t_wall": v.enter_t_wall}, t, t_wall, self.source)
               for v in entered]
        out += [make_event("zone_left", {"zone": self.name, "track_id": v.track_id, "enter_t": r3(v.enter_t),
                                         "enter_t_wall": v.enter_t_wall, "exit_t": r3(v.out_t),
                                         "exit_t_wall": v.out_t_wall, "dwell_s": r3(v.out_t - v.enter_t)},
                                         t, t_wall, self.source)
                for v in left]
        return out
