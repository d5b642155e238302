"""Polygon zone occupancy and dwell per confirmed track, with entry inertia and exit grace on the stream clock."""
from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from edge.analytics.base import is_outage, make_event, points_in_polygon, r3, tracked_points
from edge.core.detections import BOX_ANCHORS, Detections
from edge.core.events import Event

log = logging.getLogger(__name__)


@dataclass
class Visit:
    """One track's stay in a zone. While `member` is False it is only a candidate (inside for too short)."""

    track_id: int
    member: bool = False
    streak: int = 0  # consecutive frames inside while a candidate
    streak_t: float = 0.0  # first frame of that streak (becomes enter_t)
    streak_t_wall: float | None = None
    enter_t: float = 0.0
    enter_t_wall: float | None = None
    out_t: float | None = None  # first frame not inside while a member (becomes exit_t); see PolygonZone
    out_t_wall: float | None = None
    gone_t: float | None = None  # first frame not inside while a member: the exit grace runs from it
    last_point: np.ndarray | None = None  # last anchor point seen inside
    first_point: np.ndarray | None = None  # anchor point at streak_t
    continues: int | None = None  # the track whose visit this one took over (handover)
    trail: deque = field(default_factory=deque)  # (t, point, person height) seen inside, the last handover_s
    end_t: float | None = None  # when the visit ended (kept a while as a handover donor)

    def until(self, t: float) -> float:
        """`t`, or the visit's exit time once it is in its exit grace: time unseen is no presence."""
        return t if self.out_t is None else min(t, self.out_t)


HANDOVER_STOOD_S = 1.0  # a handover donor stood where the new track appeared for at least this long
HANDOVER_WATCH_S = 1.0  # a new track that may take a visit over is watched this long before it enters
HANDOVER_STILL = 0.12  # ... and takes it only if its box top moved slower than this (box heights per second)


