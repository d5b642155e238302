"""Kiosk help: someone at the kiosk for a while with no staff nearby."""
from __future__ import annotations

import numpy as np

from edge.analytics.base import make_event, r3
from edge.analytics.zones import PolygonZone
from edge.core.detections import Detections
from edge.core.events import Event


class KioskHelp:
    """A customer is unattended from the later of their kiosk-zone entry and the last frame anyone was in the
    staff zone (no staff zone: from entry). When the longest-unattended customer seen at the kiosk in that frame
    (not one in the zone's exit grace, who may have just left) reaches `after_s` seconds while the staff zone is
    empty, `help_requested` (kiosk, track_id, waited_s, enter_t) is emitted and `requested` is
    true until staff enter the staff zone or that customer leaves: then `help_resolved` (kiosk, track_id, reason
    "staff_arrived" | "customer_left", requested_t, duration_s: to the staff's arrival, or to the customer's exit
    time, the visit's first frame out). With the zone's `handover_s`, a customer counts as left once their visit is
    reported as left (held that long after exit_s), so one found again under a new id keeps the request. Staff who
    arrive while the customer is unseen (exit grace, held) end `requested` at once, and the reason waits: staff_arrived
    when the customer is seen again, customer_left when their visit is reported as left. One request at a time. `staff` track ids (StaffTagger) are no customers, and one of them in the
    kiosk zone counts as staff present, like someone in the staff zone."""

    def __init__(self, kiosk: PolygonZone, staff: PolygonZone | None = None, *, name: str | None = None,
                 after_s: float = 30.0, source: str = "default"):
        self.kiosk, self.staff, self.name = kiosk, staff, name or kiosk.name
        self.after_s, self.source = float(after_s), source
        self._staff_t: float | None = None  # last frame with staff present
        self._t: float | None = None
        self.requester: int | None = None  # track id of the open request
        self._requested_t = 0.0
        self._staff_came_t: float | None = None  # staff arrived for the open request (its reason may wait)

    @classmethod
    def from_config(cls, c, kiosk: PolygonZone, staff: PolygonZone | None = None,
                    source: str = "default") -> KioskHelp:
        """From an edge.analytics.config.KioskHelpConfig and its zones."""
        return cls(kiosk, staff, name=c.name, after_s=c.after_s, source=source)

    @property
    def requested(self) -> bool:
        return self.requester is not None and self._staff_came_t is None

    def waiting(self, t: float | None = None) -> dict[int, float]:
        """Track id -> unattended seconds, for the customers in the kiosk zone."""
        t = self._t if t is None else t
        if t is None:
            return {}
        return {tid: max(0.0, v.until(t) - max(v.enter_t, self._staff_t if self._staff_t is not None else v.enter_t))
                for tid, v in self.kiosk.members.items()}

    @property
    def waiting_s(self) -> float:
        """The longest unattended time now (0 when the kiosk is empty)."""
        return max(self.waiting().values(), default=0.0)

    def update(self, detections: Detections, t: float, t_wall: float | None = None, *,
               staff: frozenset[int] = frozenset()) -> list[Event]:
        """Advance to one frame; returns help_requested / help_resolved events."""
        if self._t is not None and t < self._t:  # stream time went back
            self._staff_t = None  # a staff time of the old clock would hold requests off until the new one passes it
        self._t = t
        ids = detections.require_tracked()
        is_staff = np.isin(ids, list(staff)) if staff else np.zeros(len(ids), bool)
        _, left = self.kiosk.step(detections[~is_staff] if is_staff.any() else detections, t, t_wall)
        # time went back or an outage: the zone ended every visit at the last frame before, and so does a request
        t_end = t if self.kiosk.cut_t is None else self.kiosk.cut_t
        for old, new in self.kiosk.handovers:  # the same shopper under a new id: the request stands
            if self.requester == old:
                self.requester = new
        staff_here = False
        if self.staff is not None:
            self.staff.step(detections, t, t_wall)
            staff_here = self.staff.count > 0
        if is_staff.any():  # a staff member at the kiosk itself
            staff_here |= bool(self.kiosk.contains(detections[is_staff].anchors(self.kiosk.anchor)).any())
        if staff_here:
            self._staff_t = t
        out = []
        if self.requester is not None:
            v = self.kiosk.members.get(self.requester)
            if v is None and not self.kiosk.held(self.requester):  # left (before any staff came: unanswered)
                reason = "customer_left"
                t_end = next((u.out_t for u in left if u.track_id == self.requester and u.out_t is not None), t_end)
            else:
                if staff_here and self._staff_came_t is None:
                    self._staff_came_t = t
                # staff came while the customer was unseen: staff_arrived only once the customer is seen again
                reason = "staff_arrived" if self._staff_came_t is not None and v is not None and v.out_t is None \
                    else None
                t_end = self._staff_came_t if reason else t_end
            if reason:
                out.append(make_event("help_resolved", {
                    "kiosk": self.name, "track_id": self.requester, "reason": reason,
                    "requested_t": r3(self._requested_t), "duration_s": r3(t_end - self._requested_t)},
                    t, t_wall, self.source))
                self.requester = self._staff_came_t = None
        if self.requester is None and not staff_here:
            members = self.kiosk.members
            waiting = {tid: s for tid, s in self.waiting(t).items() if members[tid].out_t is None}  # seen now
            if waiting:
                tid = max(waiting, key=lambda k: (waiting[k], -k))
                if waiting[tid] >= self.after_s:
                    self.requester, self._requested_t = tid, t
                    out.append(make_event("help_requested", {
                        "kiosk": self.name, "track_id": tid, "waited_s": r3(waiting[tid]),
                        "enter_t": r3(self.kiosk.members[tid].enter_t)}, t, t_wall, self.source))
        return out
