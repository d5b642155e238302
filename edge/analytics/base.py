"""Shared helpers of the analytics objects: confirmed-track rows, point-in-polygon, event construction, outages."""
from __future__ import annotations

from typing import Any

import numpy as np

from edge.core.detections import Detections
from edge.core.events import Event

OUTAGE_S = 5.0  # no frame for this long (and lost_s, two frame intervals) ends every track: an outage, not a hiccup


def is_outage(gap_s: float, interval_s: float | None, lost_s: float = 0.0) -> bool:
    """Whether no frame for `gap_s` seconds, after frames `interval_s` apart (None: unknown, never an outage), is a
    camera outage (longer than OUTAGE_S, `lost_s` and twice that interval), not a slow frame or a stream hiccup."""
    return interval_s is not None and gap_s > max(lost_s, 2 * interval_s, OUTAGE_S)


def tracked_points(detections: Detections, anchor: str, min_score: float = 0.5) -> dict[int, np.ndarray]:
    """Track id -> (2,) anchor point of every confirmed track (tracker_id >= 0), first row per id. Raises when
    the detections were never tracked."""
    ids = detections.require_tracked()
    keep = ids >= 0
    if not keep.any():
        return {}
    pts = detections[keep].anchors(anchor, min_score)
    out: dict[int, np.ndarray] = {}
    for tid, p in zip(ids[keep].tolist(), pts):
        out.setdefault(int(tid), p)
    return out


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """(N,) bool: which (N, 2) points lie inside the polygon (even-odd rule; NaN points are outside)."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    poly = np.asarray(polygon, np.float64).reshape(-1, 2)
    x, y = pts[:, 0:1], pts[:, 1:2]
    x0, y0 = poly[:, 0][None, :], poly[:, 1][None, :]
    x1, y1 = np.roll(poly[:, 0], -1)[None, :], np.roll(poly[:, 1], -1)[None, :]
    straddles = (y0 > y) != (y1 > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        x_cross = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    hits = straddles & (x < x_cross)
    return (hits.sum(1) % 2 == 1) & np.isfinite(pts).all(1)


def make_event(kind: str, data: dict[str, Any], t: float, t_wall: float | None, source: str) -> Event:
    """An event on the "events" stream with the stream time `t`, the wall time `t_wall` (None when the caller has
    none; the event's ts then defaults to now) and the source name added to `data`."""
    data = {**data, "source": source, "t": round(float(t), 4), "t_wall": t_wall}
    if t_wall is None:
        return Event(kind, data, stream="events")
    return Event(kind, data, stream="events", ts=float(t_wall))


def r3(x: float | None) -> float | None:
    """Round a duration for an event (milliseconds are enough)."""
    return None if x is None else round(float(x), 3)
