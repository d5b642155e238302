"""Checks on local pages in headless Chromium shared by the page tests (imported by basename: tests/ is on sys.path,
see tests/conftest.py): the shopper notice of docs/PRIVACY.md is really shown."""
from __future__ import annotations

import numpy as np

VISIBLE = """const e = document.getElementById('privacy-notice'); if (!e) return null;
const r = e.getBoundingClientRect(), s = getComputedStyle(e), v = document.getElementById(arguments[0]);
const o = v ? v.getBoundingClientRect() : null;
return {text: e.textContent.trim(), x: r.x, y: r.y, w: r.width, h: r.height, vh: innerHeight, vw: innerWidth,
        shown: s.display !== 'none' && s.visibility === 'visible' && parseFloat(s.opacity) > 0.9,
        font: parseFloat(s.fontSize), dpr: devicePixelRatio,
        overlaps: o ? !(r.right <= o.left || r.left >= o.right || r.bottom <= o.top || r.top >= o.bottom) : false};"""


def assert_notice_visible(wd, text: str, avoid: str = "") -> None:
    """The notice's text is `text`, it is displayed inside the viewport in a readable size, not over `avoid`, and
    the screenshot shows its panel colour there (it is really painted)."""
    n = wd.wait("return (" + "() => {" + VISIBLE.replace("arguments[0]", repr(avoid)) + "})();")
    assert n["text"].endswith(text), n["text"]
    assert n["shown"] and n["w"] > 100 and n["h"] > 10 and n["font"] >= 13, n
    assert 0 <= n["x"] and n["x"] + n["w"] <= n["vw"] + 1 and 0 <= n["y"] and n["y"] + n["h"] <= n["vh"] + 1, n
    assert not n["overlaps"], "the notice covers the mirror video"
    shot = wd.screenshot()
    d = n["dpr"]
    y0, y1 = int((n["y"] + 2) * d), int((n["y"] + n["h"] - 2) * d)
    box = shot[y0:y1, int((n["x"] + 6) * d):int((n["x"] + n["w"] - 2) * d)]
    b, g, r = np.median(box.reshape(-1, 3), axis=0)
    assert b > r + 25 and b > 55, f"notice panel colour not painted: BGR {b, g, r}"
