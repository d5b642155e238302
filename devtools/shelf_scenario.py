"""A scripted shelf camera scene with ground truth, for `edge bench shelf` and the facing tests.

A fixed camera looks at three shelf rows of six facings each (640x480). Each facing holds up to four packs of one
SKU (two columns, two high), drawn procedurally: a base colour, a label band, a logo, "text" strokes, stripes or
dots, shading and an outline, so every SKU has its own texture. Behind them is a plain back panel; below each row a
shelf edge with price labels. Shoppers (the people sprites of devtools.scenario) walk up to a facing, stand in front
of it (sometimes longer than the persistence), and sometimes take packs while they hide it; staff restock facings
(packs land a pixel or two off their old place). The lighting swings (exposure and white balance, ramps and a
sudden step), the camera vibrates by a pixel or two for a while, then gets bumped (shift + rotation) and put back.

Ground truth per facing: the pack count over time, the state it means (4 packs: full, 1-2: low, 0: empty; the
script never leaves 3) and the time each change becomes visible (the first frame without a person over the
facing). `build()` makes the default script; `ShelfScene.render(i)` returns frame i and its people.
"""
from __future__ import annotations

import logging
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

W, H, FPS = 640, 480, 5.0
ROWS = ((28, 163), (188, 323), (348, 462))  # (top, bottom) of each row's product space; the shelf edge is below
COLS = 6
X0, FACING_W = 20, 100
PACK_W, PACK_H = 44, 60
PANEL_BGR = (168, 182, 192)  # the back panel: light warm grey
EDGE_BGR = (66, 70, 78)  # shelf edge
PERSON_H = 430  # shoppers stand close to the shelf: apparent height in px
STATE_OF = {4: "full", 2: "low", 1: "low", 0: "empty"}


def facing_ids() -> list[str]:
    return [f"{'ABC'[r]}{c + 1}" for r in range(len(ROWS)) for c in range(COLS)]


def facing_polygon(fid: str) -> list[tuple[float, float]]:
    """The facing's space: its column of the row, from the row top to the shelf edge (1 px gap to neighbours)."""
    r, c = "ABC".index(fid[0]), int(fid[1:]) - 1
    x0, x1 = X0 + c * FACING_W + 1, X0 + (c + 1) * FACING_W - 1
    y0, y1 = ROWS[r]
    return [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]


PANEL_REGION = [(20, 4), (620, 4), (620, 22), (20, 22)]  # a strip of back panel above the top row


