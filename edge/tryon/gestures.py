"""Hand gestures that drive the mirror (`[tryon.gestures]`, docs/TRYON.md "Gestures").

`GestureRecognizer.update(t, hands, image_hw, body)` turns the hand landmarks of one frame into gesture events:

* `swipe_left` / `swipe_right`: the palm centre makes one sideways stroke relative to the shoulders (speed above
  `start_speed`, then below `end_speed`: hysteresis), far enough, flat enough, short enough, with an open hand at
  its start, while the other hand did not move the other way (arms crossing). Directions are those of the
  *displayed* picture: with `mirror_view` (the picture is flipped) a hand moving to the shopper's right moves right
  on the screen and is a `swipe_right`; on the camera image it moves left.
* `point`: index finger extended, the other three curled, the fingertip held over a swatch rect (fractions of the
  displayed picture) for `point.hold_ms`; fires once per hold.
* `palm`: all four fingers extended, hand upright, palm centre still (below `palm.still_speed`) for
  `palm.hold_ms`; fires once per hold.

After any event nothing fires for `cooldown_s` (the return stroke of a swipe is no swipe). Distances are in
shoulder widths (the pose's shoulders; without them, four wrist-to-middle-knuckle lengths), so a shopper close to
or far from the mirror swipes the same. `MirrorGestures` runs the hand stage for the mirror (only while the
shopper is in the zone, within the frame budget) and hands each event to the mirror's actions.
"""
from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np

from edge.hands.types import Hand
from edge.tryon.config import GesturesSection

if TYPE_CHECKING:
    from edge.core.frames import Frame
    from edge.hands.pipeline import HandsStage
    from edge.hands.types import HandsResult
    from edge.pose.types import PersonPose, PoseResult

log = logging.getLogger(__name__)

PALM = (0, 5, 9, 13, 17)  # wrist + the four knuckles: the palm centre ignores what the fingers do
FINGERS = ((5, 6, 7, 8), (9, 10, 11, 12), (13, 14, 15, 16), (17, 18, 19, 20))  # index, middle, ring, pinky
# finger extension: fingertip-to-wrist / knuckle-to-wrist distance (3D). Real hands of the package photos (hand
# model output): straight fingers 1.37-1.74, fingers curled round cards or into a fist 0.72-1.14
EXTENDED, CURLED = 1.3, 1.2
UPRIGHT_DEG = 55.0  # open palm: wrist → middle knuckle within this of straight up
POINT_MAX_DEG = 115.0  # pointing: the index not pointing down
SHOULDERS = (11, 12)
VEL_WINDOW_S = 0.1  # swipe speed: slope over this window
# a stroke while the other hand moved the other way by this fraction of swipe.min_distance is a two-handed movement
# (arms crossing or opening, both hands at the clothes), no swipe
OPPOSED = 0.5
STILL_WINDOW_S = 0.3  # open palm: still over this window


@dataclass(frozen=True)
class HandShape:
    """What a hand's fingers do: extension per finger (index, middle, ring, pinky), >= 1.3 straight, <= 1.2 curled."""

    reach: tuple[float, float, float, float]
    up_deg: float  # angle of wrist → middle knuckle from image up
    index_deg: float  # angle of index knuckle → tip from image up

    @property
    def open(self) -> bool:
        return all(r >= EXTENDED for r in self.reach)

    @property
    def pointing(self) -> bool:
        return self.reach[0] >= EXTENDED and all(r <= CURLED for r in self.reach[1:])


def _angle_from_up(v: np.ndarray) -> float:
    return math.degrees(math.atan2(abs(float(v[0])), -float(v[1])))


