"""Staff tagging: tracks that entered a staff-only zone (behind the counter, the stockroom door) are staff.

`[analytics] staff_zones` names zones only staff enter. A confirmed track that enters one (the zone's own
`enter_frames` / `enter_s`) is staff for as long as the tracker keeps its id (and under the new id of a zone
handover), and is forgotten `forget_s` after it was last seen. The composer leaves staff out of the shopper
analytics: zones, lines, queues, loitering, shelf interactions, heatmaps and the customers of kiosk help; a staff
member in a kiosk zone counts as staff arriving. Shelf facings still see everyone (staff hide facings too).
Limits: staff are known only once they were in a staff zone (one who comes in by the front door and never goes
behind the counter is a shopper), and a tracker id switch between a staff member and a shopper passes the tag on.
"""
from __future__ import annotations

from edge.analytics.zones import PolygonZone
from edge.core.detections import Detections

STAFF_FORGET_S = 60.0  # a staff track unseen this long is forgotten (the tracker does not reuse ids)


class StaffTagger:
    """Track ids of staff, from the staff-only zones (each a PolygonZone of its own: its entry rules apply)."""

    def __init__(self, zones: list[PolygonZone], forget_s: float = STAFF_FORGET_S):
        self.zones, self.forget_s = list(zones), float(forget_s)
        self._seen: dict[int, float] = {}  # staff track id -> stream time last seen
        self._t: float | None = None

    @property
    def staff(self) -> frozenset[int]:
        return frozenset(self._seen)

    def update(self, detections: Detections, t: float, t_wall: float | None = None) -> frozenset[int]:
        """Advance to one frame of tracked detections; returns the staff track ids."""
        if self._t is not None and t < self._t:  # stream time went back: ages restart on the new clock
            self._seen = dict.fromkeys(self._seen, t)
        self._t = t
        for z in self.zones:
            z.step(detections, t, t_wall)
            for old, new in z.handovers:  # the same person under a new id
                if old in self._seen:
                    self._seen[new] = t
            for tid, v in z.members.items():
                if v.out_t is None:
                    self._seen[tid] = t
        ids = detections.require_tracked()
        for tid in ids[ids >= 0].tolist():
            if tid in self._seen:
                self._seen[tid] = t
        self._seen = {tid: s for tid, s in self._seen.items() if t - s <= self.forget_s}
        return self.staff
