"""The mirror page a shopper uses, in headless Chromium at a portrait 1080x1920, a portrait 768x1366 and a
landscape 1280x720 screen, on the real mirror pipeline: a package photo of a person (astronaut.png) or an empty
shop scene as the camera, the real pose model (OpenVINO FP32, segmentation), the real renderer.

Checked from the DOM and the screenshots: the picture fills the viewport (the video box covers >= 95 % of it and
the screenshot matches the served frame under the page's cover + pan), the controls are inside the viewport, at
least 64 px and not covered, the shopper notice is visible; the idle attract screen is shown while nobody is in
front and hidden when a person is; a click on "next" changes the garment in /api/state and shows a toast, a
gesture (MirrorActions.apply with source "swipe") shows its toast with no page work; "Save look" shows a QR
code that OpenCV decodes from the screenshot back to the saved look; it goes away when the shopper leaves.
Screenshots: /tmp/mirror_page/*.png.
"""
from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.core.events import ListSink
from edge.core.frames import Frame
from edge.core.paths import cache_dir
from edge.sources.demo import shop_background
from edge.tryon.actions import parse_look
from edge.tryon.config import SessionSection, TryOnConfig
from edge.tryon.pipeline import TryOnPipeline
from edge.tryon.server import serve
from mirror_view import expected_screen, picture_to_screen, video_rect
from page_checks import assert_notice_visible
from webdriver_client import chromium, require_chromium
from pose_models import fp32_pose_pipeline

require_chromium()
REAL_CACHE = cache_dir()  # read at import, before the try-on fixtures point the cache at a temporary folder
SHOTS = Path("/tmp/mirror_page")
NOTICE = "Camera in use for the mirror. Your image stays on this device."
SIZES = [(1080, 1920), (768, 1366), (1280, 720)]


class SceneCamera:
    """A paced 640x480 camera whose scene is a still photo of a person or the empty shop (`person` switches)."""

    def __init__(self, person_image: np.ndarray, fps: float = 12.0):
        self.images = {True: person_image, False: shop_background(640, 480)}
        self.person = False
        self.fps, self._stop = fps, threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def __iter__(self):
        seq = 0
        while not self._stop.wait(1.0 / self.fps):
            yield Frame(image=self.images[self.person].copy(), seq=seq, t_capture=time.monotonic(),
                        t_wall=time.time(), source="scene")
            seq += 1


@pytest.fixture(scope="module")
def mirror(tryon_cache, catalog):
    from calibration.photos import photo_path
    from devtools.bench.tryon import PhotoSource

    cam = SceneCamera(PhotoSource(str(photo_path("astronaut", REAL_CACHE)), 640, 480, 30.0).image)
    cfg = TryOnConfig(session=SessionSection(absence_timeout_s=1.0))
    pipe = TryOnPipeline(cfg, cam, fp32_pose_pipeline(), ListSink(), catalog=catalog).start()
    srv = serve(pipe, "127.0.0.1", 0, background=True, notice=NOTICE)
    SHOTS.mkdir(exist_ok=True)
    yield pipe, cam, f"http://127.0.0.1:{srv.port}"
    srv.stop()
    pipe.stop()


def _state(base: str) -> dict:
    return json.loads(urllib.request.urlopen(base + "/mirror/api/state", timeout=10).read())


