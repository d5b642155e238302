"""Where the mirror page draws the camera picture (object-fit: cover, panned by object-position), for the page tests:
map between picture pixels and screenshot pixels. Imported by basename (pytest puts tests/tryon on sys.path)."""
from __future__ import annotations

import cv2
import numpy as np

RECT = """const v = document.getElementById('video'), r = v.getBoundingClientRect(), s = getComputedStyle(v);
const pos = s.objectPosition.split(' ').map(parseFloat);
return {x: r.x, y: r.y, w: r.width, h: r.height, nw: v.naturalWidth, nh: v.naturalHeight, fit: s.objectFit,
        px: pos[0] / 100, py: pos[1] / 100, vw: innerWidth, vh: innerHeight, dpr: devicePixelRatio};"""


def video_rect(wd) -> dict:
    """The video element's box, natural size, object-fit and object-position (fractions), the viewport."""
    return wd.js(RECT)


def picture_to_screen(r: dict) -> np.ndarray:
    """2x3 affine matrix from picture pixels to screenshot pixels (object-fit: cover at object-position px, py)."""
    assert r["fit"] == "cover", r
    s = max(r["w"] / r["nw"], r["h"] / r["nh"])
    ox = r["x"] + (r["w"] - r["nw"] * s) * r["px"]
    oy = r["y"] + (r["h"] - r["nh"] * s) * r["py"]
    d = r["dpr"]
    return np.array([[s * d, 0, ox * d], [0, s * d, oy * d]], np.float64)


def expected_screen(picture: np.ndarray, r: dict, shape: tuple[int, int]) -> np.ndarray:
    """What the screenshot should show of `picture` (BGR) under the page's cover + pan, shape (h, w)."""
    return cv2.warpAffine(picture, picture_to_screen(r), (shape[1], shape[0]), flags=cv2.INTER_AREA)


def screen_to_picture(shot: np.ndarray, r: dict) -> np.ndarray:
    """The screenshot resampled back to picture pixels (nw x nh): what the shopper sees of each picture pixel
    (black where the page crops it)."""
    return cv2.warpAffine(shot, picture_to_screen(r), (r["nw"], r["nh"]), flags=cv2.INTER_AREA | cv2.WARP_INVERSE_MAP)
