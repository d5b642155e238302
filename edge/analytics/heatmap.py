"""Occupancy heatmap: anchor points of confirmed tracks counted on a coarse grid, reported once per period."""
from __future__ import annotations

import numpy as np

from edge.analytics.base import make_event, r3, tracked_points
from edge.core.detections import BOX_ANCHORS, Detections
from edge.core.events import Event


class Heatmap:
    """Counts, per grid cell, the frames in which a confirmed track's anchor point lay in that cell (unit:
    person-frames; points outside the frame count in the nearest edge cell). A period starts at the first update;
    the first update at or after its end emits `occupancy_heatmap` (heatmap, cols, rows, counts: rows x cols ints,
    total, frames, period_start_t, period_start_t_wall, period_end_t, period_s, unit) and starts the next period
    (periods with no frame are skipped). When stream time goes back (another recording, a clock reset) the period
    ends at the old clock's last frame and a new one starts. Never pixels: only the small integer grid."""

    def __init__(self, frame_size, *, name: str = "floor", grid=(16, 12), period_s: float = 300.0,
                 anchor: str = "bottom_center", source: str = "default"):
        if anchor not in BOX_ANCHORS:
            raise ValueError(f"heatmap {name!r}: unknown anchor {anchor!r}; choose one of {BOX_ANCHORS}")
        self.width, self.height = (float(v) for v in frame_size)
        self.cols, self.rows = (int(v) for v in grid)
        if self.width <= 0 or self.height <= 0 or self.cols < 1 or self.rows < 1:
            raise ValueError(f"heatmap {name!r}: frame_size {frame_size} and grid {grid} must be positive")
        self.name, self.period_s, self.anchor, self.source = name, float(period_s), anchor, source
        self._counts = np.zeros((self.rows, self.cols), np.int64)
        self._frames = 0
        self._start: float | None = None
        self._start_wall: float | None = None
        self._t: float | None = None  # the last frame's stream time

    @classmethod
    def from_config(cls, c, frame_size=None, source: str = "default") -> Heatmap:
        """From an edge.analytics.config.HeatmapConfig; its frame_size, else the given one (width, height)."""
        size = c.frame_size or frame_size
        if size is None:
            raise ValueError(f"heatmap {c.name!r}: set frame_size = [width, height] (frame px)")
        return cls(size, name=c.name, grid=(c.cols, c.rows), period_s=c.period_s, anchor=c.anchor, source=source)

    @property
    def counts(self) -> np.ndarray:
        """The current period's (rows, cols) counts (a copy)."""
        return self._counts.copy()

    def cells(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, col) indices of finite (N, 2) points."""
        pts = np.asarray(points, np.float64).reshape(-1, 2)
        pts = pts[np.isfinite(pts).all(1)]
        col = np.clip((pts[:, 0] / self.width * self.cols).astype(np.int64), 0, self.cols - 1)
        row = np.clip((pts[:, 1] / self.height * self.rows).astype(np.int64), 0, self.rows - 1)
        return row, col

    def flush(self, t: float, t_wall: float | None = None) -> list[Event]:
        """Emit the current period now (if it has frames) and start a new one at `t`."""
        out = self._emit(t, t, t_wall) if self._frames else []
        self._reset(t, t_wall)
        return out

    def _reset(self, start: float, start_wall: float | None) -> None:
        self._counts[:] = 0
        self._frames = 0
        self._start, self._start_wall = start, start_wall

    def _emit(self, end: float, t: float, t_wall: float | None) -> list[Event]:
        return [make_event("occupancy_heatmap", {
            "heatmap": self.name, "cols": self.cols, "rows": self.rows, "counts": self._counts.tolist(),
            "total": int(self._counts.sum()), "frames": self._frames, "period_start_t": r3(self._start),
            "period_start_t_wall": self._start_wall, "period_end_t": r3(end), "period_s": self.period_s,
            "unit": "person_frames"}, t, t_wall, self.source)]

    def update(self, detections: Detections, t: float, t_wall: float | None = None) -> list[Event]:
        """Count one frame; returns the event of a period that ended before `t`."""
        out = []
        if self._t is not None and t < self._t:  # time went back: this period is over, on the old clock
            out = self._emit(self._t, t, t_wall) if self._frames else []
            self._reset(t, t_wall)
        elif self._start is None:
            self._reset(t, t_wall)
        elif t >= self._start + self.period_s:
            out = self._emit(self._start + self.period_s, t, t_wall)
            start = self._start + self.period_s * float(np.floor((t - self._start) / self.period_s))
            self._reset(start, None if t_wall is None else t_wall - (t - start))  # the wall time of `start`
        pts = list(tracked_points(detections, self.anchor).values())
        if pts:
            row, col = self.cells(np.array(pts))
            np.add.at(self._counts, (row, col), 1)
        self._frames += 1
        self._t = t
        return out