def _wait(fn, what: str, timeout: float = 30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def _person(mirror, present: bool) -> dict:
    """Switch the camera's scene and wait until the mirror agrees (a dressed person, or nobody)."""
    pipe, cam, base = mirror
    cam.person = present
    if present:
        return _wait(lambda: (s := _state(base))["present"] and s["person_x"] is not None
                     and pipe.latest().meta["tryon"]["rendered"] and s, "the person to be dressed")
    return _wait(lambda: not (s := _state(base))["present"] and s, "the mirror to see nobody")


def _open(wd, base: str, size: tuple[int, int]) -> None:
    """Load the page in a viewport of exactly `size` CSS px (the window also has browser chrome around it)."""
    wd.cmd("POST", "/goog/cdp/execute", {"cmd": "Emulation.setDeviceMetricsOverride", "params": {
        "width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": False}})
    wd.cmd("POST", "/url", {"url": base + "/mirror/"})
    wd.wait("const v = document.getElementById('video'); return v.complete && v.naturalWidth === 640 && "
            "document.querySelectorAll('#colours .swatch').length > 0;")


def _shot(wd, name: str) -> np.ndarray:
    img = wd.screenshot()
    cv2.imwrite(str(SHOTS / f"{name}.png"), img)
    return img


CONTROLS = """const out = [];
for (const b of document.querySelectorAll('#controls button')) {
  const r = b.getBoundingClientRect(), top = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);
  out.push({id: b.id || b.dataset.colour, x: r.x, y: r.y, w: r.width, h: r.height,
            hit: !!top && (top === b || b.contains(top))});
}
return out;"""


def _covered_fraction(r: dict) -> float:
    w = max(0.0, min(r["x"] + r["w"], r["vw"]) - max(r["x"], 0.0))
    h = max(0.0, min(r["y"] + r["h"], r["vh"]) - max(r["y"], 0.0))
    return w * h / (r["vw"] * r["vh"])


def test_attract_screen_when_nobody_is_there(mirror, tmp_path):
    pipe, cam, base = mirror
    _person(mirror, False)
    with chromium(tmp_path / "profile", size=SIZES[0]) as wd:
        _open(wd, base, SIZES[0])
        a = wd.wait("const a = document.getElementById('attract'), r = a.getBoundingClientRect();"
                    "return !a.hidden && {w: r.width, h: r.height, vw: innerWidth, vh: innerHeight, text: a.innerText};")
        assert a["w"] >= a["vw"] - 1 and a["h"] >= a["vh"] - 1, a
        assert "Step in front to try on" in a["text"]
        assert_notice_visible(wd, NOTICE)  # the notice stays on top of the attract screen
        shot = _shot(wd, "attract_1080x1920")
        mid = shot[shot.shape[0] // 3:shot.shape[0] * 2 // 3]
        assert np.abs(mid.astype(int) - shop_background(640, 480).mean((0, 1))).mean() > 60, \
            "the attract screen is not painted over the empty scene"
        _person(mirror, True)  # a shopper steps in: the attract screen goes
        wd.wait("return document.getElementById('attract').hidden;", timeout=10)
        _person(mirror, False)  # and comes back when they leave
        wd.wait("return !document.getElementById('attract').hidden;", timeout=10)


@pytest.mark.parametrize("size", SIZES, ids=[f"{w}x{h}" for w, h in SIZES])
def test_picture_fills_the_screen_and_controls_are_usable(mirror, tmp_path, size):
    pipe, cam, base = mirror
    _person(mirror, True)
    with chromium(tmp_path / "profile", size=size) as wd:
        _open(wd, base, size)
        wd.wait("return document.getElementById('attract').hidden;", timeout=10)
        time.sleep(1.2)  # the pan toward the shopper (0.8 s transition) has settled
        r = video_rect(wd)
        assert (r["vw"], r["vh"]) == size, f"viewport {r['vw']}x{r['vh']} (window {size})"
        assert _covered_fraction(r) >= 0.95, r
        for c in wd.js(CONTROLS):
            assert c["w"] >= 64 and c["h"] >= 64, f"touch target too small: {c}"
            assert c["x"] >= 0 and c["y"] >= 0 and c["x"] + c["w"] <= r["vw"] + 0.5 and \
                c["y"] + c["h"] <= r["vh"] + 0.5, f"control outside the viewport: {c}"
            assert c["hit"], f"control covered by something else: {c}"
        assert_notice_visible(wd, NOTICE, avoid="controls")
        frame = cv2.imdecode(np.frombuffer(urllib.request.urlopen(base + "/mirror/frame.jpg", timeout=10).read(),
                                           np.uint8), cv2.IMREAD_COLOR)
        shot = _shot(wd, f"page_{size[0]}x{size[1]}")
        want = expected_screen(frame, r, shot.shape[:2])
        # the band between the top bar and the controls shows the picture, scaled and cropped as computed
        y0, y1 = int(shot.shape[0] * 0.2), int(shot.shape[0] * 0.55)
        diff = np.abs(shot[y0:y1].astype(int) - want[y0:y1].astype(int)).mean()
        assert diff < 12, f"the screenshot does not show the mirror picture filling the screen (mean diff {diff:.1f})"
        # the shopper is kept near the middle of the screen (the crop pans to them)
        m = picture_to_screen(r)
        x_screen = (m[0, 0] * _state(base)["person_x"] * r["nw"] + m[0, 2]) / r["dpr"]
        assert abs(x_screen - r["vw"] / 2) < 0.1 * r["vw"] or r["px"] in (0.0, 1.0), (x_screen, r)


def test_touch_and_gesture_actions_and_saved_look(mirror, tmp_path):
    pipe, cam, base = mirror
    _person(mirror, True)
    with chromium(tmp_path / "profile", size=SIZES[1]) as wd:
        _open(wd, base, SIZES[1])
        before = _state(base)
        skus = pipe.catalog.skus()
        wd.click("#next")  # a real click on the page's button (its POST is asynchronous: wait for the state)
        nxt = skus[(skus.index(before["sku"]) + 1) % len(skus)]
        _wait(lambda: _state(base)["sku"] == nxt, f"the click on #next to select {nxt}", timeout=10)
        toast = wd.wait("const t = document.getElementById('toast'); return !t.hidden && t.innerText;", timeout=5)
        assert "Next garment" in toast and pipe.catalog.entry(nxt).name in toast and "touch" in toast, toast
        _shot(wd, "toast_touch")
        # a gesture goes through the same seam: the page shows its feedback with no page work
        colour = pipe.catalog.entry(nxt).colours[1].name
        pipe.actions.apply("colour", 1, source="swipe")
        toast = wd.wait("const t = document.getElementById('toast'); "
                        "return !t.hidden && t.innerText.includes('swipe') && t.innerText;", timeout=5)
        assert f"Colour: {colour}" in toast, toast
        wd.wait(f"const b = document.querySelector('#colours .swatch.on'); return b && b.dataset.colour === '{colour}';")
        # save the look: a large QR code that decodes back to the garments, colours and size
        wd.click("#save")
        q = wd.wait("const e = document.getElementById('look-qr'), r = e.getBoundingClientRect();"
                    "return !document.getElementById('look').hidden && e.complete && e.naturalWidth > 0 && "
                    "{w: r.width, h: r.height, text: document.getElementById('look').innerText};", timeout=5)
        assert min(q["w"], q["h"]) >= 0.5 * min(SIZES[1]), q
        assert "Scan to keep your look" in q["text"] and "no photo, just the items" in q["text"]
        look = _state(base)["look"]
        shot = _shot(wd, "look_768x1366")
        text, _, _ = cv2.QRCodeDetector().detectAndDecode(shot)
        assert text == look["text"], (text, look)
        fields = parse_look(text)
        assert fields == {"v": "1", "items": [{"sku": nxt, "colour": colour}], "size": pipe.size_suggestion}
        wd.click("#look-close")
        wd.wait("return document.getElementById('look').hidden;", timeout=5)
        # the shopper leaves: the attract screen returns and the look is forgotten
        _person(mirror, False)
        wd.wait("return !document.getElementById('attract').hidden;", timeout=10)
        assert _state(base)["look"] is None
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + "/mirror/api/look.svg", timeout=5)
        assert e.value.code == 404


def test_action_route_rejects_bad_input(mirror):
    pipe, cam, base = mirror
    before = _state(base)

    def post(body: bytes):
        req = urllib.request.Request(base + "/mirror/api/action", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(req, timeout=5)
        return e.value.code, json.loads(e.value.read())["error"]

    for body, status, error in ((b'{"action": "dance"}', 400, "unknown action 'dance'"),
                                (b'{"action": "colour", "value": "purple"}', 400, "no colour 'purple'"),
                                (b'{"action": "garment", "value": "NOPE"}', 400, "unknown SKU 'NOPE'"),
                                (b"{", 400, "not JSON"), (b"[1]", 400, "must be a JSON object"),
                                (b'{"action": "next_garment", "pad": "' + b"x" * 5000 + b'"}', 413, "over 4096")):
        code, message = post(body)
        assert code == status and error in message, (body[:40], code, message)
    after = _state(base)
    assert (after["sku"], after["colour"]) == (before["sku"], before["colour"])
    assert (after["last_action"] or {}).get("seq") == (before["last_action"] or {}).get("seq")


@pytest.fixture(scope="module")
def gesture_mirror(tryon_cache, catalog):
    """The mirror with gestures on (the real hand models, onnxruntime FP32), astronaut.png in front of it."""
    from calibration.photos import photo_path
    from devtools.bench.tryon import PhotoSource
    from edge.app.config import ModelsSection
    from edge.tryon.config import GesturesSection
    from models.zoo import ModelZoo

    cam = SceneCamera(PhotoSource(str(photo_path("astronaut", REAL_CACHE)), 640, 480, 30.0).image)
    cam.person = True
    pipe = TryOnPipeline(TryOnConfig(gestures=GesturesSection(enabled=True)), cam, fp32_pose_pipeline(), ListSink(),
                         catalog=catalog)
    m, fixed = ModelsSection(), {"backend": "onnxruntime", "precision": "fp32"}
    pipe.attach_gestures(m.model_copy(update={"hand_detector": m.hand_detector.model_copy(update=fixed),
                                              "hand_landmarks": m.hand_landmarks.model_copy(update=fixed)}),
                         ModelZoo(REAL_CACHE))
    pipe.start()
    srv = serve(pipe, "127.0.0.1", 0, background=True, notice=NOTICE)
    yield pipe, cam, f"http://127.0.0.1:{srv.port}"
    srv.stop()
    pipe.stop()


GESTURE_SWATCHES = """const t = document.getElementById('top').getBoundingClientRect().bottom,
      c = document.getElementById('colours').getBoundingClientRect().top;
return [...document.querySelectorAll('#gestures .gswatch')].map(e => {
  const r = e.getBoundingClientRect();
  return {x: r.x, y: r.y, w: r.width, h: r.height, colour: e.dataset.colour, top: t, controls: c,
          vw: innerWidth, vh: innerHeight, hidden: document.getElementById('gestures').hidden};
});"""


@pytest.mark.parametrize("size", [SIZES[0], SIZES[2]], ids=["1080x1920", "1280x720"])
def test_gesture_swatches_are_on_screen_where_the_recognizer_looks(gesture_mirror, tmp_path, size):
    """A portrait screen shows only the middle ~42 % of the camera's width: the page reports what it shows, the
    recognizer places the swatches inside it, and the page draws them there, between the top bar and the
    controls, in the shown garment's colours (the pointing gesture's targets are on screen)."""
    pipe, cam, base = gesture_mirror
    _wait(lambda: (s := _state(base))["present"] and s["gestures"] is not None and s, "the shopper")
    with chromium(tmp_path / "profile", size=size) as wd:
        _open(wd, base, size)
        wd.wait("return document.getElementById('attract').hidden;", timeout=10)
        time.sleep(1.5)  # the pan toward the shopper has settled and the page has reported its view since
        sw = wd.wait(f"const s = (() => {{{GESTURE_SWATCHES}}})(); return s.length === 4 && !s[0].hidden && s;",
                     timeout=10)
        _shot(wd, f"gestures_{size[0]}x{size[1]}")
        r = video_rect(wd)
        view = pipe.gestures.recognizer.view
        shown = r["vw"] / (r["nw"] * max(r["w"] / r["nw"], r["h"] / r["nh"]))  # fraction of the width on screen
        assert view[2] - view[0] == pytest.approx(shown, abs=0.02), (view, shown)
        colours = [c.name for c in pipe.catalog.entry(pipe.selection[0]).colours[:4]]
        m = picture_to_screen(r)
        for e, rect, colour in zip(sw, pipe.gestures.recognizer.swatch_rects(), colours):
            assert e["colour"] == colour
            assert e["x"] >= 0 and e["x"] + e["w"] <= e["vw"] + 0.5, f"swatch off screen: {e}"
            assert e["y"] >= e["top"] - 0.5 and e["y"] + e["h"] <= e["controls"] + 0.5, f"under a bar: {e}"
            assert e["w"] >= 48, f"swatch too small to see: {e}"
            # drawn where the recognizer looks for the fingertip (centre of its rect, in screen px)
            cx = (m[0, 0] * (rect[0] + rect[2]) / 2 * r["nw"] + m[0, 2]) / r["dpr"]
            cy = (m[1, 1] * (rect[1] + rect[3]) / 2 * r["nh"] + m[1, 2]) / r["dpr"]
            assert abs(e["x"] + e["w"] / 2 - cx) < 3 and abs(e["y"] + e["h"] / 2 - cy) < 3, (e, cx, cy)
    bad = urllib.request.Request(base + "/mirror/api/state", data=b'{"view": "0.5,0,0.4,1"}', method="POST",
                                 headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:  # a bad view is refused and changes nothing
        urllib.request.urlopen(bad, timeout=5)
    assert err.value.code == 400 and "view" in json.loads(err.value.read())["error"]
