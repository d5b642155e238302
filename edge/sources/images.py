"""A folder of images played as a stream (in name order, numbers by value: 2 before 10); media time = image index /
fps."""
from __future__ import annotations

import bisect
import logging
import re
import time
from pathlib import Path

import cv2

from edge.core.frames import Frame
from edge.sources.base import FrameSource, MediaClock, Pacer, SourceError, resolve_start_wall

log = logging.getLogger(__name__)

SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def name_order(path: Path) -> tuple:
    """Sort key: the name with its digit runs compared as numbers (snapshot_2 before snapshot_10, frame before
    frame1)."""
    parts = re.split(r"(\d+)", path.stem)  # text, digits, text, ... (digits at the odd places)
    return tuple((int(x), x) if i % 2 else (x,) for i, x in enumerate(parts)), path.name


class ImageFolderSource(FrameSource):
    def __init__(self, folder: str, *, width: int = 640, height: int = 480, fps: float = 30.0, loop: bool = True,
                 realtime: bool = True, start_time: str = ""):
        self.folder = Path(folder)
        self.width, self.height, self.fps = width, height, fps
        self.loop = loop
        self.start_time = start_time
        self.name = f"images:{folder}"
        self._files: list[Path] = []
        self._i = 0
        self._last: Path | None = None  # the last file taken in this pass
        self._seq = 0
        self._warned: set[Path] = set()  # unreadable files already warned about (once each, not on every pass)
        self._clock: MediaClock | None = None
        self._pacer = Pacer(realtime)

    def open(self) -> None:
        if not self.folder.is_dir():
            raise SourceError(f"image folder not found: {self.folder}")
        # hidden files are no frames (macOS leaves an AppleDouble `._name.jpg` beside each image on a USB stick)
        self._files = sorted((p for p in self.folder.iterdir() if p.suffix.lower() in SUFFIXES
                              and not p.name.startswith(".")), key=name_order)
        if not self._files:
            raise SourceError(f"no images ({', '.join(sorted(SUFFIXES))}) in {self.folder}")
        # reopened after a loss (reader reconnect): go on after the last image taken, never replay the folder
        last = self._last
        self._i = bisect.bisect_right(self._files, name_order(last), key=name_order) if last is not None else 0
        if self._clock is None:
            self._clock = MediaClock(self.fps, resolve_start_wall(self.start_time, str(self._files[0])))

    def read(self) -> Frame | None:
        failures = 0
        while True:
            if self._i >= len(self._files):
                if not self.loop:
                    return None
                self._i, self._last = 0, None
                self._clock.new_pass()
            path = self._last = self._files[self._i]
            self._i += 1
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is not None:
                break
            failures += 1  # an unreadable file is skipped with a warning, not fatal (its time slot stays empty)
            self._clock.stamp()
            if path not in self._warned:
                self._warned.add(path)
                log.warning("skipping unreadable image %s", path)
            if failures >= len(self._files):
                raise SourceError(f"no readable image in {self.folder}")
        t_media, t_wall = self._clock.stamp()
        self._pacer.wait(t_media)
        if img.shape[1] != self.width or img.shape[0] != self.height:
            img = letterbox_to(img, self.width, self.height)
        self._seq += 1
        return Frame(img, self._seq, time.monotonic(), t_wall, self.name, {"path": str(path)}, t_media=t_media)


def letterbox_to(img, width: int, height: int):
    """Fit img into width x height keeping aspect ratio, grey border."""
    import numpy as np

    h, w = img.shape[:2]
    s = min(width / w, height / h)
    nw, nh = max(1, round(w * s)), max(1, round(h * s))
    out = np.full((height, width, 3), 114, np.uint8)
    x, y = (width - nw) // 2, (height - nh) // 2
    out[y:y + nh, x:x + nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    return out
