"""Person presence events from pose results: entered/left the frame and each configured zone. Never frames."""
from __future__ import annotations

from dataclasses import dataclass

from edge.core.events import Event, EventSink
from edge.pose.types import PoseResult
from edge.pose.zones import PolygonZone


@dataclass
class _Seen:
    t_wall: float  # first seen (wall clock)
    t: float  # first seen (stream time)


class PresenceTracker:
    """Turns a stream of PoseResults into `person_entered` / `person_left` events (data: track_id, scope
    "frame" or "zone", zone name, stream time `t` with its `clock`, wall time, and on leaving `dwell_s` measured on
    the stream clock, so a recorded file gives the same dwell at any processing speed) sent to an EventSink."""

    def __init__(self, sink: EventSink, zones: list[PolygonZone] | tuple = (), *, source: str = "default"):
        self.sink, self.zones, self.source = sink, list(zones), source
        self._frame: dict[int, _Seen] = {}
        self._zone: dict[tuple[str, int], _Seen] = {}

    @classmethod
    def from_config(cls, cfg, sink: EventSink, source: str = "default") -> PresenceTracker:
        """From a PoseConfig (its `zones` list)."""
        return cls(sink, [PolygonZone.from_config(z) for z in cfg.zones], source=source)

    def _emit(self, kind: str, tid: int, zone: str | None, result: PoseResult, t_wall: float,
              since: _Seen | None = None) -> Event:
        data = {"track_id": tid, "scope": "zone" if zone else "frame", "zone": zone, "source": self.source,
                "frame_seq": result.frame_seq, "t": round(result.t, 4), "clock": result.clock, "t_wall": t_wall}
        if since is not None:
            data["entered_t_wall"] = since.t_wall
            data["dwell_s"] = round(result.t - since.t, 3)
        ev = Event(kind, data, ts=t_wall)
        self.sink.emit(ev)
        return ev

    def update(self, result: PoseResult, t_wall: float) -> list[Event]:
        """Feed one frame's result (t_wall: the frame's wall-clock capture time); returns the events emitted."""
        out = []
        ids = {p.track_id for p in result.people}
        for tid in sorted(ids - set(self._frame)):
            self._frame[tid] = _Seen(t_wall, result.t)
            out.append(self._emit("person_entered", tid, None, result, t_wall))
        for z in self.zones:
            entered, left = z.update(result.people)
            for tid in entered:
                self._zone[(z.name, tid)] = _Seen(t_wall, result.t)
                out.append(self._emit("person_entered", tid, z.name, result, t_wall))
            for tid in left:
                out.append(self._emit("person_left", tid, z.name, result, t_wall, self._zone.pop((z.name, tid), None)))
        for tid in sorted(set(self._frame) - ids):
            out.append(self._emit("person_left", tid, None, result, t_wall, self._frame.pop(tid)))
        return out
