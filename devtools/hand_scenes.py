"""Hand scenes for the gesture tests and `edge bench gestures`: real hands of the package photos, moved by scripts.

Templates: the hands the real palm detector + hand landmark model (zoo `*_full`, FP32) find in t1.jpg and
zidane.jpg, with their landmarks (image px and world metres) and a cut-out of the photo (palm polygon + thick finger
bones, feathered). Each is classified by the recognizer's own shape test: `open` (t1: the flat hand on the table),
`point` (zidane: pointing), `relaxed` (t1: hands holding cards). Two uses:

* landmark level: `Template.hand(pose)` → an edge.hands.types.Hand whose landmarks are the real ones moved
  rigidly (plus noise): the recognizer's inputs without running the models (fast: thousands of sequences);
* image level: `Template.paste(frame, pose)` → the cut-out drawn where that hand is, for the real models end to end.

Scripts (`gesture_script`, `normal_script`) give, per frame time, the hands to show (`HandPose`: template, key,
centre, size, angle), the body reference (shoulder centre and width) and the truth: the gestures with their start
and end times (end = the stroke's end, or the moment the hold has lasted its hold time). Camera image coordinates:
with the mirror flipped for display, display x = 1 - camera x.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge.hands.roi import roi_from_landmarks
from edge.hands.types import Hand
from edge.pose.types import Roi
from edge.tryon.gestures import BodyRef, hand_shape

W, H = 640, 480
PALM_POLY = (0, 1, 2, 5, 9, 13, 17)
BONES = ((1, 2), (2, 3), (3, 4), (5, 6), (6, 7), (7, 8), (9, 10), (10, 11), (11, 12), (13, 14), (14, 15),
         (15, 16), (17, 18), (18, 19), (19, 20), (0, 5), (0, 17), (5, 9), (9, 13), (13, 17))
PHOTOS = ("t1", "zidane")


@dataclass
class Template:
    """One real hand: landmarks in a canonical frame (palm centre at 0, wrist → middle knuckle pointing up, one
    "palm length" = 1: its tracking ROI / 2.95) and its cut-out image in the same frame."""

    kind: str  # open | point | relaxed
    source: str  # photo and position
    lm: np.ndarray  # (21, 3) canonical: x, y in palm lengths, z (relative) in palm lengths
    world: np.ndarray  # (21, 3) metres, rotated like lm
    rgba: np.ndarray  # cut-out, canonical frame: palm centre at the image centre, `px` pixels per palm length
    px: float

    def _place(self, p: HandPose) -> tuple[np.ndarray, np.ndarray]:
        """2x2 linear part and translation of canonical → image px for pose p (mirrored for the other hand)."""
        c, s = math.cos(p.angle), math.sin(p.angle)
        a = np.array([[c, -s], [s, c]]) * p.size
        if p.flip:
            a = a @ np.diag([-1.0, 1.0])
        return a, np.array([p.cx, p.cy])

    def landmarks(self, p: HandPose) -> np.ndarray:
        a, t = self._place(p)
        out = np.empty((21, 3))
        out[:, :2] = self.lm[:, :2] @ a.T + t
        out[:, 2] = self.lm[:, 2] * p.size
        return out

    def hand(self, p: HandPose, rng: np.random.Generator | None = None, noise_px: float = 0.0,
             noise_m: float = 0.0) -> Hand:
        """The Hand the models would report for this template at pose p (landmark jitter noise_px, world noise_m)."""
        lm = self.landmarks(p)
        c, s = math.cos(p.angle), math.sin(p.angle)
        w = self.world.copy()
        if p.flip:
            w[:, 0] = -w[:, 0]
        world = np.stack([c * w[:, 0] - s * w[:, 1], s * w[:, 0] + c * w[:, 1], w[:, 2]], 1)
        if rng is not None:
            lm[:, :2] += rng.normal(0, noise_px, (21, 2))
            world += rng.normal(0, noise_m, (21, 3))
        return Hand(lm, world, 0.97, 0.5, Roi(p.cx, p.cy, 3.5 * p.size, p.angle), key=p.key, source="script")

    def paste(self, frame: np.ndarray, p: HandPose) -> None:
        """Draw the cut-out at pose p into the BGR frame, in place."""
        a, t = self._place(p)
        k = a / self.px  # cut-out px → image px
        ch, cw = self.rgba.shape[:2]
        m = np.concatenate([k, (t - k @ np.array([cw / 2, ch / 2]))[:, None]], 1)
        h, w = frame.shape[:2]
        warped = cv2.warpAffine(self.rgba, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                                borderValue=0)
        alpha = warped[..., 3:4].astype(np.float32) / 255.0
        frame[:] = (warped[..., :3] * alpha + frame * (1 - alpha)).astype(np.uint8)


@dataclass
class HandPose:
    template: Template
    key: str  # "left" / "right": the shopper's hand
    cx: float  # palm centre, image px
    cy: float
    size: float  # palm length (wrist → middle knuckle), px
    angle: float  # radians, 0 = fingers up; positive turns clockwise on the image
    flip: bool = False  # the other hand (mirror image of the template)


def find_templates(palm_session, landmark_session) -> dict[str, list[Template]]:
    """The package photos' hands by kind, found by the real models (palm detector on every frame, 4 hands max)."""
    from calibration.photos import load_photo
    from edge.hands.config import HandsConfig
    from edge.hands.pipeline import HandsStage

    stage = HandsStage(HandsConfig(palm_detection="always", max_hands=4, palm_threshold=0.3), palm_session,
                       landmark_session)
    out: dict[str, list[Template]] = {"open": [], "point": [], "relaxed": []}
    for name in PHOTOS:
        bgr = load_photo(name)
        stage.reset()
        for h in stage.process(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), None).hands:
            if h.score < 0.8:
                continue
            shape = hand_shape(h)
            kind = "open" if shape.open else "point" if shape.pointing else "relaxed"
            out[kind].append(_template(bgr, h, kind, f"{name}@{h.landmarks[0, 0]:.0f},{h.landmarks[0, 1]:.0f}"))
    for k in out:
        out[k].sort(key=lambda t: t.source)
    return out


