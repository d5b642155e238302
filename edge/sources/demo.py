"""Demo source made locally: real people from package photos moving through a synthetic shop scene.

People enter, stay (slow pan/zoom so tracking and smoothing are exercised) and leave, so every
pipeline, event and alert path runs with no camera attached.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import cv2
import numpy as np

from edge.core.frames import Frame
from edge.core.paths import cache_dir
from edge.sources.base import FrameSource, MediaClock, Pacer, SourceError, resolve_start_wall

log = logging.getLogger(__name__)

# (photo file in <cache>/photos, crop box as fractions x0, y0, x1, y1) - one person per clip. `edge models build`
# stages the photos (from PyPI wheels, see calibration/photos.py); the demo only reads them.
CLIPS = {
    "mirror": [("astronaut.png", (0.0, 0.0, 1.0, 1.0)), ("bus.jpg", (0.0, 0.2, 0.37, 0.92)),
               ("zidane.jpg", (0.45, 0.0, 1.0, 1.0))],
    "shelf": [("bus.jpg", (0.0, 0.2, 0.37, 0.92)), ("zidane.jpg", (0.55, 0.05, 0.9, 1.0))],  # narrow: shelf in view
}


def shop_background(width: int, height: int) -> np.ndarray:
    """A plain synthetic shop wall and floor (no people)."""
    bg = np.empty((height, width, 3), np.uint8)
    horizon = int(height * 0.7)
    bg[:horizon] = np.linspace(200, 170, horizon, dtype=np.float32)[:, None, None].astype(np.uint8)
    bg[horizon:] = (120, 130, 140)
    for x in range(0, width, max(1, width // 8)):  # shelf uprights
        cv2.rectangle(bg, (x, int(height * 0.1)), (x + 6, horizon), (90, 90, 100), -1)
    return bg


def shelf_background(width: int, height: int) -> np.ndarray:
    """A still shop shelf (the shelf camera's demo): a back panel over two shelf rows of packs in the top 35 % of
    the frame (the packs under device_configs/shelf-camera.toml's facings), wall and floor below."""
    bg = shop_background(width, height)
    top, row = int(height * 0.01), int(height * 0.34)
    cv2.rectangle(bg, (0, top), (width, row), (225, 225, 220), -1)  # back panel
    rng = np.random.default_rng(7)  # the same packs on every start
    for y0, y1 in ((int(height * 0.06), int(height * 0.34)),):
        x = 22
        while x + 20 < width - 16:
            w = int(rng.integers(18, 30))
            colour = tuple(int(c) for c in rng.integers(30, 220, 3))
            cv2.rectangle(bg, (x, y0 + int(rng.integers(0, 8))), (x + w, y1 - 4), colour, -1)
            cv2.rectangle(bg, (x + 3, y0 + 14), (x + w - 3, y0 + 22), (250, 250, 250), -1)  # label
            x += w + 3
        cv2.rectangle(bg, (0, y1 - 4), (width, y1 + 4), (70, 70, 80), -1)  # shelf edge
    return bg


class DemoSource(FrameSource):
    def __init__(self, scene: str = "mirror", *, width: int = 640, height: int = 480, fps: float = 30.0,
                 seconds_per_person: float = 8.0, gap_seconds: float = 1.5, loop: bool = True,
                 realtime: bool = True, media_dir: str | Path | None = None, start_time: str = ""):
        if scene not in CLIPS:
            raise SourceError(f"unknown demo scene {scene!r}; choose one of {sorted(CLIPS)}")
        self.scene = scene
        self.width, self.height, self.fps = width, height, fps
        self.name = f"demo:{scene}"
        self.hold = max(1, int(seconds_per_person * fps))
        self.gap = max(1, int(gap_seconds * fps))
        self.loop = loop
        self._clips: list[np.ndarray] = []
        self._bg = shelf_background(width, height) if scene == "shelf" else shop_background(width, height)
        self._t = 0
        self._seq = 0
        self._pacer = Pacer(realtime)
        self._clock = MediaClock(fps, resolve_start_wall(start_time, None))  # media time = frame index / fps
        self.media_dir = Path(media_dir) if media_dir else cache_dir() / "photos"

    def open(self) -> None:
        self._clips = []
        for photo, (x0, y0, x1, y1) in CLIPS[self.scene]:
            img = cv2.imread(str(self.media_dir / photo), cv2.IMREAD_COLOR)
            if img is None:  # a missing photo should not stop the demo
                log.warning("demo photo %s missing or unreadable; skipping it", self.media_dir / photo)
                continue
            h, w = img.shape[:2]
            self._clips.append(img[int(y0 * h):int(y1 * h), int(x0 * w):int(x1 * w)])
        if not self._clips:
            raise SourceError(f"no demo photos in {self.media_dir}: run `edge models build` (set-up stages them)")

    def _person_frame(self, crop: np.ndarray, k: int) -> np.ndarray:
        """Crop placed in the scene with a slow sway and zoom; k = frame index inside the clip."""
        W, H = self.width, self.height
        ch, cw = crop.shape[:2]
        still = self.scene == "shelf"  # shoppers stand at the shelf (a swaying photo shakes the facings' alignment)
        zoom = 1.0 if still else 1.0 + 0.06 * math.sin(2 * math.pi * k / (self.hold or 1))
        s = min(W / cw, H / ch) * (0.92 if self.scene != "shelf" else 0.6) * zoom  # the shelf stays in view
        nw, nh = int(cw * s), int(ch * s)
        person = cv2.resize(crop, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        dx = 0 if still else int(0.05 * W * math.sin(2 * math.pi * k / (self.hold / 2 or 1)))
        x, y = (W - nw) // 2 + dx, H - nh
        out = self._bg.copy()
        x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + nw), min(H, y + nh)
        out[y0:y1, x0:x1] = person[y0 - y:y1 - y, x0 - x:x1 - x]
        return out

    def read(self) -> Frame | None:
        if not self._clips:
            raise SourceError("demo source is not open")
        period = self.hold + self.gap
        clip_i, k = divmod(self._t, period)
        if clip_i >= len(self._clips):
            if not self.loop:
                return None
            self._t, clip_i, k = 0, 0, 0
            self._clock.new_pass()
        self._t += 1
        img = self._person_frame(self._clips[clip_i], k) if k < self.hold else self._bg.copy()
        t_media, t_wall = self._clock.stamp()
        self._pacer.wait(t_media)
        self._seq += 1
        return Frame(img, self._seq, time.monotonic(), t_wall, self.name, {"demo_clip": clip_i, "demo_k": k},
                     t_media=t_media)
