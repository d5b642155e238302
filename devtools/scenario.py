"""A scripted store scene with ground truth, for `edge bench behaviour` and the analytics end-to-end tests.

Real people, cut out of the package photos with the pose model's segmentation mask, walk along scripted paths
over a synthetic store (near and large, far and small: 45-330 px tall in 640x480), cross and occlude each other,
form and clear a queue, wait at a kiosk, loiter, reach into a low shelf, under lighting changes. Every frame comes
with the true boxes, ids, foot and wrist points, so counts, dwell times, queue lengths and alerts have known
true values. Each cycle also holds near misses (a queue of three, a short kiosk visit, a short loiter, a walker
who turns back at the door) that must not raise an alert or a count.

Frames are rendered lazily (`Scenario.frames()`); sprites are cut once and cached in `<cache>/scenario/`.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge.core.paths import cache_dir

log = logging.getLogger(__name__)

W, H, FPS = 640, 480, 10.0
HORIZON_Y, NEAR_Y = 200.0, 470.0  # foot rows of the farthest and nearest walkers
FAR_H, NEAR_H = 42.0, 330.0  # person heights there (px)

# Geometry shared by the scene, its ground truth and the device config the bench runs.
LINE = ((330.0, 475.0), (330.0, 300.0))  # the door, drawn upwards: crossing left -> right is "in"
ZONES = {
    "checkout": [(10, 330), (300, 330), (300, 478), (10, 478)],  # the queue
    "kiosk": [(470, 360), (630, 360), (630, 478), (470, 478)],
    "window": [(400, 195), (640, 195), (640, 262), (400, 262)],  # far: loitering watch
}
SHELF = [(560, 230), (640, 230), (640, 330), (560, 330)]  # a low shelf at the right edge (wrist height)
SPRITES = (("bus.jpg", (0, 330, 300, 930)), ("bus.jpg", (190, 360, 370, 900)))


def person_height(foot_y: float) -> float:
    """Apparent height of a person whose feet are at row foot_y (linear ground-plane perspective)."""
    u = (foot_y - HORIZON_Y) / (NEAR_Y - HORIZON_Y)
    return FAR_H + u * (NEAR_H - FAR_H)


@dataclass
class Sprite:
    rgba: np.ndarray  # h x w x 4 uint8, alpha from the segmentation mask
    wrists: np.ndarray  # (2, 2) left/right wrist in sprite px
    foot: tuple[float, float]  # bottom centre of the alpha box, sprite px


def _cut_sprites(cache: Path, backend: str = "openvino") -> list[Sprite]:
    from edge.app.config import ModelRef, ModelsSection
    from edge.core.frames import Frame
    from edge.pose.config import PoseConfig
    from edge.pose.pipeline import PosePipeline

    # fixed backends and precisions (OpenVINO, as `auto` picks on the x86 machines that measured the scene's
    # benchmarks): the scene, and so every accuracy row of `edge bench behaviour`, does not follow what `auto`
    # picks on the machine that cuts it
    models = ModelsSection(pose_detector=ModelRef(name="pose_detection", backend=backend,
                                                  precision="int8" if backend == "openvino" else "fp32"),
                           pose_landmarks=ModelRef(name="pose_landmark_full", backend=backend, precision="fp32"))
    pipe = PosePipeline((PoseConfig(segmentation=True, max_people=1), models))
    out = []
    try:
        for photo, (x0, y0, x1, y1) in SPRITES:
            img = cv2.imread(str(cache / "photos" / photo), cv2.IMREAD_COLOR)
            if img is None:
                raise FileNotFoundError(f"{cache / 'photos' / photo} missing: run `edge models build`")
            crop = img[y0:y1, x0:x1].copy()
            pipe.reset()
            for _ in range(3):  # detector, then tracking refinement on the same crop
                res = pipe.process(Frame(crop, 0, 0.0, 0.0, t_media=0.0))
            p = res.people[0]
            alpha = (np.clip(p.mask, 0, 1) * 255).astype(np.uint8)
            alpha[alpha < 100] = 0
            ys, xs = np.nonzero(alpha)
            bx0, by0, bx1, by1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            rgba = np.dstack([crop, alpha])[by0:by1, bx0:bx1].copy()
            wr = p.landmarks[[15, 16], :2] - (bx0, by0)
            out.append(Sprite(rgba, wr.astype(np.float32), ((bx1 - bx0) / 2.0, float(by1 - by0))))
    finally:
        pipe.close()
    return out


def load_sprites(cache: Path | None = None, backend: str = "openvino") -> list[Sprite]:
    """The people sprites (cut once, cached as npz), each also mirrored. backend: the one that cuts them (another
    one gives masks and wrists a few px apart: the same people, cut a little differently)."""
    cache = cache or cache_dir()
    # v3: cut on fixed backends (v1 on whatever `auto` picked; v2 named a TFLite cut for a while, then this one)
    f = cache / "scenario" / ("sprites-v3.npz" if backend == "openvino" else f"sprites-v3-{backend}.npz")
    if not f.is_file():
        f.parent.mkdir(parents=True, exist_ok=True)
        sp = _cut_sprites(cache, backend)
        np.savez_compressed(f, **{f"rgba{i}": s.rgba for i, s in enumerate(sp)},
                            **{f"wrists{i}": s.wrists for i, s in enumerate(sp)})
    z = np.load(f)
    base = [Sprite(z[f"rgba{i}"], z[f"wrists{i}"], (z[f"rgba{i}"].shape[1] / 2, float(z[f"rgba{i}"].shape[0])))
            for i in range(len(SPRITES))]
    mirrored = []
    for s in base:
        w = s.rgba.shape[1]
        mirrored.append(Sprite(s.rgba[:, ::-1].copy(), np.stack([w - s.wrists[:, 0], s.wrists[:, 1]], 1)[::-1],
                               s.foot))
    return base + mirrored


@dataclass
class Actor:
    """One person: keyframes (t, foot_x, foot_y) with linear motion between them; absent outside them."""

    id: int
    sprite: int
    keys: list[tuple[float, float, float]]
    role: str = "walker"

    def at(self, t: float) -> tuple[float, float] | None:
        k = self.keys
        if t < k[0][0] or t > k[-1][0]:
            return None
        for (t0, x0, y0), (t1, x1, y1) in zip(k, k[1:]):
            if t0 <= t <= t1:
                u = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
                return x0 + u * (x1 - x0), y0 + u * (y1 - y0)
        return k[-1][1], k[-1][2]


@dataclass
class TruePerson:
    id: int
    box: tuple[float, float, float, float]  # xyxy of the visible-or-not full body, frame px
    foot: tuple[float, float]
    wrists: np.ndarray  # (2, 2)
    visible: float  # fraction of the body not hidden by nearer people or the frame edge


@dataclass
class TrueFrame:
    index: int
    t: float
    people: list[TruePerson] = field(default_factory=list)


def _walk(t0: float, pts: list[tuple[float, float]], speed: float = 80.0, waits: dict[int, float] | None = None
          ) -> list[tuple[float, float, float]]:
    """Keyframes along pts at `speed` px/s (scaled with depth), waiting waits[i] seconds at point i."""
    keys, t = [(t0, *pts[0])], t0
    waits = waits or {}
    if waits.get(0):
        t += waits[0]
        keys.append((t, *pts[0]))
    for i in range(1, len(pts)):
        (xa, ya), (xb, yb) = pts[i - 1], pts[i]
        depth = person_height((ya + yb) / 2) / NEAR_H
        t += math.hypot(xb - xa, yb - ya) / max(8.0, speed * depth)
        keys.append((t, xb, yb))
        if waits.get(i):
            t += waits[i]
            keys.append((t, xb, yb))
    return keys


def cycle_actors(c: int, t0: float, next_id: int, near_miss: bool) -> list[Actor]:
    """One ~100 s cycle of the store script, starting at t0. near_miss: the variant whose episodes stay just
    under every alert threshold."""
    s = c % 4
    a: list[Actor] = []

    def add(keys, role="walker", sprite=None):
        nonlocal next_id
        a.append(Actor(next_id, (sprite if sprite is not None else (next_id + s)) % 4, keys, role))
        next_id += 1

    # footfall: two people cross the door in opposite directions and occlude each other
    add(_walk(t0 + 1, [(-60, 440), (700, 430)]), "in")
    add(_walk(t0 + 3, [(700, 400), (-60, 410)]), "out")
    # a walker who comes to the door and turns back (no count), and two crossing at mid depth
    add(_walk(t0 + 10, [(-60, 380), (300, 385), (-60, 390)]), "turn_back")
    add(_walk(t0 + 14, [(-40, 340), (680, 350)]), "in")
    add(_walk(t0 + 15, [(680, 335), (-40, 345)]), "out")
    # far, small people walking above the door segment: they never cross the door
    add(_walk(t0 + 5, [(-30, 215), (670, 220)], speed=70), "far")
    add(_walk(t0 + 30, [(670, 240), (-30, 232)], speed=70), "far")
    # the queue at checkout: 4 people (3 in the near-miss cycle), served one after another
    n_q = 3 if near_miss else 4
    slots = [(45, 375), (125, 368), (205, 361), (282, 354)]  # along the counter, head of the queue first
    serve = [t0 + 44, t0 + 56, t0 + 68, t0 + 80]
    for i in range(n_q):
        arrive = t0 + 18 + 4 * i
        x, y = slots[i]
        path = [(-60, y), (x, y)]
        keys = _walk(arrive, path)
        # wait, then step forward as the people ahead leave, then leave to the left
        tt = keys[-1][0]
        for j in range(i):
            if serve[j] > tt:
                keys.append((serve[j], x, y))
                x, y = slots[i - j - 1]
                tt = serve[j] + 1.5
                keys.append((tt, x, y))
        if serve[i] > tt:
            keys.append((serve[i], x, y))
        keys += [(k[0], k[1], k[2]) for k in _walk(serve[i], [(x, y), (-60, y + 10)])[1:]]
        add(keys, "queue")
    # the kiosk: a shopper waits 45 s (20 s in the near miss)
    stay = 20 if near_miss else 45
    add(_walk(t0 + 25, [(700, 455), (550, 450)], waits={1: stay}) + [], "kiosk")
    a[-1].keys += _walk(a[-1].keys[-1][0], [(550, 450), (700, 460)])[1:]
    # loitering in front of the far window: in the window zone ~75 s; the near miss walks briskly, waits 10 s and
    # is in the zone ~25 s in all (under the 30 s loitering rule)
    loiter, pace = (10, 150) if near_miss else (45, 60)
    add(_walk(t0 + 8, [(670, 225), (440, 228)], speed=pace, waits={1: loiter}), "loiter")
    a[-1].keys += _walk(a[-1].keys[-1][0], [(440, 228), (670, 226)], speed=pace)[1:]
    # a shopper reaches into the low shelf (stands with a wrist inside it for 6 s): sprite 3's right wrist hangs
    # at 53 % of the body height, so standing at (585, 330) it is at about (595, 245), inside SHELF (sprites 0
    # and 2 hold their wrists at a third of the height, above the shelf)
    add(_walk(t0 + 70, [(700, 335), (585, 330)], waits={1: 6}), "shelf", sprite=3)
    a[-1].keys += _walk(a[-1].keys[-1][0], [(585, 330), (700, 338)])[1:]
    return a


@dataclass
class Scenario:
    actors: list[Actor]
    duration_s: float
    sprites: list[Sprite]
    fps: float = FPS
    lighting: list[tuple[float, float, float, float]] = field(default_factory=list)  # (t0, t1, g0, g1) gain ramps

    @property
    def n_frames(self) -> int:
        return int(self.duration_s * self.fps)

    def gain(self, t: float) -> float:
        g = 1.0
        for t0, t1, g0, g1 in self.lighting:
            if t >= t1:
                g = g1
            elif t >= t0:
                g = g0 + (g1 - g0) * (t - t0) / (t1 - t0)
        return g

    def _place(self, actor: Actor, foot: tuple[float, float]) -> tuple[np.ndarray, int, int, float, np.ndarray]:
        sp = self.sprites[actor.sprite]
        scale = person_height(foot[1]) / sp.rgba.shape[0]
        h = max(8, int(round(sp.rgba.shape[0] * scale)))
        w = max(3, int(round(sp.rgba.shape[1] * scale)))
        img = cv2.resize(sp.rgba, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        x0 = int(round(foot[0] - w / 2))
        y0 = int(round(foot[1] - h))
        wrists = sp.wrists * (w / sp.rgba.shape[1], h / sp.rgba.shape[0]) + (x0, y0)
        return img, x0, y0, scale, wrists

    def truth(self, i: int) -> TrueFrame:
        """Ground truth of frame i (boxes, ids, foot and wrist points, visible fraction)."""
        return self._render(i, draw=False)[1]

    def frames(self) -> Iterator[tuple[np.ndarray, TrueFrame]]:
        for i in range(self.n_frames):
            yield self._render(i, draw=True)

    def _render(self, i: int, draw: bool) -> tuple[np.ndarray | None, TrueFrame]:
        t = i / self.fps
        present = [(a, p) for a in self.actors if (p := a.at(t)) is not None]
        present.sort(key=lambda ap: ap[1][1])  # far first: nearer people occlude farther ones
        img = _background().copy() if draw else None
        cover = np.zeros((H, W), np.int16)  # painter's id map for the visible fractions
        tf = TrueFrame(i, t)
        placed = []
        for a, foot in present:
            spr, x0, y0, _, wrists = self._place(a, foot)
            h, w = spr.shape[:2]
            fx0, fy0, fx1, fy1 = max(0, x0), max(0, y0), min(W, x0 + w), min(H, y0 + h)
            if fx1 <= fx0 or fy1 <= fy0:
                continue
            alpha = spr[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0, 3] > 127
            cover[fy0:fy1, fx0:fx1][alpha] = a.id
            if draw:
                sub = spr[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
                al = sub[..., 3:4].astype(np.float32) / 255
                roi = img[fy0:fy1, fx0:fx1].astype(np.float32)
                img[fy0:fy1, fx0:fx1] = (sub[..., :3] * al + roi * (1 - al)).astype(np.uint8)
            placed.append((a, foot, (x0, y0, x0 + w, y0 + h), wrists, int((spr[..., 3] > 127).sum())))
        for a, foot, box, wrists, area in placed:
            vis = float((cover == a.id).sum()) / max(1, area)
            tf.people.append(TruePerson(a.id, tuple(float(v) for v in box), foot, wrists, vis))
        if draw:
            g = self.gain(t)
            if g != 1.0:
                img = np.clip(img.astype(np.float32) * g, 0, 255).astype(np.uint8)
            img = cv2.add(img, _noise(i))  # sensor noise (saturating)
        return img, tf


_BG: np.ndarray | None = None
_NOISE: list[np.ndarray] = []


def _noise(i: int) -> np.ndarray:
    """One of 8 fixed non-negative noise frames (cheap, deterministic sensor noise)."""
    if not _NOISE:
        rng = np.random.default_rng(7)
        _NOISE.extend(rng.integers(0, 6, (H, W, 3), dtype=np.uint8) for _ in range(8))
    return _NOISE[i % 8]


def _background() -> np.ndarray:
    """A store: back wall with shelving, a window strip, the floor, the door frame and the checkout counter."""
    global _BG
    if _BG is None:
        bg = np.empty((H, W, 3), np.uint8)
        bg[:int(HORIZON_Y)] = np.linspace(205, 175, int(HORIZON_Y), dtype=np.float32)[:, None, None].astype(np.uint8)
        floor = np.linspace(150, 110, H - int(HORIZON_Y), dtype=np.float32)[:, None, None]
        bg[int(HORIZON_Y):] = (floor * np.array([0.9, 1.0, 1.05])).astype(np.uint8)
        for y in range(30, int(HORIZON_Y) - 10, 36):  # back-wall shelves with goods
            cv2.rectangle(bg, (0, y), (380, y + 5), (80, 85, 95), -1)
            rng = np.random.default_rng(y)
            for x in range(4, 376, 14):
                c = tuple(int(v) for v in rng.integers(60, 220, 3))
                cv2.rectangle(bg, (x, y - 22), (x + 10, y - 1), c, -1)
        cv2.rectangle(bg, (400, 20), (640, 180), (215, 200, 170), -1)  # window
        cv2.rectangle(bg, (320, 150), (340, 480), (70, 70, 80), -1)  # door frame post
        cv2.rectangle(bg, (0, 300), (25, 480), (60, 60, 75), -1)  # checkout counter edge
        cv2.rectangle(bg, (560, 230), (640, 330), (95, 75, 60), 3)  # the low shelf's frame
        _BG = bg
    return _BG


def build(cycles: int = 3, *, cache: Path | None = None, sprites: str = "openvino") -> Scenario:
    """The scripted scene: `cycles` cycles of ~100 s; every third cycle is the near-miss variant. sprites: the backend
    that cut the people (load_sprites)."""
    actors: list[Actor] = []
    nid = 1
    cycle_s = 100.0
    for c in range(cycles):
        acts = cycle_actors(c, c * cycle_s, nid, near_miss=(c % 3 == 1))
        nid = max(a.id for a in acts) + 1
        actors += acts
    dur = cycles * cycle_s
    lighting = [(c * cycle_s + 60, c * cycle_s + 64, 1.0, 0.65) for c in range(cycles)] + \
               [(c * cycle_s + 88, c * cycle_s + 92, 0.65, 1.0) for c in range(cycles)]
    lighting.sort()
    return Scenario(actors, dur, load_sprites(cache, sprites), lighting=lighting)


def write_video(sc: Scenario, path: Path, max_frames: int | None = None) -> Path:
    """The scene as an MJPG AVI at its own frame rate (for `[source] type = "video"` runs)."""
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), sc.fps, (W, H))
    try:
        for n, (img, _) in enumerate(sc.frames()):
            if max_frames is not None and n >= max_frames:
                break
            vw.write(img)
    finally:
        vw.release()
    return path
