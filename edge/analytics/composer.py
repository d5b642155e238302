"""Runs the tracker and every configured analytics object on each frame's detections; events go to a sink."""
from __future__ import annotations

import logging
from typing import Protocol

import numpy as np

from edge.analytics.facings import Facing, ShelfFacings
from edge.analytics.heatmap import Heatmap
from edge.analytics.kiosk import KioskHelp
from edge.analytics.lines import LineCounter
from edge.analytics.loitering import Loitering
from edge.analytics.queue import Queue
from edge.analytics.shelf import ShelfInteraction
from edge.analytics.staff import StaffTagger
from edge.analytics.tracker import ByteTracker
from edge.analytics.zones import PolygonZone
from edge.core.detections import Detections
from edge.core.events import Event, EventSink

log = logging.getLogger(__name__)


class AnalyticsObject(Protocol):
    def update(self, detections: Detections, t: float, t_wall: float | None = None) -> list[Event]: ...


class Analytics:
    """Tracker + analytics objects. `update(detections, t, t_wall, image=...)` tracks the detections (unless the
    tracker is off: then they must carry tracker ids), feeds every object, emits the events to the sink and returns
    them; objects with `needs_image` (the shelf facings) also get the frame image. The objects stay readable for the
    alert engine: `zones`, `lines`, `queues`, `loitering`, `shelves`, `heatmaps`, `kiosk_help`, `planograms`
    (camera -> ShelfFacings), `facings` (facing id -> Facing) and `tracked` (the last frame's tracked detections).
    With `staff` (a StaffTagger: [analytics] staff_zones), staff tracks are left out of the shopper analytics
    (edge/analytics/staff.py); the staff zones themselves and the shelf facings see everyone."""

    def __init__(self, tracker: ByteTracker | None, objects: list[AnalyticsObject], sink: EventSink | None = None,
                 source: str = "default", staff: StaffTagger | None = None, staff_zones: tuple[str, ...] = ()):
        self.tracker, self.objects, self.sink, self.source = tracker, list(objects), sink, source
        self.staff, self.staff_zones = staff, frozenset(staff_zones)
        self.staff_ids: frozenset[int] = frozenset()  # the last frame's staff tracks
        self.zones: dict[str, PolygonZone] = {}
        self.lines: dict[str, LineCounter] = {}
        self.queues: dict[str, Queue] = {}
        self.loitering: dict[str, Loitering] = {}
        self.shelves: dict[str, ShelfInteraction] = {}
        self.heatmaps: dict[str, Heatmap] = {}
        self.kiosk_help: dict[str, KioskHelp] = {}
        self.planograms: dict[str, ShelfFacings] = {}
        for o in self.objects:
            for attr, cls in (("zones", PolygonZone), ("lines", LineCounter), ("queues", Queue),
                              ("loitering", Loitering), ("shelves", ShelfInteraction), ("heatmaps", Heatmap),
                              ("kiosk_help", KioskHelp), ("planograms", ShelfFacings)):
                if isinstance(o, cls):
                    getattr(self, attr)[o.name] = o
        self.facings: dict[str, Facing] = {fid: f for p in self.planograms.values() for fid, f in p.facings.items()}
        self.tracked: Detections | None = None

    @classmethod
    def from_config(cls, cfg, sink: EventSink | None = None, source: str = "default",
                    frame_size: tuple[int, int] | None = None) -> Analytics:
        """From an AnalyticsConfig. Queues, loitering and kiosk help get their own copy of the zone they name (its
        state is theirs); `frame_size` (width, height) is the default for heatmaps without one."""
        def zone(name: str) -> PolygonZone:
            return PolygonZone.from_config(cfg.zone(name), source=source, events=False)

        tracker = ByteTracker.from_config(cfg.tracker) if cfg.tracker.enabled else None
        objects: list[AnalyticsObject] = [PolygonZone.from_config(z, source=source) for z in cfg.zones]
        objects += [LineCounter.from_config(c, source=source) for c in cfg.lines]
        objects += [Queue.from_config(c, zone(c.zone), source=source) for c in cfg.queues]
        objects += [Loitering.from_config(c, zone(c.zone), source=source) for c in cfg.loitering]
        objects += [ShelfInteraction.from_config(c, source=source) for c in cfg.shelves]
        objects += [Heatmap.from_config(c, frame_size, source=source) for c in cfg.heatmaps]
        objects += [KioskHelp.from_config(c, zone(c.zone), zone(c.staff_zone) if c.staff_zone else None,
                                          source=source) for c in cfg.kiosk_help]
        if cfg.planogram.facings:
            objects.append(ShelfFacings.from_config(cfg.planogram, source=source))
        staff = StaffTagger([zone(n) for n in cfg.staff_zones]) if cfg.staff_zones else None
        return cls(tracker, objects, sink, source, staff, tuple(cfg.staff_zones))

    def update(self, detections: Detections, t: float, t_wall: float | None = None, *,
               frame_seq: int | None = None, clock: str | None = None, image=None, mask=None) -> list[Event]:
        """Feed one frame's detections at stream time `t` (and its wall time); returns the events emitted.
        `frame_seq` and `clock` (Frame.seq, Frame.clock) are added to each event when given. `image` (the frame,
        BGR) goes to the tracker (appearance) and, with `mask` (optional person segmentation, HxW), to the objects
        that need them."""
        tracked = self.tracker.update(detections, t, image) if self.tracker is not None else detections
        ids = tracked.require_tracked()
        self.tracked = tracked
        staff = self.staff_ids = self.staff.update(tracked, t, t_wall) if self.staff is not None else frozenset()
        shoppers = tracked[~np.isin(ids, list(staff))] if staff else tracked
        events: list[Event] = []
        for o in self.objects:
            if getattr(o, "needs_image", False):  # shelf facings: anyone in front hides a facing
                events += o.update(tracked, t, t_wall, image=image, mask=mask)
            elif isinstance(o, KioskHelp):
                events += o.update(tracked, t, t_wall, staff=staff)
            elif isinstance(o, PolygonZone) and o.name in self.staff_zones:
                events += o.update(tracked, t, t_wall)
            else:
                events += o.update(shoppers, t, t_wall)
        self._emit(events, frame_seq, clock)
        return events

    def retake_reference(self, facing_id: str | None = None, *, when: str = "now", by: str = "",
                         via: str = "api") -> list[str]:
        """Retake the shelf reference of one facing (any camera), or of every facing of every camera (None).
        Returns the facing ids now waiting for it; KeyError for an unknown facing."""
        if facing_id is None:
            return [fid for p in self.planograms.values() for fid in p.retake_reference(None, when=when, by=by,
                                                                                        via=via)]
        for p in self.planograms.values():
            if facing_id in p.facings:
                return p.retake_reference(facing_id, when=when, by=by, via=via)
        raise KeyError(f"no facing {facing_id!r} on this device (facings: {', '.join(self.facings) or 'none'})")

    def flush(self, t: float, t_wall: float | None = None, *, clock: str | None = None) -> list[Event]:
        """Emit the partial heatmap periods, the queue length changes held back by `min_interval_s`, and end every
        zone visit (`zone_left` for visits still inside, in their exit grace or held as handover donors); call at
        shutdown."""
        events = [e for z in self.zones.values() for e in z.flush(t, t_wall)]
        events += [e for q in self.queues.values() for e in q.flush(t, t_wall)]
        events += [e for h in self.heatmaps.values() for e in h.flush(t, t_wall)]
        self._emit(events, None, clock)  # `clock`: the last frame's, like every event of the stream
        return events

    def _emit(self, events: list[Event], frame_seq: int | None, clock: str | None) -> None:
        for e in events:
            if frame_seq is not None:
                e.data["frame_seq"] = frame_seq
            if clock is not None:
                e.data["clock"] = clock
            if self.sink is not None:
                self.sink.emit(e)
        if events:
            log.debug("analytics: %d events (%s)", len(events), ", ".join(sorted({e.kind for e in events})))