def _template(bgr: np.ndarray, h: Hand, kind: str, source: str) -> Template:
    xy = h.landmarks[:, :2]
    centre = xy[[0, 5, 9, 13, 17]].mean(0)
    up = xy[9] - xy[0]
    # the size unit ("palm length"): the tracking ROI / 2.95 (= wrist → middle knuckle of a hand facing the
    # camera); the 2D knuckle distance itself shrinks when the palm is foreshortened (t1's flat hand)
    length = roi_from_landmarks(xy).size / 2.95
    rot = math.atan2(up[0], -up[1])  # angle of the hand from image up (clockwise positive)
    c, s = math.cos(-rot), math.sin(-rot)
    r = np.array([[c, -s], [s, c]])
    lm = np.empty((21, 3))
    lm[:, :2] = (xy - centre) @ r.T / length
    lm[:, 2] = h.landmarks[:, 2] / length
    w = h.world
    world = np.stack([c * w[:, 0] - s * w[:, 1], s * w[:, 0] + c * w[:, 1], w[:, 2]], 1)
    # cut-out: 2.6 palm lengths each side of the centre, upright, at the photo's resolution
    px = length
    half = int(math.ceil(2.6 * px))
    m = np.array([[c, -s, 0.0], [s, c, 0.0]])
    m[:, 2] = np.array([half, half]) - m[:, :2] @ centre
    patch = cv2.warpAffine(bgr, m, (2 * half, 2 * half), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    pts = lm[:, :2] * px + half
    mask = np.zeros((2 * half, 2 * half), np.uint8)
    cv2.fillPoly(mask, [np.round(pts[list(PALM_POLY)]).astype(np.int32)], 255)
    thick = max(2, int(round(0.3 * px)))
    for i, j in BONES:
        cv2.line(mask, tuple(np.round(pts[i]).astype(int)), tuple(np.round(pts[j]).astype(int)), 255, thick)
    for i in (4, 8, 12, 16, 20):
        cv2.circle(mask, tuple(np.round(pts[i]).astype(int)), thick // 2, 255, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, 0.06 * px))
    rgba = np.dstack([patch, mask])
    return Template(kind, source, lm, world, rgba, px)


# ------------------------------------------------------------------------------------------------ scripts
@dataclass
class Truth:
    kind: str  # swipe_left | swipe_right | point | palm
    t_start: float
    t_end: float  # the stroke ends / the hold has lasted its hold time
    value: str | int | None = None


@dataclass
class Script:
    """A timed scene: `at(t)` → (hands, body). Truth: the gestures it contains (none for normal movement)."""

    name: str
    duration: float
    frames: list = field(default_factory=list)  # [(t, [HandPose], BodyRef)]
    truth: list[Truth] = field(default_factory=list)


def min_jerk(u: float) -> float:
    """0 → 1 with zero velocity and acceleration at both ends (human reaching movements)."""
    u = min(1.0, max(0.0, u))
    return u ** 3 * (10 - 15 * u + 6 * u * u)


BODY = BodyRef(W / 2, 0.40 * H, 0.30 * W)  # shoulder centre and width of a shopper ~1.2 m from the mirror


def _lerp(a, b, u):
    return a + (b - a) * u


class _Builder:
    """Keyframed hand paths in body units (x: shopper's right = display right; y: down), sampled at `fps`."""

    def __init__(self, name: str, fps: float, rng: np.random.Generator, body: BodyRef = BODY):
        self.name, self.fps, self.rng, self.body = name, fps, rng, body
        self.t = 0.0
        self.frames: list = []
        self.truth: list[Truth] = []
        self.tremor = (0.0, 0.0)

    def _pose(self, tpl: Template, key: str, x: float, y: float, size: float, angle: float, body: BodyRef
              ) -> HandPose:
        # display x (shopper's right positive) → camera px (mirror: camera x = -display x)
        tx, ty = self.tremor
        cx = body.cx - (x + tx) * body.scale
        cy = body.cy + (y + ty) * body.scale
        return HandPose(tpl, key, cx, cy, size * body.scale, angle, flip=(key == "left"))

    def move(self, tpl: Template | None, key: str, a: tuple, b: tuple, dur: float, profile=min_jerk,
             body_path=None, tremor: float = 0.0, extra=None) -> None:
        """Hand from a = (x, y, size, angle) to b over dur seconds (tpl None: no hand visible)."""
        n = max(1, int(round(dur * self.fps)))
        for i in range(n):
            t = self.t + i / self.fps
            u = profile((i + 1) / n)
            body = body_path(t) if body_path else self.body
            self.tremor = (tremor * math.sin(2 * math.pi * 1.3 * t + 0.7), tremor * math.sin(2 * math.pi * 0.9 * t))
            hands = [] if tpl is None else [self._pose(tpl, key, *(_lerp(np.array(a, float), np.array(b, float), u)),
                                                       body)]
            if extra is not None:
                hands += extra(t, body)
            self.frames.append((t, hands, body))
        self.t += n / self.fps

    def build(self) -> Script:
        return Script(self.name, self.t, self.frames, self.truth)


def swatch_target(cfg, index: int, rects=None) -> tuple[float, float]:
    """Centre of swatch `index` in body units (display x), for BODY at W x H; rects: the recognizer's swatch rects
    (GestureRecognizer.swatch_rects(), after the page's view), else the configured ones."""
    x0, y0, x1, y1 = rects[index] if rects is not None else cfg.swatches[index].rect
    u, v = (x0 + x1) / 2, (y0 + y1) / 2
    return (u * W - W / 2) / BODY.scale, (v * H - BODY.cy) / BODY.scale


def gesture_script(kind: str, tpls: dict[str, list[Template]], cfg, rng: np.random.Generator, fps: float = 30.0,
                   variant: int = 0, rects=None) -> Script:
    """One gesture performed by a shopper standing in front of the mirror (randomised speed, distance, height,
    hand, template), with the hand raised before and lowered (out of the hands' view) after."""
    b = _Builder(f"{kind}#{variant}", fps, rng)
    pick = lambda k: tpls[k][int(rng.integers(len(tpls[k])))]  # noqa: E731
    size = rng.uniform(0.28, 0.36)  # palm length / shoulder width
    b.move(None, "right", (0, 0, 0, 0), (0, 0, 0, 0), rng.uniform(0.3, 0.6))
    if kind in ("swipe_left", "swipe_right"):
        d = 1 if kind == "swipe_right" else -1
        key = "right" if rng.random() < 0.6 else "left"
        tpl = pick("open")
        dist = rng.uniform(0.75, 1.6)
        y = rng.uniform(-0.1, 0.6)
        x0 = -d * dist / 2 + rng.uniform(-0.2, 0.2)
        ang = rng.uniform(-0.5, 0.5) + (-d * 0.3)
        start = (x0, y + 0.9, size, ang)
        rest = (x0, y, size, ang)
        b.move(tpl, key, start, rest, rng.uniform(0.35, 0.6))  # raise the hand
        b.move(tpl, key, rest, rest, rng.uniform(0.1, 0.4), tremor=0.01)
        t0 = b.t
        end = (x0 + d * dist, y + rng.uniform(-0.25, 0.25) * dist, size, ang + d * 0.5)
        b.move(tpl, key, rest, end, rng.uniform(0.2, 0.55))  # the stroke
        b.truth.append(Truth(kind, t0, b.t))
        b.move(tpl, key, end, end, rng.uniform(0.15, 0.35), tremor=0.01)
        if variant % 2:  # return the hand sideways (slower), then lower it
            back = (x0, end[1], size, ang)
            b.move(pick("relaxed") if rng.random() < 0.5 else tpl, key, end, back, rng.uniform(0.6, 1.0))
            end = back
        b.move(tpl, key, end, (end[0], end[1] + 1.0, size, ang), rng.uniform(0.35, 0.6))  # lower
    elif kind == "point":
        idx = int(rng.integers(len(cfg.swatches)))
        tx, ty = swatch_target(cfg, idx, rects)
        tpl = pick("point")
        key = "right"
        ang = -rng.uniform(math.radians(50), math.radians(100))  # to the swatch column (display right), up/down
        # place the hand so that the index tip is on the swatch
        tip = tpl.lm[8, :2] * size
        c, s = math.cos(ang), math.sin(ang)
        off = np.array([c * tip[0] - s * tip[1], s * tip[0] + c * tip[1]])
        off[0] = -off[0]  # body units: display x is minus camera x
        hx, hy = tx - off[0], ty - off[1]
        hx += rng.uniform(-0.03, 0.03)
        hy += rng.uniform(-0.03, 0.03)
        b.move(tpl, key, (hx - 0.3, hy + 0.9, size, ang), (hx, hy, size, ang), rng.uniform(0.5, 0.8))
        t0 = b.t
        hold = cfg.point.hold_ms / 1e3
        b.move(tpl, key, (hx, hy, size, ang), (hx, hy, size, ang), hold + rng.uniform(0.25, 0.8), tremor=0.012)
        b.truth.append(Truth("point", t0, t0 + hold, cfg.swatches[idx].colour))
        b.move(tpl, key, (hx, hy, size, ang), (hx - 0.2, hy + 1.0, size, ang), rng.uniform(0.4, 0.6))
    elif kind == "palm":
        tpl = pick("open")
        key = "right" if rng.random() < 0.5 else "left"
        x = rng.uniform(0.4, 0.9) * (1 if key == "right" else -1)
        y = rng.uniform(-0.4, 0.2)
        ang = rng.uniform(-0.35, 0.35)
        b.move(tpl, key, (x, y + 0.9, size, ang), (x, y, size, ang), rng.uniform(0.4, 0.7))
        t0 = b.t
        hold = cfg.palm.hold_ms / 1e3
        b.move(tpl, key, (x, y, size, ang), (x, y, size, ang), hold + rng.uniform(0.25, 0.8), tremor=0.012)
        b.truth.append(Truth("palm", t0, t0 + hold))
        b.move(tpl, key, (x, y, size, ang), (x, y + 1.0, size, ang), rng.uniform(0.35, 0.6))
    else:
        raise ValueError(f"unknown gesture {kind!r}")
    b.move(None, "right", (0, 0, 0, 0), (0, 0, 0, 0), 0.5)
    return b.build()


NORMAL = ("arms_at_sides", "walk_in", "adjust_clothes", "touch_hair", "turn_around", "point_at_self", "talking")


def normal_script(kind: str, tpls: dict[str, list[Template]], rng: np.random.Generator, fps: float = 30.0,
                  seconds: float = 20.0) -> Script:
    """Normal movement in front of the mirror (no gesture meant): the hands as the hand stage would see them
    (including hands at the sides, which `raised_only` would not even look at)."""
    b = _Builder(f"normal:{kind}", fps, rng)
    relaxed = lambda: tpls["relaxed"][int(rng.integers(len(tpls["relaxed"])))]  # noqa: E731
    size = rng.uniform(0.28, 0.36)
    down = math.pi  # fingers down
    while b.t < seconds:
        if kind == "arms_at_sides":
            r, l_ = relaxed(), relaxed()
            dur = rng.uniform(2, 4)

            def both(t, body, r=r, l_=l_):
                sway = 0.04 * math.sin(2 * math.pi * 0.3 * t)
                return [b._pose(l_, "left", -0.75 + sway, 1.45, size, down + 0.1, body)]
            b.move(r, "right", (0.75, 1.45, size, down - 0.1), (0.78, 1.47, size, down - 0.1), dur, extra=both)
        elif kind == "walk_in":
            x_from, x_to = (-1.6, 0.0) if rng.random() < 0.5 else (1.6, 0.0)
            dur = rng.uniform(2.0, 3.5)
            t_start = b.t
            r = relaxed()

            def body_path(t, t_start=t_start, dur=dur, x_from=x_from, x_to=x_to):
                u = min(1.0, (t - t_start) / dur)
                sc = _lerp(0.6, 1.0, u) * BODY.scale
                return BodyRef(W / 2 + _lerp(x_from, x_to, u) * W / 2, BODY.cy + _lerp(-0.05, 0, u) * H, sc)

            def swing(t, body):
                ph = 2 * math.pi * 1.0 * t
                return [b._pose(r, "left", -0.72 + 0.08 * math.sin(ph), 1.4 - 0.1 * abs(math.sin(ph)), size,
                                down + 0.3 * math.sin(ph), body)]
            b.move(r, "right", (0.72, 1.4, size, down), (0.72, 1.4, size, down), dur, profile=lambda u: u,
                   body_path=body_path, extra=swing)
            b.move(None, "right", (0, 0, 0, 0), (0, 0, 0, 0), 0.5)
        elif kind == "adjust_clothes":
            r = relaxed()
            key = "right" if rng.random() < 0.5 else "left"
            sgn = 1 if key == "right" else -1
            spot = (sgn * rng.uniform(0.1, 0.45), rng.choice([0.05, 0.9, 1.3]))
            b.move(r, key, (sgn * 0.75, 1.45, size, down), (*spot, size, rng.uniform(-1.2, 1.2)),
                   rng.uniform(0.4, 0.7))
            for _ in range(int(rng.integers(1, 4))):  # tugs: short, fast, sideways or down
                dx, dy = rng.uniform(-0.35, 0.35), rng.uniform(0.0, 0.3)
                a = (*spot, size, 0.5)
                bb = (spot[0] + dx, spot[1] + dy, size, 0.6)
                b.move(r, key, a, bb, rng.uniform(0.15, 0.3))
                b.move(r, key, bb, a, rng.uniform(0.2, 0.35))
            b.move(r, key, (*spot, size, 0.5), (sgn * 0.75, 1.45, size, down), rng.uniform(0.4, 0.7))
        elif kind == "touch_hair":
            o = tpls["open"][int(rng.integers(len(tpls["open"])))]
            key = "right" if rng.random() < 0.5 else "left"
            sgn = 1 if key == "right" else -1
            head = (sgn * rng.uniform(0.2, 0.45), rng.uniform(-0.9, -0.6))
            b.move(o, key, (sgn * 0.75, 1.4, size, down), (*head, size, sgn * rng.uniform(0.9, 2.0)),
                   rng.uniform(0.5, 0.8))
            dur = rng.uniform(1.0, 2.5)
            steps = max(2, int(dur * 4))
            p = (*head, size, sgn * 1.2)
            for _ in range(steps):  # strokes through the hair: the hand tilted over the head, fingers back
                q = (head[0] + rng.uniform(-0.2, 0.2), head[1] + rng.uniform(-0.12, 0.12), size,
                     sgn * rng.uniform(0.9, 2.2))
                b.move(o, key, p, q, dur / steps, profile=lambda u: u)
                p = q
            b.move(relaxed(), key, p, (sgn * 0.75, 1.4, size, down), rng.uniform(0.5, 0.8))
        elif kind == "turn_around":
            dur = rng.uniform(1.5, 3.0)
            t_start = b.t
            r = relaxed()

            def body_turn(t, t_start=t_start, dur=dur):
                u = min(1.0, (t - t_start) / dur)
                return BodyRef(BODY.cx, BODY.cy, BODY.scale * (1 - 0.55 * math.sin(math.pi * u)))
            b.move(r, "right", (0.75, 1.4, size, down), (0.7, 1.4, size, down), dur, profile=lambda u: u,
                   body_path=body_turn)
        elif kind == "point_at_self":
            p_t = tpls["point"][int(rng.integers(len(tpls["point"])))]
            key = "right" if rng.random() < 0.5 else "left"
            sgn = 1 if key == "right" else -1
            at = (sgn * rng.uniform(0.0, 0.3), rng.uniform(0.3, 0.9))
            ang = sgn * rng.uniform(-2.4, -1.4)  # the index towards the chest
            b.move(p_t, key, (sgn * 0.75, 1.4, size, down), (*at, size, ang), rng.uniform(0.4, 0.7))
            b.move(p_t, key, (*at, size, ang), (*at, size, ang), rng.uniform(1.0, 2.5), tremor=0.015)
            b.move(relaxed(), key, (*at, size, ang), (sgn * 0.75, 1.4, size, down), rng.uniform(0.4, 0.7))
        elif kind == "talking":
            key = "right" if rng.random() < 0.5 else "left"
            sgn = 1 if key == "right" else -1
            t_ = tpls["open" if rng.random() < 0.5 else "relaxed"]
            tpl = t_[int(rng.integers(len(t_)))]
            home = (sgn * rng.uniform(0.2, 0.6), rng.uniform(0.5, 1.0))
            b.move(tpl, key, (sgn * 0.75, 1.4, size, down), (*home, size, sgn * 0.6), rng.uniform(0.4, 0.6))
            for _ in range(int(rng.integers(3, 8))):  # beats: small quick movements
                amp = rng.uniform(0.1, 0.45)
                q = (home[0] + rng.uniform(-amp, amp), home[1] + rng.uniform(-amp, amp), size,
                     sgn * rng.uniform(0.2, 1.2))
                b.move(tpl, key, (*home, size, sgn * 0.6), q, rng.uniform(0.15, 0.3))
                b.move(tpl, key, q, (*home, size, sgn * 0.6), rng.uniform(0.15, 0.3))
            b.move(tpl, key, (*home, size, sgn * 0.6), (sgn * 0.75, 1.4, size, down), rng.uniform(0.4, 0.6))
        else:
            raise ValueError(f"unknown normal movement {kind!r}")
        b.move(None, "right", (0, 0, 0, 0), (0, 0, 0, 0), rng.uniform(0.2, 0.6))
    return b.build()


def pose_landmarks(poses: list[HandPose], body: BodyRef, rng: np.random.Generator | None = None,
                   noise: float = 0.08) -> np.ndarray:
    """A pose (33, 5) px the hand stage can take its ROIs from: shoulders and hips from the body, each shown
    hand's wrist, pinky and index from its template (BlazePose puts them near the wrist and the knuckles), with
    noise (fraction of the palm length) like the pose model's."""
    lm = np.zeros((33, 5))
    lm[:, 3:] = 0.0
    half = body.scale / 2
    lm[11, :2], lm[12, :2] = (body.cx + half, body.cy), (body.cx - half, body.cy)  # left shoulder on image right
    lm[23, :2], lm[24, :2] = (body.cx + 0.6 * half, body.cy + 1.6 * body.scale), \
        (body.cx - 0.6 * half, body.cy + 1.6 * body.scale)
    lm[[11, 12, 23, 24], 3:] = 0.95
    for p in poses:
        pts = p.template.landmarks(p)
        idx = (15, 17, 19) if p.key == "left" else (16, 18, 20)
        for i, j in zip(idx, (0, 17, 5)):
            lm[i, :2] = pts[j, :2] + (rng.normal(0, noise * p.size, 2) if rng is not None else 0)
            lm[i, 3:] = 0.9
    return lm
