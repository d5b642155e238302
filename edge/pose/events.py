"""Person presence events from pose results: a person entered / left the frame. Never frames.

Zones, lines, dwell and the rest are analytics (edge.analytics), fed from pose results or the person detector.
"""
from __future__ import annotations

from dataclasses import dataclass

from edge.core.events import Event, EventSink
from edge.pose.types import PoseResult


@dataclass
class _Seen:
    t_wall: float  # first seen (wall clock)
    t: float  # first seen (stream time)


class PresenceTracker:
    """Turns a stream of PoseResults into `person_entered` / `person_left` events (data: track_id, scope "frame",
    stream time `t` with its `clock`, wall time, and on leaving `dwell_s` measured on the stream clock, so a
    recorded file gives the same dwell at any processing speed) sent to an EventSink."""

    def __init__(self, sink: EventSink, *, source: str = "default"):
        self.sink, self.source = sink, source
        self._frame: dict[int, _Seen] = {}

    def _emit(self, kind: str, tid: int, result: PoseResult, t_wall: float, since: _Seen | None = None) -> Event:
        data = {"track_id": tid, "scope": "frame", "zone": None, "source": self.source,
                "frame_seq": result.frame_seq, "t": round(result.t, 4), "clock": result.clock, "t_wall": t_wall}
        if since is not None:
            data["entered_t_wall"] = since.t_wall
            data["dwell_s"] = round(result.t - since.t, 3)
        ev = Event(kind, data, ts=t_wall)
        self.sink.emit(ev)
        return ev

    def update(self, result: PoseResult, t_wall: float) -> list[Event]:
        """Feed one frame's result (t_wall: the frame's wall-clock time); returns the events emitted."""
        out = []
        ids = {p.track_id for p in result.people}
        for tid in sorted(ids - set(self._frame)):
            self._frame[tid] = _Seen(t_wall, result.t)
            out.append(self._emit("person_entered", tid, result, t_wall))
        for tid in sorted(set(self._frame) - ids):
            out.append(self._emit("person_left", tid, result, t_wall, self._frame.pop(tid)))
        return out