def _pack(seed: int) -> np.ndarray:
    """One pack of SKU `seed`: PACK_H x PACK_W BGR with its own design."""
    rng = np.random.default_rng(1000 + seed)
    h, w = PACK_H, PACK_W
    base = rng.integers(30, 230, 3)
    while np.abs(base - np.array(PANEL_BGR)).sum() < 120:  # no pack in the panel's colour (see the known limits)
        base = rng.integers(30, 230, 3)
    img = np.empty((h, w, 3), np.float32)
    img[:] = base
    shade = np.linspace(1.08, 0.85, w, dtype=np.float32)[None, :, None]  # light from the left
    style = seed % 4
    ink = tuple(int(v) for v in (255 - base) * 0.8)
    if style == 0:  # label band, logo, text lines
        band = tuple(int(v) for v in rng.integers(0, 255, 3))
        cv2.rectangle(img, (0, 18), (w, 36), band, -1)
        cv2.circle(img, (w // 2, 10), 6, ink, -1)
        for k in range(3):
            cv2.line(img, (6, 42 + 5 * k), (w - 6 - 7 * k, 42 + 5 * k), ink, 1)
    elif style == 1:  # diagonal stripes
        for k in range(-h, w, 9):
            cv2.line(img, (k, h), (k + h, 0), ink, 2)
        cv2.rectangle(img, (8, 22), (w - 8, 38), tuple(int(v) for v in base), -1)
        cv2.putText(img, "SKU", (9, 35), cv2.FONT_HERSHEY_PLAIN, 0.9, ink, 1)
    elif style == 2:  # dots with a big letter
        for _ in range(30):
            cv2.circle(img, (int(rng.integers(2, w - 2)), int(rng.integers(2, h - 2))), 2, ink, -1)
        cv2.putText(img, "ABCDEFGH"[seed % 8], (10, 44), cv2.FONT_HERSHEY_SIMPLEX, 1.1, ink, 2)
    else:  # two-tone with a window and text
        cv2.rectangle(img, (0, h // 2), (w, h), tuple(int(v * 0.6) for v in base), -1)
        cv2.ellipse(img, (w // 2, h // 2), (14, 9), 0, 0, 360, ink, 2)
        for k in range(2):
            cv2.line(img, (5, 8 + 5 * k), (w - 12, 8 + 5 * k), ink, 1)
    img *= shade
    cv2.rectangle(img, (0, 0), (w - 1, h - 1), tuple(int(v * 0.45) for v in base), 1)
    return np.clip(img, 0, 255).astype(np.uint8)


def _panel() -> np.ndarray:
    """Back panel, shelf edges and price labels: the shelf with every facing empty."""
    rng = np.random.default_rng(3)
    img = np.empty((H, W, 3), np.float32)
    img[:] = PANEL_BGR
    img *= np.linspace(1.04, 0.94, H, dtype=np.float32)[:, None, None]  # a soft vertical light fall-off
    grain = cv2.GaussianBlur(rng.normal(0, 2.0, (H, W)).astype(np.float32), (0, 0), 2.0)
    img += grain[..., None]
    for r, (_, y1) in enumerate(ROWS):
        cv2.rectangle(img, (0, y1 + 1), (W, y1 + 16), EDGE_BGR, -1)
        for c in range(COLS):
            x = X0 + c * FACING_W + 30
            cv2.rectangle(img, (x, y1 + 4), (x + 40, y1 + 13), (235, 235, 235), -1)
            cv2.putText(img, f"{(r * 7 + c * 3) % 9}.99", (x + 3, y1 + 12), cv2.FONT_HERSHEY_PLAIN, 0.6,
                        (30, 30, 30), 1)
    return np.clip(img, 0, 255).astype(np.uint8)


def _slots(fid: str) -> list[tuple[int, int]]:
    """Top-left corners of the four pack places of a facing, in the order they empty last: bottom row first."""
    poly = facing_polygon(fid)
    x0, y1 = int(poly[0][0]), int(poly[2][1])
    left, right = x0 + 4, x0 + 4 + PACK_W + 3
    bottom, top = y1 - PACK_H, y1 - 2 * PACK_H - 2
    return [(left, bottom), (right, bottom), (left, top), (right, top)]


@dataclass
class Visit:
    """One person in front of a facing: walks in from `side`, stands `dwell` s, walks out. `change` (count)
    happens at the middle of the stay (a shopper taking packs, or staff restocking: role)."""

    person: int
    facing: str
    t0: float
    dwell: float
    side: int  # -1: from the left, +1: from the right
    sprite: int
    change: int | None = None
    role: str = "shopper"
    walk_s: float = 3.0

    @property
    def t_change(self) -> float:
        return self.t0 + self.walk_s + self.dwell / 2

    @property
    def t_end(self) -> float:
        return self.t0 + 2 * self.walk_s + self.dwell

    def x_at(self, t: float) -> float | None:
        cx = _centre_x(self.facing)
        out = -120.0 if self.side < 0 else W + 120.0
        if t < self.t0 or t > self.t_end:
            return None
        if t < self.t0 + self.walk_s:
            return out + (cx - out) * (t - self.t0) / self.walk_s
        if t <= self.t0 + self.walk_s + self.dwell:
            return cx
        return cx + (out - cx) * (t - self.t0 - self.walk_s - self.dwell) / self.walk_s


def _centre_x(fid: str) -> float:
    p = facing_polygon(fid)
    return (p[0][0] + p[1][0]) / 2


@dataclass
class Change:
    facing: str
    t: float  # when the packs changed (hidden behind someone)
    t_visible: float  # first frame time with nobody over the facing afterwards
    count: int
    state: str
    previous: str


@dataclass
class ShelfScene:
    visits: list[Visit]
    duration_s: float
    sprites: list  # devtools.scenario.Sprite
    fps: float = FPS
    exposure: list[tuple[float, float, tuple[float, float, float]]] = field(default_factory=list)  # (t0, t1, gains)
    jitter: tuple[float, float] | None = None  # (t0, t1): vibration of +-2 px
    bump: tuple[float, float, tuple[float, float, float]] | None = None  # (t0, t_back, (dx, dy, deg))
    seed: int = 0
    changes: list[Change] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._packs = {fid: _pack(i) for i, fid in enumerate(facing_ids())}
        self._panel = _panel()
        self._cache: tuple[tuple, np.ndarray] | None = None
        self._scaled = [self._scale(s) for s in self.sprites]
        rng = np.random.default_rng(self.seed + 11)
        self._noise = [rng.integers(0, 7, (H, W, 3), dtype=np.uint8) for _ in range(8)]
        self.changes = self._truth()

    @property
    def n_frames(self) -> int:
        return int(self.duration_s * self.fps)

    # ---------------------------------------------------------------- content
    def counts_at(self, t: float) -> dict[str, tuple[int, int]]:
        """facing -> (pack count, restock generation) at time t."""
        out = {fid: (4, 0) for fid in facing_ids()}
        for v in sorted(self.visits, key=lambda v: v.t_change):
            if v.change is not None and v.t_change <= t:
                out[v.facing] = (v.change, out[v.facing][1] + (1 if v.role == "staff" else 0))
        return out

    def shelf(self, counts: dict[str, tuple[int, int]]) -> np.ndarray:
        """The shelf with these pack counts (restock generation g moves packs by a pixel or two)."""
        key = tuple(sorted(counts.items()))
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        img = self._panel.copy()
        for fid, (n, gen) in counts.items():
            rng = np.random.default_rng(zlib.crc32(fid.encode()) + 7919 * gen)
            for k, (x, y) in enumerate(_slots(fid)[:n]):
                dx, dy = (rng.integers(-2, 3, 2) if gen else (0, 0))
                img[y + dy:y + dy + PACK_H, x + dx:x + dx + PACK_W] = self._packs[fid]
                # a faint shadow under the top packs
                if k >= 2:
                    img[y + dy + PACK_H:y + dy + PACK_H + 2, x + dx:x + dx + PACK_W] = \
                        (img[y + dy + PACK_H:y + dy + PACK_H + 2, x + dx:x + dx + PACK_W] * 0.8).astype(np.uint8)
        self._cache = (key, img)
        return img

    # ---------------------------------------------------------------- people
    def _scale(self, sp) -> tuple[np.ndarray, float]:
        s = PERSON_H / sp.rgba.shape[0]
        img = cv2.resize(sp.rgba, (max(3, int(sp.rgba.shape[1] * s)), PERSON_H), interpolation=cv2.INTER_AREA)
        return img

    def people_at(self, t: float) -> list[tuple[int, tuple[int, int, int, int], np.ndarray]]:
        """(person id, clipped box xyxy, sprite rgba) of everyone in the frame at t."""
        out = []
        for v in self.visits:
            x = v.x_at(t)
            if x is None:
                continue
            spr = self._scaled[v.sprite % len(self._scaled)]
            h, w = spr.shape[:2]
            x0, y0 = int(round(x - w / 2)), H + 40 - h  # feet below the frame: they stand close to the shelf
            bx0, bx1 = max(0, x0), min(W, x0 + w)
            if bx1 - bx0 < 4:
                continue
            out.append((v.person, (x0, y0, x0 + w, y0 + h), spr))
        return out

    def _cover(self, t: float) -> np.ndarray:
        """H x W bool: pixels hidden by people at t."""
        m = np.zeros((H, W), bool)
        for _, (x0, y0, x1, y1), spr in self.people_at(t):
            fx0, fy0, fx1, fy1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
            m[fy0:fy1, fx0:fx1] |= spr[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0, 3] > 60
        return m

    # ---------------------------------------------------------------- camera
    def gains(self, t: float) -> np.ndarray:
        """Per-channel (B, G, R) exposure x white-balance gain at t (ramps between the scripted levels)."""
        g = np.ones(3)
        for t0, t1, target in self.exposure:
            if t >= t1:
                g = np.asarray(target, float)
            elif t >= t0:
                g = g + (np.asarray(target, float) - g) * (t - t0) / max(1e-6, t1 - t0)
        return g

    def camera(self, t: float, i: int) -> tuple[float, float, float]:
        """(dx, dy, degrees) of the camera at t."""
        if self.bump is not None and self.bump[0] <= t < self.bump[1]:
            return self.bump[2]
        if self.jitter is not None and self.jitter[0] <= t < self.jitter[1]:
            rng = np.random.default_rng(i)
            dx, dy = rng.uniform(-2, 2, 2)
            return float(dx), float(dy), 0.0
        return 0.0, 0.0, 0.0

    def render(self, i: int) -> tuple[np.ndarray, list[tuple[int, tuple[float, float, float, float]]]]:
        """Frame i (BGR) and the people in it: (id, box xyxy clipped to the frame, in the frame's pixels)."""
        t = i / self.fps
        img = self.shelf(self.counts_at(t)).copy()
        people = []
        for pid, (x0, y0, x1, y1), spr in self.people_at(t):
            fx0, fy0, fx1, fy1 = max(0, x0), max(0, y0), min(W, x1), min(H, y1)
            sub = spr[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0]
            a = sub[..., 3:4].astype(np.float32) / 255
            roi = img[fy0:fy1, fx0:fx1].astype(np.float32)
            img[fy0:fy1, fx0:fx1] = (sub[..., :3] * a + roi * (1 - a)).astype(np.uint8)
            people.append((pid, (float(fx0), float(fy0), float(fx1), float(fy1))))
        g = self.gains(t)
        if not np.allclose(g, 1.0):
            img = np.clip(img.astype(np.float32) * g[None, None, :].astype(np.float32), 0, 255).astype(np.uint8)
        dx, dy, deg = self.camera(t, i)
        if dx or dy or deg:
            m = cv2.getRotationMatrix2D((W / 2, H / 2), deg, 1.0)
            m[:, 2] += (dx, dy)
            img = cv2.warpAffine(img, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            people = [(pid, _moved_box(b, m)) for pid, b in people]
        img = cv2.add(img, self._noise[i % len(self._noise)])
        return img, people

    # ---------------------------------------------------------------- truth
    def _truth(self) -> list[Change]:
        """Each scripted count change whose state differs, with the time it becomes visible."""
        out, state = [], {fid: "full" for fid in facing_ids()}
        step = 1.0 / self.fps
        for v in sorted(self.visits, key=lambda v: v.t_change):
            if v.change is None:
                continue
            new = STATE_OF[v.change]
            if new == state[v.facing]:
                continue
            x0, y0 = facing_polygon(v.facing)[0]
            x1, y1 = facing_polygon(v.facing)[2]
            t = math.ceil(v.t_change * self.fps) / self.fps
            while t < self.duration_s and self._cover(t)[int(y0):int(y1), int(x0):int(x1)].any():
                t += step
            out.append(Change(v.facing, v.t_change, round(t, 3), v.change, new, state[v.facing]))
            state[v.facing] = new
        return out


def _moved_box(b, m) -> tuple[float, float, float, float]:
    pts = np.array([[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]]], np.float64)
    q = pts @ m[:, :2].T + m[:, 2]
    return (float(max(0, q[:, 0].min())), float(max(0, q[:, 1].min())), float(min(W, q[:, 0].max())),
            float(min(H, q[:, 1].max())))


def script(duration_s: float = 1200.0, seed: int = 0, bump_at: float | None = None) -> dict:
    """The default script: visits (shoppers browsing and taking, staff restocking), lighting, vibration, bump."""
    rng = np.random.default_rng(seed)
    bump_at = duration_s - 150.0 if bump_at is None else bump_at
    bump = (bump_at, bump_at + 60.0, (14.0, -9.0, 1.5))
    exposure = [(250.0, 254.0, (0.62, 0.68, 0.80)), (330.0, 334.0, (1.0, 1.0, 1.0)),  # darker, warmer
                (560.0, 560.2, (1.30, 1.25, 1.18)), (600.0, 600.2, (1.0, 1.0, 1.0)),  # auto-exposure step, clipping
                (760.0, 780.0, (0.85, 0.95, 1.15)), (840.0, 860.0, (1.0, 1.0, 1.0))]  # slow daylight drift
    jitter = (450.0, 480.0)
    ids = facing_ids()
    count = {fid: 4 for fid in ids}
    busy_until = {fid: 0.0 for fid in ids}
    visits: list[Visit] = []
    t, pid = 15.0, 1
    while t < duration_s - 60:
        if bump[0] - 90 <= t <= bump[1] + 40:  # leave the bump window to the camera (visits last up to 51 s)
            t = bump[1] + 40
            continue
        fid = ids[int(rng.integers(len(ids)))]
        if busy_until[fid] > t:
            t += 3.0
            continue
        n = count[fid]
        r = rng.random()
        role, change = "shopper", None
        if n == 0 or (n < 4 and r < 0.45):
            role, change = "staff", 4
        elif n == 4 and r < 0.6:
            change = 2 if rng.random() < 0.6 else 0
        elif n == 2 and r < 0.75:
            change = 0 if rng.random() < 0.6 else 1
        elif n == 1 and r < 0.75:
            change = 0
        dwell = float(rng.uniform(6, 22)) if rng.random() < 0.75 else float(rng.uniform(30, 45))
        if role == "staff":
            dwell = float(rng.uniform(12, 20))
        v = Visit(pid, fid, t, dwell, -1 if rng.random() < 0.5 else 1, int(rng.integers(4)), change, role)
        visits.append(v)
        pid += 1
        if change is not None:
            count[fid] = change
        # neighbours hidden by this person stay busy too, so changes do not pile up behind one shopper
        c_i = int(fid[1:]) - 1
        for dc in (-1, 0, 1):
            if 0 <= c_i + dc < COLS:
                for rr in range(len(ROWS)):
                    other = f"{'ABC'[rr]}{c_i + dc + 1}"
                    busy_until[other] = max(busy_until[other], v.t_end + 15.0)
        t += float(rng.uniform(6, 14))
    return {"visits": visits, "exposure": exposure, "jitter": jitter, "bump": bump}


def build(duration_s: float = 1200.0, seed: int = 0, *, cache: Path | None = None, bump_at: float | None = None
          ) -> ShelfScene:
    """The scripted shelf scene (sprites from devtools.scenario.load_sprites)."""
    from devtools.scenario import load_sprites

    s = script(duration_s, seed, bump_at)
    return ShelfScene(s["visits"], duration_s, load_sprites(cache), exposure=s["exposure"], jitter=s["jitter"],
                      bump=s["bump"], seed=seed)


def planogram(persistence_s: float = 10.0, **over) -> dict:
    """The scene's [analytics.planogram] as a dict (facings A1-C6, the panel strip, in-memory references)."""
    return {"camera": "aisle-1", "persistence_s": persistence_s, "reference_dir": "",
            "back_panel_region": [list(p) for p in PANEL_REGION],
            "facings": [{"id": fid, "sku": f"SKU-{i:04d}", "polygon": [list(p) for p in facing_polygon(fid)],
                         "alert_on": ["empty"]} for i, fid in enumerate(facing_ids())], **over}