def hand_shape(hand: Hand) -> HandShape:
    """Finger extension from the world landmarks (metric 3D: no foreshortening), else the image landmarks."""
    pts = hand.world if hand.world is not None and np.isfinite(hand.world).all() else hand.landmarks[:, :2]
    reach = [float(np.linalg.norm(pts[f[3]] - pts[0]) / max(np.linalg.norm(pts[f[0]] - pts[0]), 1e-9))
             for f in FINGERS]
    xy = hand.landmarks[:, :2]
    return HandShape(tuple(reach), _angle_from_up(xy[9] - xy[0]), _angle_from_up(xy[8] - xy[5]))


@dataclass(frozen=True)
class BodyRef:
    """Where the shopper is: shoulder centre (image px) and shoulder width (px), the unit of gesture distances."""

    cx: float
    cy: float
    scale: float

    @classmethod
    def from_person(cls, person: PersonPose, min_visibility: float = 0.5) -> BodyRef | None:
        s = person.landmarks[list(SHOULDERS)]
        if float(s[:, 3].min()) < min_visibility:
            return None
        scale = float(np.hypot(*(s[0, :2] - s[1, :2])))
        return cls(float(s[:, 0].mean()), float(s[:, 1].mean()), scale) if scale > 4 else None


@dataclass
class GestureEvent:
    kind: str  # "swipe_left" | "swipe_right" | "point" | "palm"
    t: float  # stream time of the frame it fired on
    t_start: float  # when the stroke / hold began
    key: str  # the hand ("left", "right", "palm0")
    value: str | int | None = None  # point: the swatch's colour
    detail: dict = field(default_factory=dict)


class _Hold:
    """A target held for hold_s (short losses up to grace_s forgiven); fires once per hold."""

    def __init__(self, hold_s: float, grace_s: float):
        self.hold_s, self.grace_s = hold_s, grace_s
        self.target = None
        self.since = self.last = 0.0
        self.latched = False

    def step(self, t: float, target, quiet: bool, broken: bool = False) -> bool:
        """target: what is held now (None: nothing seen); broken: the hold was visibly given up (the hand moved
        or the pointer left the swatch): no grace."""
        if broken:
            self.target, self.latched = None, False
            return False
        if target is None:
            if self.target is not None and t - self.last > self.grace_s:
                self.target, self.latched = None, False
            return False
        if target != self.target:
            self.target, self.since, self.latched = target, t, False
        self.last = t
        if self.latched or quiet or t - self.since < self.hold_s:
            return False
        self.latched = True
        return True

    def progress(self, t: float) -> float:
        if self.target is None or self.latched:
            return 0.0
        return min(1.0, (t - self.since) / self.hold_s)

    def restart(self, t: float) -> None:
        self.since = t


