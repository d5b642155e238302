"""The mirror page is served and loads in headless Chromium (via chromedriver); a screenshot shows the garment."""
from __future__ import annotations

import base64
import json
import shutil
import socket
import subprocess
import time
import urllib.request

import cv2
import numpy as np
import pytest

from edge.core.events import ListSink
from edge.tryon.config import TryOnConfig
from devtools.mannequin import MannequinSource, TruthPose
from edge.tryon.pipeline import TryOnPipeline
from edge.tryon.server import serve

CHROMIUM, DRIVER = "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not shutil.which(CHROMIUM) or not shutil.which(DRIVER):
    raise RuntimeError("headless Chromium is required: run `bash scripts/setup.sh --test` (chromium, chromium-driver)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebDriver:
    """Minimal W3C WebDriver client (stdlib) for chromedriver."""

    def __init__(self, base: str, profile: str):
        self.base = base
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "pageLoadStrategy": "eager",
                "goog:chromeOptions": {"binary": CHROMIUM, "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                    f"--user-data-dir={profile}", "--window-size=1000,560"]}}}}
        self.sid = self._call("POST", "/session", caps)["sessionId"]

    def _call(self, method, path, body=None):
        req = urllib.request.Request(self.base + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())["value"] if path != "/session" else json.loads(r.read())["value"]

    def cmd(self, method, path, body=None):
        return self._call(method, f"/session/{self.sid}{path}", body)

    def js(self, script, *args):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def wait(self, script, timeout=20.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            v = self.js(script)
            if v:
                return v
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for: {script}")

    def screenshot(self) -> np.ndarray:
        png = base64.b64decode(self.cmd("GET", "/screenshot"))
        return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)

    def quit(self):
        try:
            self.cmd("DELETE", "")
        except Exception:  # noqa: BLE001
            pass


@pytest.fixture(scope="module")
def mirror(tryon_cache, catalog):
    sink = ListSink()
    pipe = TryOnPipeline(TryOnConfig(mirror_view=False), MannequinSource(640, 480, fps=15, n_cycle=1),
                         TruthPose(), sink, catalog=catalog).start()
    srv = serve(pipe, "127.0.0.1", 0, background=True)
    yield pipe, f"http://127.0.0.1:{srv.port}", sink
    srv.stop()
    pipe.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    port = _free_port()
    proc = subprocess.Popen([DRIVER, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(base + "/status", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    wd = WebDriver(base, str(tmp_path_factory.mktemp("chrome-profile")))
    yield wd
    wd.quit()
    proc.terminate()
    proc.wait(10)


def _video_crop(wd) -> np.ndarray:
    rect = wd.js("const r = document.getElementById('video').getBoundingClientRect();"
                 "return [r.x, r.y, r.width, r.height, window.devicePixelRatio];")
    shot = wd.screenshot()
    x, y, w, h, dpr = (v for v in rect)
    crop = shot[int(y * dpr):int((y + h) * dpr), int(x * dpr):int((x + w) * dpr)]
    return cv2.resize(crop, (640, 480), interpolation=cv2.INTER_AREA)


def test_routes_and_api(mirror):
    pipe, base, _ = mirror
    html = urllib.request.urlopen(base + "/mirror/").read().decode()
    assert "<img id=\"video\"" in html
    cat = json.loads(urllib.request.urlopen(base + "/mirror/api/catalog").read())
    assert {g["sku"] for g in cat["garments"]} >= {"TEE-001", "JKT-002", "GLS-003"}
    bad = urllib.request.Request(base + "/mirror/api/select", data=b'{"sku": "NOPE"}', method="POST")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(bad)
    assert e.value.code == 400
    with urllib.request.urlopen(base + "/mirror/stream.mjpg", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        head = r.read(200)
    assert b"--mirrorframe" in head and b"image/jpeg" in head


def test_page_loads_in_chromium_and_shows_the_garment(mirror, browser):
    pipe, base, sink = mirror
    browser.cmd("POST", "/url", {"url": base + "/mirror/"})
    browser.wait("const v = document.getElementById('video'); return v.complete && v.naturalWidth === 640;")
    browser.wait("return document.querySelectorAll('#garments button').length >= 3;")
    time.sleep(0.5)
    img = _video_crop(browser)
    cv2.imwrite("/tmp/tryon_page_navy.png", img)
    torso = img[200:280, 290:350].reshape(-1, 3).astype(int)  # the mannequin's chest (see mannequin.render_person)
    b, g, r = np.median(torso, axis=0)
    assert b > r + 40 and b > g + 20, f"navy tee expected over the chest, got BGR {b, g, r}"
    # pick the red colour swatch in the page: the video shows a red shirt
    browser.js("document.querySelector('#colours button[data-colour=red]').click();")
    browser.wait("return document.querySelector('#colours button.on') && "
                 "document.querySelector('#colours button.on').dataset.colour === 'red';")
    assert pipe.selection == ("TEE-001", "red")
    time.sleep(1.0)
    img = _video_crop(browser)
    cv2.imwrite("/tmp/tryon_page_red.png", img)
    b, g, r = np.median(img[200:280, 290:350].reshape(-1, 3).astype(int), axis=0)
    assert r > b + 60 and r > g + 60, f"red tee expected over the chest, got BGR {b, g, r}"
    size = browser.wait("const t = document.getElementById('size').textContent;"
                        "return t.startsWith('Suggested size') ? t : null;")
    assert size == "Suggested size: M"  # mannequin shoulders 0.36 m
