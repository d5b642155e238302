"""Directed line counter: in/out crossings of a segment by confirmed tracks."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.analytics.base import make_event, tracked_points
from edge.core.detections import BOX_ANCHORS, Detections
from edge.core.events import Event


@dataclass
class _Side:
    side: int  # -1 / +1: the side the track was last confirmed on
    ref: np.ndarray  # last point firmly on that side
    t_seen: float
    pending: int = 0  # consecutive frames firmly on the other side
    pending_point: np.ndarray | None = None


class LineCounter:
    """Counts tracks crossing the segment start→end.

    A point's side is the sign of its distance to the line; a side only counts when the point is at least
    `min_distance` px from the line, so jitter around the line never changes it. A crossing is counted when a track
    stays on the other side for `min_frames` consecutive frames and the path from its last point on the old side to
    its first point on the new one crosses the line between start and end (a detour around the segment's end is not
    a crossing). Direction "in" is from the left to the right of start→end as seen on screen (image y points down),
    "out" the reverse; swap start and end to flip. A track first seen on one side has not crossed, nor has one first
    seen after stream time went back.

    `update` returns `line_crossed` events (line, track_id, direction, point [x, y], in_count, out_count)."""

    def __init__(self, name: str, start, end, *, anchor: str = "bottom_center", min_distance: float = 10.0,
                 min_frames: int = 2, forget_s: float = 10.0, source: str = "default"):
        if anchor not in BOX_ANCHORS:
            raise ValueError(f"line {name!r}: unknown anchor {anchor!r}; choose one of {BOX_ANCHORS}")
        self.name, self.anchor, self.source = name, anchor, source
        self.start, self.end = np.asarray(start, np.float64), np.asarray(end, np.float64)
        self._dir = self.end - self.start
        self._len = float(np.hypot(*self._dir))
        if self._len < 1e-6:
            raise ValueError(f"line {name!r}: start and end are the same point")
        self.min_distance, self.min_frames, self.forget_s = float(min_distance), max(1, int(min_frames)), forget_s
        self.in_count = self.out_count = 0
        self._tracks: dict[int, _Side] = {}
        self._t: float | None = None

    @classmethod
    def from_config(cls, c, source: str = "default") -> LineCounter:
        """From an edge.analytics.config.LineConfig."""
        return cls(c.name, c.start, c.end, anchor=c.anchor, min_distance=c.min_distance, min_frames=c.min_frames,
                   source=source)

    @property
    def counts(self) -> dict[str, int]:
        return {"in": self.in_count, "out": self.out_count}

    def signed_distance(self, p) -> float:
        """Positive on the right of start→end as seen on screen, in px."""
        d = np.asarray(p, np.float64) - self.start
        return float(self._dir[0] * d[1] - self._dir[1] * d[0]) / self._len

    def _crossing_point(self, p0: np.ndarray, p1: np.ndarray) -> tuple[np.ndarray, float]:
        """Where p0→p1 meets the line, and its position along start→end (0..1 inside the segment)."""
        d0, d1 = self.signed_distance(p0), self.signed_distance(p1)
        x = p0 + (p1 - p0) * (d0 / (d0 - d1))
        u = float(np.dot(x - self.start, self._dir)) / self._len ** 2
        return x, u

    def update(self, detections: Detections, t: float, t_wall: float | None = None) -> list[Event]:
        """Advance to one frame; returns the line_crossed events. When stream time goes back (another recording, a
        clock reset) every track's side is forgotten: nothing on the old clock carries over to an id on the new one."""
        if self._t is not None and t < self._t:
            self._tracks = {}
        self._t = t
        out = []
        for tid, p in tracked_points(detections, self.anchor).items():
            if not np.isfinite(p).all():
                continue
            p = np.asarray(p, np.float64)
            d = self.signed_distance(p)
            s = 1 if d >= self.min_distance else -1 if d <= -self.min_distance else 0
            st = self._tracks.get(tid)
            if st is None:
                if s:
                    self._tracks[tid] = _Side(s, p, t)
                continue
            st.t_seen = t
            if s == 0:  # in the band around the line: undecided
                st.pending, st.pending_point = 0, None
            elif s == st.side:
                st.ref, st.pending, st.pending_point = p, 0, None
            else:
                if st.pending == 0:
                    st.pending_point = p
                st.pending += 1
                if st.pending >= self.min_frames:
                    x, u = self._crossing_point(st.ref, st.pending_point)
                    if 0.0 <= u <= 1.0:
                        direction = "in" if s > 0 else "out"
                        if direction == "in":
                            self.in_count += 1
                        else:
                            self.out_count += 1
                        out.append(make_event("line_crossed", {
                            "line": self.name, "track_id": tid, "direction": direction,
                            "point": [round(float(x[0]), 1), round(float(x[1]), 1)],
                            "in_count": self.in_count, "out_count": self.out_count}, t, t_wall, self.source))
                    st.side, st.ref, st.pending, st.pending_point = s, p, 0, None
        for tid in [k for k, st in self._tracks.items() if t - st.t_seen > self.forget_s]:
            del self._tracks[tid]
        return out
