"""Queue length and a wait-time estimate from the observed service rate."""
from __future__ import annotations

from collections import deque

import numpy as np

from edge.analytics.base import make_event, r3
from edge.analytics.zones import PolygonZone
from edge.core.detections import Detections
from edge.core.events import Event


class Queue:
    """A queue is a zone: its length is the number of confirmed tracks inside (zone inertia and grace apply).

    A person leaving the zone counts as served when, in their last frame inside, nobody else seen inside was closer
    to `head` (the service end, frame px) and they stood in the half of the zone nearer the head (closer to `head`
    than halfway between the zone's point nearest to it and its farthest corner: someone walking out at the back,
    e.g. a passer-by alone in the zone, was not served); without `head` every departure counts. The service rate is
    the number served in the last `rate_window_s` seconds divided by the time the queue was non-empty in that
    window (people per minute, None until `min_services` people were served); the wait estimate is
    length / rate. `queue_changed` (queue, length, previous_length, service_rate_per_min, wait_estimate_s) is
    emitted when the length differs from the last reported one, at most once per `min_interval_s` (`flush` at the
    end of the stream reports a change still held back)."""

    def __init__(self, zone: PolygonZone, *, name: str | None = None, head=None, rate_window_s: float = 600.0,
                 min_services: int = 2, min_interval_s: float = 5.0, source: str = "default"):
        self.zone, self.name, self.source = zone, name or zone.name, source
        self.head = None if head is None else np.asarray(head, np.float64)
        # served only within this distance of the head: halfway from the zone's nearest point to its farthest corner
        # (a head outside the zone, a till just out of the queue, still leaves the near half of the zone)
        self._serve_dist = np.inf if self.head is None else _half_way(zone.polygon, self.head)
        self.rate_window_s, self.min_services, self.min_interval_s = rate_window_s, max(1, min_services), min_interval_s
        self._served: deque[float] = deque()  # service times
        self._busy: deque[list[float]] = deque()  # [start, end] intervals with length > 0
        self._at_head: dict[int, bool] = {}  # member -> nearest the head at its last frame inside
        self._t: float | None = None
        self._t_wall: float | None = None
        self._prev_len = 0
        self._reported_len = 0
        self._reported_t: float | None = None
        self.served_total = 0

    @classmethod
    def from_config(cls, c, zone: PolygonZone, source: str = "default") -> Queue:
        """From an edge.analytics.config.QueueConfig and its zone."""
        return cls(zone, name=c.name, head=c.head, rate_window_s=c.rate_window_s, min_services=c.min_services,
                   min_interval_s=c.min_interval_s, source=source)

    @property
    def length(self) -> int:
        return self.zone.count

    @property
    def service_rate_per_min(self) -> float | None:
        if self._t is None or len(self._served) < self.min_services:
            return None
        busy = self._busy_s(self._t)
        return None if busy <= 0 else len(self._served) / busy * 60.0

    @property
    def wait_estimate_s(self) -> float | None:
        """Expected wait for someone joining the back of the queue now, in seconds (None: rate unknown)."""
        rate = self.service_rate_per_min
        if self.length == 0:
            return 0.0
        return None if rate is None else self.length / rate * 60.0

    def _busy_s(self, t: float) -> float:
        lo = t - self.rate_window_s
        return sum(max(0.0, b - max(a, lo)) for a, b in self._busy)

    def update(self, detections: Detections, t: float, t_wall: float | None = None) -> list[Event]:
        """Advance to one frame; returns queue_changed events."""
        _, left = self.zone.step(detections, t, t_wall)
        cut = self.zone.cut_t is not None  # time went back or an outage: the zone ended every visit unseen
        if cut:
            self._at_head.clear()  # nobody was seen leaving: no service
        if self._t is not None and t < self._t:  # stream time went back: the rate window starts over
            self._served.clear()
            self._busy.clear()
            self._reported_t = None  # a report time on the old clock would hold the next report off
        if self._t is not None and self._prev_len > 0 and t > self._t and not cut:  # busy since the last frame
            if self._busy and self._busy[-1][1] == self._t:
                self._busy[-1][1] = t
            else:
                self._busy.append([self._t, t])
        for v in left:
            if self._at_head.pop(v.track_id, False):
                self._served.append(v.out_t)
                self.served_total += 1
        self._rank_head()
        lo = t - self.rate_window_s
        while self._served and self._served[0] < lo:
            self._served.popleft()
        while self._busy and self._busy[0][1] < lo:
            self._busy.popleft()
        self._t, self._t_wall, self._prev_len = t, t_wall, self.length
        due = self._reported_t is None or t - self._reported_t >= self.min_interval_s
        return self._report(t, t_wall) if due else []

    def flush(self, t: float, t_wall: float | None = None) -> list[Event]:
        """At the end of the stream: the length change held back by `min_interval_s`, if any (at the last frame)."""
        return self._report(*((self._t, self._t_wall) if self._t is not None else (t, t_wall)))

    def _report(self, t: float, t_wall: float | None) -> list[Event]:
        """`queue_changed` when the length differs from the last one reported."""
        if self.length == self._reported_len:
            return []
        rate, wait = self.service_rate_per_min, self.wait_estimate_s
        ev = make_event("queue_changed", {
            "queue": self.name, "length": self.length, "previous_length": self._reported_len,
            "service_rate_per_min": None if rate is None else round(rate, 2), "wait_estimate_s": r3(wait)},
            t, t_wall, self.source)
        self._reported_len, self._reported_t = self.length, t
        return [ev]

    def _rank_head(self) -> None:
        """Mark, among the members seen inside this frame, the one nearest the head (if within _serve_dist of it);
        members in their exit grace, and visits held as handover donors, keep the mark of their last frame inside."""
        members = self.zone.members
        for tid in [k for k in self._at_head if k not in members and not self.zone.held(k)]:
            del self._at_head[tid]
        seen = {tid: v.last_point for tid, v in members.items() if v.out_t is None and v.last_point is not None}
        if self.head is None:
            self._at_head.update({tid: True for tid in seen})
            return
        if not seen:
            return
        dist = {tid: float(np.hypot(*(p - self.head))) for tid, p in seen.items()}
        nearest = min(dist, key=dist.get)
        self._at_head.update({tid: tid == nearest and dist[tid] <= self._serve_dist for tid in seen})


def _half_way(polygon: np.ndarray, head: np.ndarray) -> float:
    """Distance from `head` halfway into the zone: between its nearest point of the polygon (0 inside) and the
    polygon's farthest corner."""
    import cv2

    inside = cv2.pointPolygonTest(polygon.astype(np.float32).reshape(-1, 1, 2), (float(head[0]), float(head[1])), True)
    near, far = max(0.0, -inside), float(np.hypot(*(polygon - head).T).max())
    return near + 0.5 * (far - near)
