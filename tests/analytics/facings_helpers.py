"""Shelf images for the facing tests: the procedural shelf of devtools.shelf_scenario (packs with texture, back
panel, shelf edges), with exposure / white balance, camera motion, sensor noise and a person in front."""
from __future__ import annotations

import cv2
import numpy as np

from devtools import shelf_scenario as ss
from edge.analytics.facings import ShelfFacings
from edge.core.detections import Detections

FPS = 5.0
SCENE = ss.ShelfScene([], 60.0, [])  # no scripted visits: the tests place people themselves
FULL = {fid: (4, 0) for fid in ss.facing_ids()}
_RNG = np.random.default_rng(0)
_NOISE = [_RNG.integers(0, 7, (ss.H, ss.W, 3), dtype=np.uint8) for _ in range(6)]


def planogram(**over) -> dict:
    """The scene's planogram with short timers (stable 3 frames and 0.6 s, persistence 2 s, moved after 1 s)."""
    p = ss.planogram(persistence_s=2.0, stable_frames=3, clear_s=0.6, measure_every_s=0.0,
                     alignment={"moved_after_s": 1.0})
    p.update(over)
    return p


def shelf(**over) -> ShelfFacings:
    from edge.analytics.config import PlanogramConfig

    return ShelfFacings.from_config(PlanogramConfig.model_validate(planogram(**over)), source="test")


def image(counts: dict | None = None, *, gain=(1.0, 1.0, 1.0), camera=(0.0, 0.0, 0.0), person: tuple | None = None,
          sway: bool = True, i: int = 0) -> np.ndarray:
    """A frame: the shelf with these pack counts (facing -> (count, restock generation)), a person (a dark coat
    with a light face; with `sway` its texture moves with `i`) over the box `person` (x0, y0, x1, y1), exposure and
    white balance gains (B, G, R), the camera shifted / rotated by (dx, dy, degrees), and sensor noise."""
    img = SCENE.shelf({**FULL, **(counts or {})}).copy()
    if person is not None:
        x0, y0, x1, y1 = (int(v) for v in person)
        cx = (x0 + x1) // 2
        cv2.ellipse(img, (cx, y0 + 60), (50, 55), 0, 0, 360, (80, 120, 190), -1)  # face
        cv2.rectangle(img, (x0, y0 + 110), (x1, y1), (40, 35, 60), -1)  # coat
        for k in range(y0 + 120, y1, 14):  # stripes that move as the person sways
            off = (i * 3) % 14 if sway else 0
            cv2.line(img, (x0, k + off), (x1, k + off), (70, 60, 110), 3)
    img = np.clip(img.astype(np.float32) * np.asarray(gain, np.float32), 0, 255).astype(np.uint8)
    dx, dy, deg = camera
    if dx or dy or deg:
        m = cv2.getRotationMatrix2D((ss.W / 2, ss.H / 2), deg, 1.0)
        m[:, 2] += (dx, dy)
        img = cv2.warpAffine(img, m, (ss.W, ss.H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.add(img, _NOISE[i % len(_NOISE)])


def boxes(*xyxy) -> Detections:
    """Tracked person detections with these boxes."""
    if not xyxy:
        return Detections.empty(tracked=True)
    return Detections(np.array(xyxy, np.float32), np.full(len(xyxy), 0.9), np.zeros(len(xyxy)),
                      tracker_id=np.arange(1, len(xyxy) + 1))


class Clock:
    """Feeds frames to an object at FPS on the stream clock; collects the events."""

    def __init__(self, obj, t: float = 0.0):
        self.obj, self.t, self.i, self.events = obj, t, 0, []

    def run(self, seconds: float, dets: Detections | None = None, **frame) -> list:
        """Feed `seconds` of identical-content frames (noise and person texture vary); returns their events."""
        out = []
        for _ in range(max(1, int(round(seconds * FPS)))):
            img = image(i=self.i, **frame)
            out += self.obj.update(dets if dets is not None else boxes(), self.t, 1_790_000_000.0 + self.t, image=img)
            self.t += 1.0 / FPS
            self.i += 1
        self.events += out
        return out


def states(events, facing: str | None = None) -> list[tuple[str, str]]:
    """(facing, state) of each facing_state event (of one facing)."""
    return [(e.data["facing"], e.data["state"]) for e in events
            if e.kind == "facing_state" and (facing is None or e.data["facing"] == facing)]