class _Track:
    """One hand's recent palm positions (body units, display x), their smoothed velocities and gesture state."""

    def __init__(self, cfg: GesturesSection, horizon_s: float):
        self.samples: deque[tuple[float, float, float]] = deque()
        self.vx: deque[tuple[float, float]] = deque()  # (t, sideways velocity over VEL_WINDOW_S)
        self.horizon_s = horizon_s
        self.stroke: tuple[float, float, float, int] | None = None  # (t0, x0, y0, direction)
        self.point = _Hold(cfg.point.hold_ms / 1e3, cfg.point.grace_ms / 1e3)
        self.palm = _Hold(cfg.palm.hold_ms / 1e3, cfg.palm.grace_ms / 1e3)
        self.last_seen = 0.0
        self.open_recent: deque[bool] = deque(maxlen=3)  # shape of the last samples (a stroke starts open)

    def add(self, t: float, x: float, y: float) -> None:
        self.samples.append((t, x, y))
        while self.samples and self.samples[0][0] < t - self.horizon_s:
            self.samples.popleft()
        self.vx.append((t, self.velocity(VEL_WINDOW_S)[0]))
        while self.vx and self.vx[0][0] < t - self.horizon_s:
            self.vx.popleft()

    def velocity(self, window: float) -> tuple[float, float]:
        """Least-squares slope of the palm path over the last `window` seconds (at least the last 2 samples):
        landmark jitter of a tracked hand (~5 px a frame) averages out."""
        t_end = self.samples[-1][0]
        pts = [s for s in self.samples if s[0] >= t_end - window - 1e-6]
        if len(pts) < 2:
            pts = list(self.samples)[-2:]
        if len(pts) < 2:
            return 0.0, 0.0
        a = np.asarray(pts)
        dt = a[:, 0] - a[:, 0].mean()
        den = float((dt * dt).sum())
        if den <= 0:
            return 0.0, 0.0
        return (float((dt * (a[:, 1] - a[:, 1].mean())).sum() / den),
                float((dt * (a[:, 2] - a[:, 2].mean())).sum() / den))

    def spread(self, window: float) -> float:
        """How far the palm centre ranged (max - min, x or y) over the last `window` seconds."""
        t_end = self.samples[-1][0]
        a = np.asarray([s[1:] for s in self.samples if s[0] >= t_end - window - 1e-6])
        return float((a.max(0) - a.min(0)).max())

    def rest_before(self, t_from: float, end_speed: float) -> tuple[float, float, float]:
        """The palm position when the hand was last slow (sideways speed below end_speed) before t_from: where the
        stroke started (the oldest sample if it never was)."""
        t0 = self.samples[0][0]
        for t, v in reversed(self.vx):
            if t <= t_from and abs(v) < end_speed:
                t0 = t
                break
        return next(s for s in self.samples if s[0] >= t0)


FULL_VIEW = (0.0, 0.0, 1.0, 1.0)
# yield_to_picture: hands skip one more frame per ADAPT_UP_S while the mirror's strain (frames dropped, or motion-to-
# photon over budget, as a fraction) is over DROP_HIGH, one fewer per ADAPT_DOWN_S of strain under DROP_LOW; every
# MAX_EVERY-th frame at most (and min_rate_hz)
DROP_HIGH, DROP_LOW = 0.03, 0.01
ADAPT_UP_S, ADAPT_DOWN_S = 1.0, 3.0
MAX_EVERY = 6