class PolygonZone:
    """Which confirmed tracks are inside a polygon, judged by one anchor point per track.

    A track enters after its anchor has been inside for `enter_frames` consecutive frames and `enter_s` seconds;
    the visit starts at the first of those frames. It leaves once it has been outside or undetected for `exit_s`
    seconds (exit grace); the visit ends at the first such frame, and a later return starts a new visit (the dwell
    timer resets). Unconfirmed detections (tracker_id -1) are ignored. Time nobody saw is no presence: when that
    first frame came after no frame for longer than `exit_s` (and twice the interval before), the visit ends at the
    last frame before the gap; a camera outage (no frame for longer than OUTAGE_S and twice the interval before,
    see `is_outage`) ends every visit there, and so does stream time going back (`cut_t` says where, for that
    step). That holds even where the tracker keeps its ids longer (`lost_s` above OUTAGE_S): unseen time never
    counts as presence, so a person still there after such a gap starts a new visit.

    Handover: trackers lose people and swap ids when others pass in front, and a person standing still then comes
    back under a new id. With `handover_s` > 0, a track the tracker started (within the last `handover_s` seconds)
    where another track stood for a second or more within that time (anchor within `handover_dist` of that
    person's box height), while that track is gone or has moved away, and that stands still itself, continues its
    visit. Standing still: over its first `HANDOVER_WATCH_S` (its entry waits that long when such a donor exists),
    its box top (which a passer-by in front does not hide) moved slower than `HANDOVER_STILL` box heights per
    second (least-squares slope): a stroller appearing on the spot under a new id takes nothing over. The new visit keeps
    the old one's enter_t (so dwell, loitering and kiosk waits go on), and the old id, if it is still inside
    somewhere else, starts a fresh visit (a `zone_entered` of its own). A visit that ends in such a zone is held
    `handover_s` as a donor before it is reported as left (`held`), so a person hidden longer than `exit_s` and
    found again under a new id has one visit, not a `zone_left` and a second entry. Meant for zones where people
    stand alone (loitering watch, kiosk); in a queue the next customer often starts a track where the last one
    stood, so it is off by default.

    `update` returns `zone_entered` (track_id, enter_t, enter_t_wall, and `continues`: the old track id after a
    handover) and `zone_left` (track_id, enter_t, enter_t_wall, exit_t, exit_t_wall, dwell_s) events when `events`
    is true; `step` returns the raw transitions for objects built on a zone (queue, loitering, kiosk help), and
    `handovers` lists the last step's (old id, new id) pairs."""

    def __init__(self, name: str, polygon, *, anchor: str = "bottom_center", enter_frames: int = 3,
                 enter_s: float = 0.0, exit_s: float = 1.0, events: bool = True, source: str = "default",
                 handover_s: float = 0.0, handover_dist: float = 0.3):
        if anchor not in BOX_ANCHORS:
            raise ValueError(f"zone {name!r}: unknown anchor {anchor!r}; choose one of {BOX_ANCHORS}")
        self.name, self.anchor, self.source, self.events = name, anchor, source, events
        self.polygon = np.asarray(polygon, np.float64).reshape(-1, 2)
        self._box = (self.polygon.min(0) - 1e-6, self.polygon.max(0) + 1e-6)  # where a point on an edge can be
        if len(self.polygon) < 3:
            raise ValueError(f"zone {name!r}: a polygon needs at least 3 points")
        self.enter_frames, self.enter_s, self.exit_s = max(1, int(enter_frames)), float(enter_s), float(exit_s)
        self.handover_s, self.handover_dist = float(handover_s), float(handover_dist)
        self._visits: dict[int, Visit] = {}
        self._ended: list[Visit] = []  # visits that ended within handover_s (donors for a handover)
        self._born: dict[int, tuple] = {}  # track id -> (t, point, [(t, box top, height)] first watched, last t)
        self._watched: dict[int, int] = {}  # new track id -> the donor whose visit it may take over (see _watch)
        self._t: float | None = None
        self._t_wall: float | None = None
        self._dt: float | None = None  # the interval before the last frame (a gap is judged against it)
        self.cut_t: float | None = None  # the last step ended every visit (time went back, an outage) at this time
        self.handovers: list[tuple[int, int]] = []

    @classmethod
    def from_config(cls, z, source: str = "default", events: bool | None = None) -> PolygonZone:
        """From an edge.analytics.config.ZoneConfig."""
        return cls(z.name, z.polygon, anchor=z.anchor, enter_frames=z.enter_frames, enter_s=z.enter_s,
                   exit_s=z.exit_s, events=z.events if events is None else events, source=source,
                   handover_s=z.handover_s, handover_dist=z.handover_dist)

    # read-only state
    @property
    def members(self) -> dict[int, Visit]:
        """Track id -> visit, for the tracks inside (including those within the exit grace)."""
        return {tid: v for tid, v in self._visits.items() if v.member}

    @property
    def inside(self) -> frozenset[int]:
        return frozenset(self.members)

    @property
    def count(self) -> int:
        return sum(v.member for v in self._visits.values())

    def dwell_of(self, track_id: int, t: float | None = None) -> float | None:
        """Seconds since the track's visit started (at `t`, default the last update; in the exit grace: until the
        visit's exit time), or None when not inside."""
        v = self._visits.get(track_id)
        if v is None or not v.member:
            return None
        return v.until(self._t if t is None else t) - v.enter_t

    def contains(self, points) -> np.ndarray:
        """(N,) bool: which (N, 2) points lie inside the polygon or on its edges (a box the detector clipped at the
        frame's edge puts its anchor on the edge of a zone drawn to the frame's edge); NaN and inf are outside."""
        pts = np.asarray(points, np.float64).reshape(-1, 2)
        inside = points_in_polygon(pts, self.polygon)
        lo, hi = self._box
        rest = ~inside & (pts >= lo).all(1) & (pts <= hi).all(1)  # NaN and inf fail these too
        if rest.any():  # the edge test only for points in the zone's box the even-odd test left out
            inside[rest] = _on_edges(pts[rest], self.polygon)
        return inside

    def step(self, detections: Detections, t: float, t_wall: float | None = None) -> tuple[list[Visit], list[Visit]]:
        """Advance to one frame; returns (visits that started, visits that ended) in track id order. A visit that
        continues another (handover) is among those that started, with the old visit's enter_t."""
        prev_t, prev_t_wall, prev_dt = self._t, self._t_wall, self._dt
        back = prev_t is not None and t < prev_t
        outage = prev_t is not None and not back and is_outage(t - prev_t, prev_dt)
        cut = self._cut(t, "stream time went back" if back else "no frame for an outage") if back or outage else []
        self.cut_t = prev_t if back or outage else None
        # a frame after a gap: whoever it does not see was last seen before the gap
        gap = prev_t is not None and prev_dt is not None and t - prev_t > max(self.exit_s, 2 * prev_dt)
        self._dt = None if prev_t is None or back or outage else t - prev_t
        self._t, self._t_wall = t, t_wall
        self.handovers = []
        pts = tracked_points(detections, self.anchor)
        tops = _tops(detections) if self.handover_s > 0 else {}
        inside = dict(zip(pts, self.contains(np.array(list(pts.values())).reshape(-1, 2)).tolist()))
        if self.handover_s > 0:
            for tid, p in pts.items():
                t0, p0, seen, _ = self._born.get(tid, (t, np.asarray(p, np.float64), [], t))
                if t - t0 <= HANDOVER_WATCH_S:
                    seen.append((t, *tops[tid]))
                self._born[tid] = (t0, p0, seen, t)
            if len(self._born) > 4 * len(pts) + 64:  # forget tracks unseen for a minute
                self._born = {k: b for k, b in self._born.items() if t - b[3] < 60.0}
            self._watched = {k: d for k, d in self._watched.items() if inside.get(k)}
        entered, left, back = [], [], []  # back: held visits of ids that came back (over, reported now)
        for tid in sorted(set(inside) | set(self._visits)):
            now_in = inside.get(tid, False)
            v = self._visits.get(tid)
            if v is None:
                if not now_in:
                    continue
                v = self._visits[tid] = Visit(tid)
                back += [u for u in self._ended if u.track_id == tid]  # the same id back: its last visit is over
                self._ended = [u for u in self._ended if u.track_id != tid]
            if now_in:
                v.last_point = np.asarray(pts[tid], np.float64)
                if self.handover_s > 0:
                    v.trail.append((t, v.last_point, tops[tid][1]))
                    while v.trail and v.trail[0][0] < t - self.handover_s:
                        v.trail.popleft()
                if v.member:
                    v.out_t = v.out_t_wall = v.gone_t = None
                    continue
                if v.streak == 0:
                    v.streak_t, v.streak_t_wall, v.first_point = t, t_wall, v.last_point
                v.streak += 1
                if v.streak >= self.enter_frames and t - v.streak_t >= self.enter_s and not self._watch(v, t):
                    v.member, v.enter_t, v.enter_t_wall = True, v.streak_t, v.streak_t_wall
                    entered.append(v)
                continue
            if not v.member:  # a candidate that stepped out or vanished starts over
                del self._visits[tid]
                continue
            if v.out_t is None:
                v.gone_t = t
                v.out_t, v.out_t_wall = (prev_t, prev_t_wall) if gap else (t, t_wall)
            if t - v.gone_t >= self.exit_s and tid not in self._watched.values():  # (a watched track's donor waits)
                del self._visits[tid]
                v.end_t = t
                left.append(v)
        if self.handover_s > 0:
            # an ended visit is held while a new track may still take it over; it is reported once it cannot
            self._ended += left
            left = back + [v for v in self._ended if t - v.end_t > self.handover_s]
            self._ended = [v for v in self._ended if t - v.end_t <= self.handover_s]
            for v in list(entered):
                fresh = self._handover(v, t, t_wall, pts)
                if fresh is not None:
                    entered.append(fresh)
            left.sort(key=lambda v: v.track_id)
        return entered, cut + left

    def _cut(self, t: float, why: str) -> list[Visit]:
        """Stream time went back (another recording, a clock reset) or frames stopped for an outage: end every visit
        at the last frame before, so nothing carries over, and forget the candidates and handover state."""
        log.warning("zone %s: %s (%.3f -> %.3f); visits end at %.3f", self.name, why, self._t, t, self._t)
        out = [v for v in self._visits.values() if v.member] + self._ended
        for v in out:
            if v.out_t is None:
                v.out_t, v.out_t_wall = self._t, self._t_wall
            v.end_t = self._t
        self._visits, self._ended, self._born, self._watched = {}, [], {}, {}
        return sorted(out, key=lambda v: v.track_id)

    def held(self, track_id: int) -> bool:
        """Whether the track's visit ended but is held as a handover donor (its `zone_left` not reported yet)."""
        return any(v.track_id == track_id for v in self._ended)

    def _new_track(self, v: Visit) -> tuple | None:
        """The `_born` entry of v's track when the tracker started it within handover_s of v's streak, else None
        (an older track that walked here, e.g. a queue moving up, never takes a visit over)."""
        b = self._born.get(v.track_id)
        return b if b is not None and b[0] >= v.streak_t - self.handover_s else None

    def _watch(self, v: Visit, t: float) -> bool:
        """Hold v's entry while its new track is younger than HANDOVER_WATCH_S and a donor stood where it is; the
        donor's exit waits as long (it ends or is taken over when v enters)."""
        self._watched.pop(v.track_id, None)
        if self.handover_s <= 0 or (b := self._new_track(v)) is None or t - b[0] >= HANDOVER_WATCH_S:
            return False
        donor = self._donor(v, {}, b)
        if donor is not None and donor.end_t is None:
            self._watched[v.track_id] = donor.track_id
        return donor is not None

    def _donor(self, v: Visit, pts: dict[int, np.ndarray], born: tuple) -> Visit | None:
        """The visit v may continue: a track's that stood (HANDOVER_STOOD_S) where v's track started and is gone
        or has moved away (its current anchor in pts), the nearest such."""
        best, best_d = None, np.inf
        for u in [*self._visits.values(), *self._ended]:
            if u.track_id == v.track_id or not u.member and u.end_t is None or u.continues == v.track_id:
                continue  # the same id coming back starts a new visit; candidates are no donors
            near = [(ts, float(np.hypot(*(p - v.first_point))))
                    for ts, p, h in u.trail if v.streak_t - self.handover_s <= ts <= v.streak_t and
                    h > 0 and np.hypot(*(p - v.first_point)) <= self.handover_dist * h]
            if not near or near[-1][0] - near[0][0] < HANDOVER_STOOD_S:  # passed by, did not stand there
                continue
            if np.hypot(*(born[1] - v.first_point)) > self.handover_dist * u.trail[-1][2]:
                continue  # the new track came from elsewhere
            now = pts.get(u.track_id)
            h = u.trail[-1][2]
            gone = u.end_t is not None or now is None or np.hypot(*(now - v.first_point)) > self.handover_dist * h
            d = min(d for _, d in near)
            if gone and d < best_d:
                best, best_d = u, d
        return best

    def _handover(self, v: Visit, t: float, t_wall: float | None, pts: dict[int, np.ndarray]) -> Visit | None:
        """Let the new visit v continue the visit of a track that stood where v appeared (see the class doc).
        Returns the old id's fresh visit when it is inside elsewhere (it is entered now), else None."""
        if (born := self._new_track(v)) is None:
            return None
        best = self._donor(v, pts, born)
        if best is None or _moving(born[2]):  # walking past where someone stood: not that person found again
            return None
        v.enter_t, v.enter_t_wall, v.continues = best.enter_t, best.enter_t_wall, best.track_id
        self.handovers.append((best.track_id, v.track_id))
        if best.end_t is not None:  # held after it ended: taken over, never reported as left
            self._ended.remove(best)
        elif best.out_t is None:  # the old id is inside on someone else now: a fresh visit for it
            best.enter_t, best.enter_t_wall, best.continues = t, t_wall, None
            best.trail.clear()
            return best
        else:  # gone, or outside in its exit grace: it ends without a visit of its own (v continues it)
            del self._visits[best.track_id]
        return None

    def update(self, detections: Detections, t: float, t_wall: float | None = None) -> list[Event]:
        """Advance to one frame; returns zone_left events, then zone_entered ones (none when `events` is false): a
        visit that ended is reported before the same id's next one."""
        entered, left = self.step(detections, t, t_wall)
        if not self.events:
            return []
        return [self._left_event(v, t, t_wall) for v in left] + [
            make_event("zone_entered", {"zone": self.name, "track_id": v.track_id, "enter_t": r3(v.enter_t),
                                        "enter_t_wall": v.enter_t_wall,
                                        **({"continues": v.continues} if v.continues is not None else {})},
                       t, t_wall, self.source)
            for v in entered]

    def flush(self, t: float, t_wall: float | None = None) -> list[Event]:
        """At the end of the stream: every visit ends, and `zone_left` reports it (in track id order): one in its exit
        grace at its exit time, one still inside at the last frame, and one held as a handover donor as it ended.
        The zone is empty afterwards, so a second flush reports nothing."""
        out = [v for v in self._visits.values() if v.member] + self._ended
        for v in out:
            if v.out_t is None:
                v.out_t, v.out_t_wall = (self._t, self._t_wall) if self._t is not None else (t, t_wall)
        self._visits, self._ended, self._watched = {}, [], {}
        out.sort(key=lambda v: v.track_id)
        return [self._left_event(v, t, t_wall) for v in out] if self.events else []

    def _left_event(self, v: Visit, t: float, t_wall: float | None) -> Event:
        return make_event("zone_left", {"zone": self.name, "track_id": v.track_id, "enter_t": r3(v.enter_t),
                                        "enter_t_wall": v.enter_t_wall, "exit_t": r3(v.out_t),
                                        "exit_t_wall": v.out_t_wall, "dwell_s": r3(v.out_t - v.enter_t)},
                          t, t_wall, self.source)


