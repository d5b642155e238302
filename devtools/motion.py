"""Synthetic-motion 640x480 sequences built from the package photos (slow pan/zoom), so tracking mode is exercised.

Each frame is an affine view of a photo: a window of the photo whose centre and size move smoothly over the
sequence (sub-pixel steps, bilinear sampling). `bus_walk` pastes the full-body man on the left of bus.jpg onto a
blurred copy of the photo and moves him across the frame while he grows (walks towards the camera).
"""
from __future__ import annotations

from collections.abc import Iterator

import cv2
import numpy as np

from calibration.photos import load_photo

W, H = 640, 480
FPS = 30.0


def _ease(i: int, n: int) -> float:
    """0 → 1 with zero velocity at both ends (smooth start and stop)."""
    u = i / max(1, n - 1)
    return 0.5 - 0.5 * np.cos(np.pi * u)


def window_view(img: np.ndarray, cx: float, cy: float, width: float) -> np.ndarray:
    """A W x H view of img: a 4:3 window of `width` image px centred at (cx, cy) (replicated border)."""
    s = W / width
    m = np.array([[s, 0, W / 2 - s * cx], [0, s, H / 2 - s * cy]], np.float64)
    return cv2.warpAffine(img, m, (W, H), flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def pan_zoom(name: str, n: int, start: tuple[float, float, float], end: tuple[float, float, float]
             ) -> Iterator[np.ndarray]:
    """n frames moving the window (cx, cy, width) in photo px from start to end."""
    img = load_photo(name)
    a, b = np.array(start, float), np.array(end, float)
    for i in range(n):
        cx, cy, w = a + (b - a) * _ease(i, n)
        yield window_view(img, cx, cy, w)


def bus_walk(n: int) -> Iterator[np.ndarray]:
    """The left man of bus.jpg walking right and towards the camera over a blurred background."""
    img = load_photo("bus")
    person = img[360:960, 10:250]  # full body, feet included
    bg = cv2.GaussianBlur(cv2.resize(img[300:1000, :], (W, H), interpolation=cv2.INTER_AREA), (0, 0), 6)
    ph, pw = person.shape[:2]
    for i in range(n):
        u = _ease(i, n)
        h = 400 + 60 * u  # person height in frame px
        s = h / ph
        x0, y0 = 140 + 260 * u, H - 10 - h  # top-left of the pasted person
        m = np.array([[s, 0, x0], [0, s, y0]], np.float64)
        frame = bg.copy()
        mask = cv2.warpAffine(np.full((ph, pw), 255, np.uint8), m, (W, H), flags=cv2.INTER_LINEAR)
        warped = cv2.warpAffine(person, m, (W, H), flags=cv2.INTER_LINEAR)
        a = (mask.astype(np.float32) / 255)[..., None]
        frame = (warped * a + frame * (1 - a)).astype(np.uint8)
        yield frame


SEQUENCES = {
    "bus_walk": lambda n: bus_walk(n),
    "astronaut_zoom": lambda n: pan_zoom("astronaut", n, (256, 250, 512), (270, 200, 400)),
    "zidane_pan": lambda n: pan_zoom("zidane", n, (900, 380, 760), (820, 400, 900)),
}


def sequence(n_per_clip: int = 40, clips: tuple[str, ...] = tuple(SEQUENCES)) -> list[np.ndarray]:
    """Concatenated clips, BGR uint8 640x480 frames (a clip change is a camera cut)."""
    frames: list[np.ndarray] = []
    for c in clips:
        frames.extend(SEQUENCES[c](n_per_clip))
    return frames
