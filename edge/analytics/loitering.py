"""Loitering: a track inside a zone for longer than a threshold, optionally only within given local hours."""
from __future__ import annotations

import logging
import re
from datetime import datetime, tzinfo

from edge.analytics.base import make_event, r3
from edge.analytics.zones import PolygonZone
from edge.core.detections import Detections
from edge.core.events import Event

log = logging.getLogger(__name__)

_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


def parse_hours(spec: str) -> tuple[int, int]:
    """"HH:MM-HH:MM" (local time; may cross midnight, e.g. "22:00-06:00") -> (start, end) minutes of the day."""
    m = _HOURS.match(spec.strip())
    if not m:
        raise ValueError(f"{spec!r} is not HH:MM-HH:MM (e.g. 22:00-06:00)")
    a, b = int(m[1]) * 60 + int(m[2]), int(m[3]) * 60 + int(m[4])
    if b > 24 * 60:
        raise ValueError(f"{spec!r}: the end is after 24:00")
    if a == b:
        raise ValueError(f"{spec!r}: start and end are equal (leave `hours` empty for all day)")
    return a, b


def within_hours(t_wall: float, windows: list[tuple[int, int]], tz: tzinfo | None = None) -> bool:
    """Whether the wall time falls in any window (minutes of the local day; end exclusive)."""
    lt = datetime.fromtimestamp(t_wall, tz) if tz is not None else datetime.fromtimestamp(t_wall).astimezone()
    m = lt.hour * 60 + lt.minute
    return any((a <= m < b) if a < b else (m >= a or m < b) for a, b in windows)


class Loitering:
    """Emits one `loitering` event (loitering, zone, track_id, enter_t, enter_t_wall, dwell_s) per zone visit once
    the visit has lasted `after_s` seconds of stream time while the local wall time is within `hours`
    ("HH:MM-HH:MM" windows; empty: any time), in a frame that sees the person inside (not in the zone's exit
    grace: someone who left just before `after_s` is not reported). A visit already long when the hours begin is
    reported when they begin. Hours need the frame's wall time; without it no event is raised."""

    def __init__(self, zone: PolygonZone, *, name: str | None = None, after_s: float = 60.0, hours=(),
                 tz: tzinfo | None = None, source: str = "default"):
        self.zone, self.name, self.after_s, self.tz, self.source = zone, name or zone.name, after_s, tz, source
        self.hours = [parse_hours(h) if isinstance(h, str) else tuple(h) for h in hours]
        self._flagged: set[int] = set()
        self._warned = False

    @classmethod
    def from_config(cls, c, zone: PolygonZone, source: str = "default") -> Loitering:
        """From an edge.analytics.config.LoiteringConfig and its zone."""
        from zoneinfo import ZoneInfo

        tz = ZoneInfo(c.timezone) if c.timezone else None
        return cls(zone, name=c.name, after_s=c.after_s, hours=c.hours, tz=tz, source=source)

    @property
    def loiterers(self) -> frozenset[int]:
        """Tracks reported as loitering and still in the zone."""
        return frozenset(self._flagged)

    @property
    def count(self) -> int:
        return len(self._flagged)

    def _in_hours(self, t_wall: float | None) -> bool:
        if not self.hours:
            return True
        if t_wall is None:
            if not self._warned:
                log.warning("loitering %r: hours are set but frames carry no wall time; no events", self.name)
                self._warned = True
            return False
        return within_hours(t_wall, self.hours, self.tz)

    def update(self, detections: Detections, t: float, t_wall: float | None = None) -> list[Event]:
        """Advance to one frame; returns loitering events."""
        _, left = self.zone.step(detections, t, t_wall)
        for v in left:
            self._flagged.discard(v.track_id)
        for old, new in self.zone.handovers:  # the same person under a new id: already reported
            if old in self._flagged:
                self._flagged.discard(old)
                self._flagged.add(new)
        out = []
        due = [v for tid, v in sorted(self.zone.members.items())
               if tid not in self._flagged and v.out_t is None and t - v.enter_t >= self.after_s]
        if due and self._in_hours(t_wall):
            for v in due:
                self._flagged.add(v.track_id)
                out.append(make_event("loitering", {
                    "loitering": self.name, "zone": self.zone.name, "track_id": v.track_id, "enter_t": r3(v.enter_t),
                    "enter_t_wall": v.enter_t_wall, "dwell_s": r3(t - v.enter_t)}, t, t_wall, self.source))
        return out
