"""Try-on session analytics: one `tryon_session` event per shopper x garment (SKU, duration, colours, size).

A session starts when a person is in front of the mirror with a garment selected, and ends when the garment
changes, the person has been absent for `absence_timeout_s`, another shopper takes their place (a new visit:
TryOnPipeline.shopper), or the pipeline stops. Events carry no images and
no body measurements, only the suggested size.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edge.core.events import Event, EventSink

if TYPE_CHECKING:
    from edge.pose.types import PersonPose, PoseResult

log = logging.getLogger(__name__)


def main_person(result: PoseResult | None, prefer: int | None = None) -> PersonPose | None:
    """The person the mirror dresses: the one it dressed last (`prefer`, their pose track id) while the pose still
    tracks them, else the highest-scoring (closest to the mirror in practice). The pose scores of two people in
    view are both near 1 and trade places from frame to frame: by score alone the garment, the hands and the size
    measurement would jump between them."""
    if result is None or not result.people:
        return None
    if prefer is not None:
        for p in result.people:
            if p.track_id == prefer:
                return p
    return max(result.people, key=lambda p: p.score)


@dataclass
class _Session:
    sku: str
    colour: str
    t_start: float
    t_last_seen: float
    colours: list[str] = field(default_factory=list)
    colour_changes: int = 0
    size_suggested: str | None = None
    visit: int = 0


class SessionTracker:
    def __init__(self, sink: EventSink | None, absence_timeout_s: float = 3.0, min_duration_s: float = 1.0):
        self.sink = sink
        self.absence_timeout_s = absence_timeout_s
        self.min_duration_s = min_duration_s
        self.current: _Session | None = None
        self.emitted = 0
        self._last_now: float | None = None
        self._wall_offset: float | None = None  # t_wall - now of the latest frame
        self._clock = "capture"

    def update(self, now: float, person_present: bool, sku: str, colour: str, size: str | None = None, *,
               t_wall: float | None = None, clock: str = "capture", visit: int = 0) -> None:
        """Call once per processed frame; `now` is the frame's stream time (Frame.t), `t_wall` its wall time,
        `visit` the shopper's visit (a change ends the session where the last shopper was last seen)."""
        self._last_now, self._clock = now, clock
        if t_wall is not None:
            self._wall_offset = t_wall - now
        s = self.current
        if s is not None and person_present and visit != s.visit:
            self._end(s.t_last_seen, "shopper_changed")
            s = None
        if s is not None and (s.sku != sku or (not person_present and now - s.t_last_seen > self.absence_timeout_s)):
            self._end(s.t_last_seen if not person_present else now, "garment_changed" if s.sku != sku else "absent")
            s = None
        if not person_present:
            return
        if s is None:
            s = self.current = _Session(sku=sku, colour=colour, t_start=now, t_last_seen=now, colours=[colour],
                                        visit=visit)
        s.t_last_seen = now
        if colour != s.colour:
            s.colour = colour
            s.colour_changes += 1
            if colour not in s.colours:
                s.colours.append(colour)
        if size:
            s.size_suggested = size

    def close(self, now: float | None = None) -> None:
        """End the open session (pipeline stop) at `now` (default: the last frame's stream time)."""
        now = self._last_now if now is None else now
        if self.current is not None:
            self._end(self.current.t_last_seen if now is None else min(now, self.current.t_last_seen), "stopped")

    def _end(self, t_end: float, reason: str) -> None:
        s, self.current = self.current, None
        dur = max(0.0, t_end - s.t_start)
        if dur < self.min_duration_s or self.sink is None:
            return
        data = {"sku": s.sku, "duration_s": round(dur, 2), "colours": s.colours, "final_colour": s.colour,
                "colour_changes": s.colour_changes, "size_suggested": s.size_suggested, "end_reason": reason,
                "clock": self._clock}
        if self._wall_offset is not None:  # wall times from the stream clock (recorded media: start + media time)
            data["start_t_wall"] = round(s.t_start + self._wall_offset, 3)
            ev = Event(kind="tryon_session", stream="events", data=data, ts=t_end + self._wall_offset)
        else:
            ev = Event(kind="tryon_session", stream="events", data=data)
        try:
            self.sink.emit(ev)
            self.emitted += 1
        except Exception:  # noqa: BLE001 - analytics must never stop the mirror
            log.exception("could not emit try-on session event")