class GestureRecognizer:
    """Hand landmarks + time → gesture events. One per stream; not thread-safe. See the module doc."""

    def __init__(self, cfg: GesturesSection, mirror: bool = True):
        self.cfg, self.mirror = cfg, mirror
        self.tracks: dict[str, _Track] = {}
        self.quiet_until = -math.inf
        self._horizon = cfg.swipe.max_duration_s + 0.5
        self.view = FULL_VIEW  # the part of the displayed picture the page shows (swatch_space "screen")

    def reset(self) -> None:
        """Forget the hands and the cooldown (the shopper left: the next one starts afresh)."""
        self.tracks.clear()
        self.quiet_until = -math.inf

    def set_view(self, view: tuple[float, float, float, float] | None) -> None:
        """[x0, y0, x1, y1] of the displayed picture that the mirror page shows its swatches in (None: all)."""
        self.view = FULL_VIEW if view is None else tuple(float(v) for v in view)

    def swatch_rects(self) -> list[tuple[float, float, float, float]]:
        """The swatch rects as fractions of the displayed picture (with swatch_space "screen", the configured
        rects placed inside the page's view)."""
        if self.cfg.swatch_space == "picture":
            return [tuple(s.rect) for s in self.cfg.swatches]
        vx0, vy0, vx1, vy1 = self.view
        w, h = vx1 - vx0, vy1 - vy0
        return [(vx0 + x0 * w, vy0 + y0 * h, vx0 + x1 * w, vy0 + y1 * h) for x0, y0, x1, y1 in
                (s.rect for s in self.cfg.swatches)]

    def _body_units(self, hand: Hand, body: BodyRef | None) -> tuple[float, float]:
        """Palm centre relative to the shoulder centre, in shoulder widths; x as displayed (mirror flip)."""
        c = hand.landmarks[list(PALM), :2].mean(0)
        if body is None:  # no shoulders: four wrist-to-middle-knuckle lengths ~ one shoulder width, image origin
            scale = 4 * float(np.hypot(*(hand.landmarks[9, :2] - hand.landmarks[0, :2])))
            cx = cy = 0.0
        else:
            scale, cx, cy = body.scale, body.cx, body.cy
        x, y = (c[0] - cx) / max(scale, 1e-6), (c[1] - cy) / max(scale, 1e-6)
        return (-x if self.mirror else x), y

    def pointer(self, hand: Hand, hw: tuple[int, int]) -> tuple[float, float]:
        """Index fingertip as fractions of the displayed picture."""
        h, w = hw
        u, v = hand.landmarks[8, 0] / w, hand.landmarks[8, 1] / h
        return (1.0 - u if self.mirror else u), v

    def swatch_at(self, u: float, v: float) -> int | None:
        for i, (x0, y0, x1, y1) in enumerate(self.swatch_rects()):
            if x0 <= u <= x1 and y0 <= v <= y1:
                return i
        return None

    def update(self, t: float, hands: list[Hand], image_hw: tuple[int, int], body: BodyRef | None = None
               ) -> list[GestureEvent]:
        """Events fired by this frame's hands (t: stream time, seconds)."""
        events: list[GestureEvent] = []
        seen = set()
        for hand in hands:
            key = hand.key or "hand"
            seen.add(key)
            tr = self.tracks.get(key)
            if tr is None or t - tr.last_seen > max(self.cfg.point.grace_ms, self.cfg.palm.grace_ms) / 1e3 + 0.3:
                tr = self.tracks[key] = _Track(self.cfg, self._horizon)
            tr.last_seen = t
            shape = hand_shape(hand)
            x, y = self._body_units(hand, body)
            tr.add(t, x, y)
            tr.open_recent.append(shape.open)
            ev = self._swipe(tr, t, key, lost=False)
            quiet = t < self.quiet_until or ev is not None  # holds count on, but do not fire
            u, v = self.pointer(hand, image_hw)
            pointing = shape.pointing and shape.index_deg <= POINT_MAX_DEG
            region = self.swatch_at(u, v) if pointing else None
            if tr.point.step(t, region, quiet, broken=pointing and region is None):
                ev = GestureEvent("point", t, tr.point.since, key, self.cfg.swatches[region].colour,
                                  {"swatch": region, "pointer": [round(u, 3), round(v, 3)]})
            vx, vy = tr.velocity(STILL_WINDOW_S)
            palm = shape.open and shape.up_deg <= UPRIGHT_DEG
            moving = (math.hypot(vx, vy) >= self.cfg.palm.still_speed
                      or tr.spread(STILL_WINDOW_S) >= self.cfg.palm.still_range)
            if tr.palm.step(t, True if palm and not moving else None, quiet or ev is not None,
                            broken=palm and moving) and ev is None:
                ev = GestureEvent("palm", t, tr.palm.since, key)
            if ev is not None:
                events.append(ev)
                self._fired(t)
        for key in [k for k in self.tracks if k not in seen]:
            tr = self.tracks[key]
            ev = self._swipe(tr, t, key, lost=True) if tr.stroke is not None else None
            tr.point.step(t, None, True)
            tr.palm.step(t, None, True)
            if ev is not None:
                events.append(ev)
                self._fired(t)
            if t - tr.last_seen > self._horizon:
                del self.tracks[key]
        return events

    def _fired(self, t: float) -> None:
        self.quiet_until = t + self.cfg.cooldown_s
        for tr in self.tracks.values():  # one gesture does not complete another
            tr.point.restart(t)
            tr.palm.restart(t)
            tr.stroke = None

    def _swipe(self, tr: _Track, t: float, key: str, lost: bool) -> GestureEvent | None:
        c = self.cfg.swipe
        vx = 0.0 if lost else tr.vx[-1][1]
        if tr.stroke is None:
            if not lost and abs(vx) >= c.start_speed and (not c.open_hand or any(tr.open_recent)):
                t0, x0, y0 = tr.rest_before(t, c.end_speed)
                tr.stroke = (t0, x0, y0, 1 if vx > 0 else -1)
            return None
        t0, x0, y0, d = tr.stroke
        if not lost and abs(vx) >= c.end_speed and (vx > 0) == (d > 0) and t - t0 <= c.max_duration_s:
            return None
        tr.stroke = None
        _, x1, y1 = tr.samples[-1]
        dx, dy = x1 - x0, y1 - y0
        dur = tr.samples[-1][0] - t0
        ok = (dx * d >= c.min_distance and abs(dy) <= c.max_vertical * abs(dx)
              and c.min_duration_s <= dur <= c.max_duration_s)
        if not ok or t0 < self.quiet_until:  # a stroke begun in the cooldown (the return of a swipe) is none
            return None
        if self._opposed(tr, t0, tr.samples[-1][0], d):
            log.debug("%s hand: stroke of %.2f shoulder widths with the other hand moving the other way: no swipe",
                      key, abs(dx))
            return None
        return GestureEvent("swipe_right" if d > 0 else "swipe_left", t, t0, key,
                            detail={"distance": round(float(abs(dx)), 3), "duration_s": round(float(dur), 3)})

    def _opposed(self, tr: _Track, t0: float, t1: float, d: int) -> bool:
        """Another hand moved sideways against direction d between t0 and t1 (by OPPOSED x min_distance)."""
        for other in self.tracks.values():
            xs = [x for t, x, _ in other.samples if t0 - 1e-6 <= t <= t1 + 1e-6] if other is not tr else []
            if len(xs) >= 2 and (xs[-1] - xs[0]) * d <= -OPPOSED * self.cfg.swipe.min_distance:
                return True
        return False

    def holds(self, t: float) -> dict:
        """Progress of the holds in progress (for the page): {"point": {...}} / {"palm": {...}}."""
        out: dict = {}
        for tr in self.tracks.values():
            if (p := tr.point.progress(t)) > 0 and p >= out.get("point", {}).get("progress", 0):
                out["point"] = {"progress": round(p, 2), "swatch": tr.point.target}
            if (p := tr.palm.progress(t)) > 0 and p >= out.get("palm", {}).get("progress", 0):
                out["palm"] = {"progress": round(p, 2)}
        return out