def _on_edges(points: np.ndarray, polygon: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """(N,) bool: which (N, 2) points lie on an edge of the polygon (within `tol` px)."""
    a, b = polygon[None, :, :], np.roll(polygon, -1, 0)[None, :, :]
    ab, ap = b - a, points[:, None, :] - a
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.clip((ap * ab).sum(-1) / (ab * ab).sum(-1), 0.0, 1.0)
    u = np.nan_to_num(u, nan=0.0)  # a repeated vertex: its distance to that vertex
    d = np.hypot(*(ap - u[..., None] * ab).transpose(2, 0, 1))
    return (d <= tol).any(1) & np.isfinite(points).all(1)


def _moving(seen: list[tuple[float, np.ndarray, float]]) -> bool:
    """Whether a track's box top, seen as (t, top, height) samples, moved faster than HANDOVER_STILL box heights
    per second (least-squares slope; fewer than 3 samples: not known to move)."""
    if len(seen) < 3 or seen[-1][0] <= seen[0][0]:
        return False
    ts, tops = np.array([x[0] for x in seen]), np.array([x[1] for x in seen])
    vel = [np.polyfit(ts, tops[:, k], 1)[0] for k in (0, 1)]
    return float(np.hypot(*vel)) > HANDOVER_STILL * float(np.median([x[2] for x in seen]))


def _tops(detections: Detections) -> dict[int, tuple[np.ndarray, float]]:
    """Track id -> (box top centre, box height px) of every confirmed track, first row per id."""
    ids = detections.require_tracked()
    out: dict[int, tuple[np.ndarray, float]] = {}
    for tid, box in zip(ids.tolist(), np.asarray(detections.xyxy, np.float64)):
        if tid >= 0 and int(tid) not in out:
            out[int(tid)] = (np.array([(box[0] + box[2]) / 2, box[1]]), float(box[3] - box[1]))
    return out