@dataclass(frozen=True, slots=True)
class _Job:
    frame: Frame
    person: PersonPose
    rgb: np.ndarray


class MirrorGestures:
    """The mirror's hands step: runs the hand stage on the shopper in the zone within the frame budget, feeds the
    recognizer and hands each gesture to `apply(action, value, source)` (the mirror's MirrorActions.apply; source
    "swipe", "point" or "palm": the page shows its icon)."""

    def __init__(self, cfg: GesturesSection, hands: HandsStage,
                 apply: Callable[[str, object, str], object] | None = None, mirror: bool = True):
        self.cfg, self.hands, self.apply = cfg, hands, apply
        self.recognizer = GestureRecognizer(cfg, mirror)
        self.mirror = mirror
        self.hands_ms: deque[float] = deque(maxlen=300)
        self.frames_seen = self.frames_run = self.frames_skipped_budget = 0
        self.events: deque[GestureEvent] = deque(maxlen=50)
        self.last: HandsResult | None = None  # the hands of the last frame they ran on
        self.reason = "no shopper"
        self._t_last_run = -math.inf
        self._t = 0.0
        self._in_zone = False
        self._t_left: float | None = None  # stream time the shopper was last seen leaving the zone
        self._person_id: int | None = None  # pose track id of the shopper whose hands are tracked
        self._since_run = 0
        self.every = cfg.every_n  # hands on every `every`-th pose frame now (yield_to_picture raises it)
        self.strain: Callable[[], float] | None = None  # how far the mirror is from keeping up (0 = it is)
        self._t_step = -math.inf  # when `every` last changed (or the mirror last dropped frames)

    @classmethod
    def open(cls, cfg: GesturesSection, models, apply=None, mirror: bool = True, zoo=None) -> MirrorGestures:
        from edge.hands.pipeline import HandsStage

        return cls(cfg, HandsStage.from_config(cfg.hands, models, zoo), apply, mirror)

    def in_zone(self, person: PersonPose | None, hw: tuple[int, int]) -> bool:
        """The shopper's shoulder centre inside `zone` (displayed picture) and shoulders wide enough."""
        body = BodyRef.from_person(person) if person is not None else None
        if body is None:
            return False
        h, w = hw
        u, v = body.cx / w, body.cy / h
        u = 1.0 - u if self.mirror else u
        x0, y0, x1, y1 = self.cfg.zone
        return x0 <= u <= x1 and y0 <= v <= y1 and body.scale / w >= self.cfg.min_shoulder_width

    def _adapt(self, t: float) -> None:
        """yield_to_picture: one frame more between hand frames per ADAPT_UP_S while the mirror is strained (drops
        frames or is late), one fewer per ADAPT_DOWN_S while it keeps up."""
        if not self.cfg.yield_to_picture or self.strain is None:
            return
        d = self.strain()
        if d > DROP_HIGH:
            if self.every < MAX_EVERY and t - self._t_step >= ADAPT_UP_S:
                self.every += 1
                self._t_step = t
                log.debug("hands yield to the picture (strain %.2f): every %d", d, self.every)
        elif d >= DROP_LOW:
            self._t_step = t  # not keeping up well enough to come back yet
        elif self.every > self.cfg.every_n and t - self._t_step >= ADAPT_DOWN_S:
            self.every -= 1
            self._t_step = t

    def _due(self, t: float, pose_ms: float) -> bool:
        """every `every`-th frame (every_n, raised while the mirror is strained), then the frame budget (pose + the
        usual hands time), with min_rate_hz as the floor."""
        self._since_run += 1
        self._adapt(t)
        floor = self.cfg.min_rate_hz > 0 and t - self._t_last_run >= 1.0 / self.cfg.min_rate_hz
        if self._since_run < self.every:
            return self.every > self.cfg.every_n and floor  # yielding, but never under min_rate_hz
        usual = float(np.median(self.hands_ms)) if self.hands_ms else 0.0
        if self.cfg.budget_ms > 0 and pose_ms + usual > self.cfg.budget_ms:
            if not floor:
                self.frames_skipped_budget += 1
                self.reason = "over frame budget"
                return False
        return True

    def prepare(self, frame: Frame, pose_result: PoseResult | None, person: PersonPose | None) -> _Job | None:
        """Decide on the pose thread whether hands run on this frame (shopper in the zone, every_n, budget) and
        take an RGB copy of the camera image (the composite thread draws on frame.image later). `person`: the
        shopper the mirror chose (TryOnPipeline.shopper; None: nobody)."""
        self.frames_seen += 1
        self._t = frame.t
        if person is not None and person.track_id != self._person_id:
            if self._person_id is not None:  # someone else is the shopper now: their hands start afresh (the
                self.hands.reset()  # tracks would jump to them, relative to other shoulders: a fake swipe)
                self.recognizer.reset()
            self._person_id = person.track_id
        if not self.in_zone(person, frame.shape):
            if self._in_zone:
                self._t_left = frame.t
            # a pose frame without the shopper (the pose missed them, or failed) is forgiven like a lost hand:
            # hands and holds are forgotten only once the shopper has been away longer than the holds' grace
            grace = max(self.cfg.point.grace_ms, self.cfg.palm.grace_ms) / 1e3
            if self._t_left is not None and frame.t - self._t_left > grace:
                self.hands.reset()
                self.recognizer.reset()
                self._t_left = None
            self._in_zone, self.reason = False, "no shopper in the zone"
            return None
        self._in_zone, self._t_left = True, None
        pose_ms = pose_result.timings_ms.get("pose", 0.0) if pose_result is not None else 0.0
        if not self._due(frame.t, pose_ms):
            return None
        self._since_run, self._t_last_run = 0, frame.t
        return _Job(frame, person, cv2.cvtColor(frame.image, cv2.COLOR_BGR2RGB))

    def run(self, job: _Job) -> list[GestureEvent]:
        """Hands → recognizer → actions for a prepared frame. Returns the events fired."""
        t0 = time.perf_counter()
        frame, person = job.frame, job.person
        try:
            res = self.last = self.hands.process(job.rgb, person.landmarks, frame.seq, frame.t)
            events = self.recognizer.update(frame.t, res.hands, frame.shape, BodyRef.from_person(person))
        except Exception:  # noqa: BLE001 - a failing hand step must not stop the mirror's pose loop
            log.exception("hands failed on frame %d", frame.seq)
            return []
        ms = (time.perf_counter() - t0) * 1e3
        self.hands_ms.append(ms)
        self.frames_run += 1
        self.reason = "running"
        frame.meta["hands_ms"] = ms
        for e in events:
            self.events.append(e)
            self._dispatch(e)
        return events

    def process(self, frame: Frame, pose_result: PoseResult | None, person: PersonPose | None
                ) -> list[GestureEvent]:
        """prepare + run on the calling thread."""
        job = self.prepare(frame, pose_result, person)
        return self.run(job) if job is not None else []

    def action_for(self, e: GestureEvent) -> tuple[str, object, str]:
        """(MirrorActions action, value, source) of a gesture event."""
        if e.kind == "swipe_left":
            return self.cfg.swipe_left, None, "swipe"
        if e.kind == "swipe_right":
            return self.cfg.swipe_right, None, "swipe"
        if e.kind == "point":
            return "colour", e.value, "point"
        return "save_look", None, "palm"

    def _dispatch(self, e: GestureEvent) -> None:
        action, value, source = self.action_for(e)
        log.info("gesture %s (%s hand) -> %s %s", e.kind, e.key, action, "" if value is None else value)
        if self.apply is None:
            log.warning("gesture %s: the mirror has no actions to call", e.kind)
            return
        try:
            self.apply(action, value, source)
        except Exception:  # noqa: BLE001 - a failing action must not stop the mirror's pose loop
            log.exception("gesture action %s failed", action)

    def state(self) -> dict:
        """For the page: whether hands ran lately and the last frame's reason ("running", "over frame budget",
        "no shopper in the zone"), the swatch rects, holds in progress, the last gesture."""
        last = self.events[-1] if self.events else None
        usual = float(np.median(self.hands_ms)) if self.hands_ms else None
        window = max(1.0, 2.0 / self.cfg.min_rate_hz) if self.cfg.min_rate_hz > 0 else 1.0
        ran_recently = self._in_zone and self._t - self._t_last_run <= window
        return {"running": ran_recently, "reason": self.reason,
                "swatches": [{"colour": s.colour, "rect": [round(v, 4) for v in r]}
                             for s, r in zip(self.cfg.swatches, self.recognizer.swatch_rects())],
                "holds": self.recognizer.holds(self._t) if self._in_zone else {},
                "last": None if last is None else {"kind": last.kind, "t": round(last.t, 3), "value": last.value},
                "hands_ms_p50": None if usual is None else round(usual, 1), "hands_every": self.every}

    def set_view(self, view: tuple[float, float, float, float] | None) -> None:
        """What the mirror page shows of the picture (see GestureRecognizer.set_view); any thread."""
        self.recognizer.set_view(view)

    def close(self) -> None:
        self.hands.close()
