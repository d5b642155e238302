"""Review (stop 39) of the device's local pages in headless Chromium on real servers: the staff page (`/staff`), the
shopper notice pages (`/privacy`, `/kiosk/`) and the mirror page (`/mirror/`), at a phone (390x844), a tablet
(820x1180) and a desktop (1366x768) viewport.

Checked: nothing spills out of the screen with long unbroken names (SKUs, facing ids, JSON evidence), readable
contrast, no JavaScript errors, the page says so when the device stops answering (killed, or hung) and recovers,
keyboard access to the staff buttons, the shopper notice icon without an emoji font, the saved-look QR code not
covered, config text never parsed as markup."""
from __future__ import annotations

import html
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from devtools.broker import free_port
from waiting import http_up, wait_until
from webdriver_client import chromium, require_chromium

require_chromium()
REPO = Path(__file__).resolve().parents[2]
SIZES = {"phone": (390, 844), "tablet": (820, 1180), "desktop": (1366, 768)}
LONG = "A3_left_top_SUMMER_PROMO_facing_0123456789_ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # no break opportunity
ERRORS = """window.__errors = [];
addEventListener('error', e => { if (e instanceof ErrorEvent) window.__errors.push(String(e.message)); }, true);
addEventListener('unhandledrejection', e => window.__errors.push('unhandled rejection: ' + e.reason));
const ce = console.error; console.error = (...a) => { window.__errors.push(a.map(String).join(' ')); ce(...a); };"""


def _viewport(wd, name: str) -> None:
    w, h = SIZES[name]
    wd.cmd("POST", "/goog/cdp/execute", {"cmd": "Emulation.setDeviceMetricsOverride", "params": {
        "width": w, "height": h, "deviceScaleFactor": 1, "mobile": name == "phone"}})


def _watch_errors(wd) -> None:
    """Record JavaScript errors (uncaught, unhandled rejections, console.error) of every page loaded from now on."""
    wd.cmd("POST", "/goog/cdp/execute", {"cmd": "Page.addScriptToEvaluateOnNewDocument", "params": {"source": ERRORS}})


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with chromium(tmp_path_factory.mktemp("chrome-profile")) as wd:
        _watch_errors(wd)
        yield wd


# -- staff page ---------------------------------------------------------------------------------------------------
HELP = {"id": "kiosk-help", "title": "Help requested at the kiosk", "metric": "help_requested", "key": "kiosk",
        "severity": "critical"}
QUEUE = {"id": "checkout-queue", "title": "Long queue at checkout", "metric": "queue_length", "key": "checkout",
         "op": ">=", "threshold": 4, "for_s": 0, "severity": "warning"}
SHELF = {"id": "facing", "title": f"Restock {LONG}", "metric": "facing_empty", "key": "A3", "severity": "info"}


def _staff_engine():
    from edge.alerts import AlertEngine, AlertsConfig, Reading
    from edge.core.events import ListSink

    cfg = AlertsConfig.model_validate({"timezone": "UTC", "rules": [HELP, QUEUE, SHELF]})
    engine = AlertEngine(cfg, ListSink(), wall_clock=lambda: 1_772_460_000.0)
    detail = {"sku": LONG, "box": [120, 40, 380, 300]}
    engine.update({("help_requested", "kiosk"): True, ("queue_length", "checkout"): Reading(5, detail=detail),
                   ("facing_empty", "A3"): Reading(True, detail=detail)}, 1.0, 1_772_459_940.0)
    return engine


@pytest.fixture(scope="module")
def staff():
    from edge.alerts.server import serve

    engine = _staff_engine()
    live = {"queue": {"checkout": 5}, "zones": {"entrance": 2, LONG: 1}, "lines": {"door": {"in": 148, "out": 131}}}
    srv = serve(engine, "127.0.0.1", 0, live=lambda: live, background=True,
                retake_reference=lambda facing, by, via: [facing or "A3"])
    yield engine, f"http://127.0.0.1:{srv.port}"
    srv.stop()


SPILL = """const de = document.documentElement, vw = de.clientWidth, bad = [];
for (const card of document.querySelectorAll('#alerts .card, #live, #resolved')) {
  const c = card.getBoundingClientRect();
  for (const e of card.querySelectorAll('*')) {
    if (!e.getClientRects().length) continue;
    const r = e.getBoundingClientRect();
    if (r.right > c.right + 1 || r.left < c.left - 1) bad.push(`${e.tagName}.${e.className}: ${r.left}..${r.right} `
                                                             + `outside its panel ${c.left}..${c.right}`);
  }
}
for (const b of document.querySelectorAll('button')) {
  if (!b.getClientRects().length) continue;
  const r = b.getBoundingClientRect();
  if (r.left < 0 || r.right > vw + 1) bad.push(`button ${b.textContent}: ${r.left}..${r.right} outside 0..${vw}`);
}
return {scroll: de.scrollWidth, width: vw, bad: bad.slice(0, 8), errors: window.__errors};"""


def test_staff_page_with_long_names_fits_phone_tablet_and_desktop(staff, browser):
    """A facing id, SKU or JSON evidence without a break opportunity (underscores, `[120,40,380,300]`) made the staff
    page as wide as that text: on a phone and a tablet the Acknowledge / Resolve buttons were off screen (1379 px of
    page in a 390 px viewport) and on a desktop the title ran under the side panel."""
    _, base = staff
    for name in SIZES:
        _viewport(browser, name)
        browser.cmd("POST", "/url", {"url": base + "/staff"})
        browser.wait("return document.querySelectorAll('#alerts .card').length === 3 && "
                     "document.getElementById('live').textContent.includes('entrance');")
        got = browser.js(SPILL)
        assert got["scroll"] <= got["width"], f"{name}: page {got['scroll']} px wide in {got['width']} px: {got}"
        assert not got["bad"], f"{name}: {got['bad']}"
        assert got["errors"] == [], f"{name}: JavaScript errors {got['errors']}"


CONTRAST = """const rgb = s => (s.match(/[\\d.]+/g) || []).map(Number);
const lum = c => { const [r, g, b] = c.slice(0, 3).map(v => { v /= 255; return v <= 0.03928 ? v / 12.92
                                                             : Math.pow((v + 0.055) / 1.055, 2.4); });
                   return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
const bg = e => { for (; e; e = e.parentElement) { const c = rgb(getComputedStyle(e).backgroundColor);
                  if (c.length === 3 || c[3] > 0.5) return c; } return [255, 255, 255]; };
const bad = [];
for (const e of document.body.querySelectorAll('*')) {
  if (!e.getClientRects().length || e.disabled) continue;
  const own = [...e.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
  if (!own) continue;
  const s = getComputedStyle(e), size = parseFloat(s.fontSize), bold = parseInt(s.fontWeight) >= 700;
  const a = lum(rgb(s.color)), b = lum(bg(e)), ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  const need = size >= 24 || (size >= 18.66 && bold) ? 3 : 4.5;
  if (ratio < need) bad.push(`${e.tagName}.${e.className} "${e.textContent.trim().slice(0, 30)}": `
                             + `${ratio.toFixed(2)}:1 < ${need}:1`);
}
return bad;"""


def test_staff_page_text_has_readable_contrast(staff, browser):
    """Every text on the staff page meets WCAG AA contrast against its background (4.5:1, large text 3:1): the
    WARNING badge was white on amber #d97706 (3.2:1), hard to read on a tablet in a bright shop."""
    _, base = staff
    _viewport(browser, "tablet")
    browser.cmd("POST", "/url", {"url": base + "/staff"})
    browser.wait("return document.querySelectorAll('#alerts .card').length === 3;")
    assert browser.js(CONTRAST) == []


def test_staff_buttons_work_from_the_keyboard(staff, browser):
    """Staff with a keyboard (or a switch) reach Acknowledge with Tab from the note field and press it with Enter."""
    engine, base = staff
    _viewport(browser, "desktop")
    browser.cmd("POST", "/url", {"url": base + "/staff"})
    browser.wait("return document.querySelectorAll('#alerts .card').length === 3;")
    card = "#alerts .card.sev-critical"
    browser.click(f"{card} input.note")
    for key in ("\ue004", "\ue007"):  # Tab, Enter
        if key == "\ue007":
            assert browser.js("return document.activeElement.className;") == "ack"
        browser.cmd("POST", "/actions", {"actions": [{"type": "key", "id": "kb", "actions": [
            {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]}]})
    browser.wait(f"return document.querySelector('{card} .badge.state').textContent === 'acknowledged';")
    assert next(a for a in engine.active() if a["rule"] == "kiosk-help")["state"] == "acked"


# -- the device going away: a page left open on a tablet / the mirror ------------------------------------------------
_STAFF_SERVER = """
import sys, threading
from edge.alerts import AlertEngine, AlertsConfig
from edge.alerts.server import serve
from edge.core.events import ListSink
cfg = AlertsConfig.model_validate({"timezone": "UTC", "rules": [%r]})
engine = AlertEngine(cfg, ListSink())
engine.update({("help_requested", "kiosk"): True}, 1.0, 1772459940.0)
serve(engine, "127.0.0.1", int(sys.argv[1]))
""" % HELP

_MIRROR_SERVER = """
import sys, threading, time
import numpy as np
from edge.core.frames import Frame
from edge.pose.types import PoseResult
from edge.tryon.config import TryOnConfig
from edge.tryon.pipeline import TryOnPipeline
from edge.tryon.server import serve

class Camera:
    def __init__(self):
        self.stopped = threading.Event()
    def stop(self):
        self.stopped.set()
    def __iter__(self):
        k = 0
        while not self.stopped.wait(1 / 15):
            yield Frame(np.full((240, 320, 3), 90, np.uint8), k, time.monotonic(), time.time(), "cam")
            k += 1

class Nobody:
    def process(self, f):
        return PoseResult(f.seq, f.t, f.shape)

pipe = TryOnPipeline(TryOnConfig(), Camera(), Nobody()).start()
serve(pipe, "127.0.0.1", int(sys.argv[1]))
"""


class Device:
    """A page's server in its own process, so it can really die (killed) or hang (SIGSTOP), then come back."""

    def __init__(self, script: str, env: dict):
        self.script, self.env, self.port, self.proc = script, env, free_port(), None

    def start(self) -> Device:
        self.proc = subprocess.Popen([sys.executable, "-c", self.script, str(self.port)], cwd=REPO, env=self.env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        up = wait_until(lambda: http_up(self.port) or self.proc.poll() is not None, timeout=120, interval=0.2)
        assert up and self.proc.poll() is None, f"the server did not start (exit code {self.proc.poll()})"
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def device(tmp_path):
    env = {**os.environ, "STOREFRONT_EDGE_CACHE": str(tmp_path / "cache"), "STOREFRONT_EDGE_DATA": str(tmp_path),
           "PYTHONPATH": str(REPO)}
    started = []

    def make(script: str) -> Device:
        started.append(Device(script, env).start())
        return started[-1]

    yield make
    for d in started:
        d.kill()


STATUS = "const s = document.getElementById('status'); return s.className + ' | ' + s.textContent;"


def test_staff_page_says_when_the_device_stops_answering_and_recovers(device, browser):
    """The staff page left open on a tablet: when the device is killed the status says the connection is lost, when
    it hangs (the process stopped, the TCP connection still open: a wedged device or a dead Wi-Fi link) it said
    "Updated 09:59" for good, its poll waiting forever; it must say so within seconds, and come back to "Updated"
    when the device answers again."""
    dev = device(_STAFF_SERVER)
    _viewport(browser, "phone")
    browser.cmd("POST", "/url", {"url": f"http://127.0.0.1:{dev.port}/staff"})
    browser.wait("return document.querySelectorAll('#alerts .card').length === 1 && "
                 "document.getElementById('status').textContent.startsWith('Updated');")
    os.kill(dev.proc.pid, signal.SIGSTOP)  # hung: connections stay open, nothing answers
    try:
        assert wait_until(lambda: "down" in browser.js(STATUS), timeout=15, interval=0.3), browser.js(STATUS)
    finally:
        os.kill(dev.proc.pid, signal.SIGCONT)
    assert wait_until(lambda: "ok | Updated" in browser.js(STATUS), timeout=15, interval=0.3), browser.js(STATUS)
    dev.kill()
    assert wait_until(lambda: "down" in browser.js(STATUS), timeout=10, interval=0.3), browser.js(STATUS)
    assert "Connection lost" in browser.js(STATUS)
    dev.start()
    assert wait_until(lambda: "ok | Updated" in browser.js(STATUS), timeout=15, interval=0.3), browser.js(STATUS)
    assert browser.js("return window.__errors;") == []


OFFLINE = ("const e = document.getElementById('offline'); if (!e || e.hidden) return null;"
           "const r = e.getBoundingClientRect(), top = document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2);"
           "return {text: e.textContent, on_top: e.contains(top), w: r.width, h: r.height};")


def test_mirror_page_says_when_the_device_is_offline_and_recovers(device, browser):
    """The mirror page stays open on the mirror's screen: when the device went away (killed, or hung) the page kept
    the attract screen or the last frozen picture and said nothing, so a shopper tapped buttons that did nothing.
    Now an offline notice is shown on top of everything within seconds and goes away when the device is back."""
    dev = device(_MIRROR_SERVER)
    _viewport(browser, "tablet")
    browser.cmd("POST", "/url", {"url": f"http://127.0.0.1:{dev.port}/mirror/"})
    browser.wait("const v = document.getElementById('video'); return v.complete && v.naturalWidth === 320 && "
                 "!document.getElementById('attract').hidden;", timeout=60)
    assert browser.js(OFFLINE) is None
    for how in ("hung", "killed"):
        if how == "hung":
            os.kill(dev.proc.pid, signal.SIGSTOP)
        else:
            dev.kill()
        try:
            assert wait_until(lambda: browser.js(OFFLINE), timeout=12, interval=0.3), f"{how}: no offline notice"
            off = browser.js(OFFLINE)
            assert off["on_top"] and off["w"] > 100 and "offline" in off["text"].lower(), off
        finally:
            if how == "hung":
                os.kill(dev.proc.pid, signal.SIGCONT)
            else:
                dev.start()
        assert wait_until(lambda: browser.js(OFFLINE) is None, timeout=15, interval=0.3), f"{how}: still offline"
    assert browser.js("return window.__errors;") == []


# -- privacy and kiosk pages ----------------------------------------------------------------------------------------
def test_privacy_and_kiosk_pages_draw_the_notice_icon_without_an_emoji_font(browser):
    """The notice on /privacy and /kiosk/ began with the camera emoji U+1F4F7: a device without an emoji font (this
    test machine, a kiosk image) drew it as an empty box. The icon is an inline SVG, as on the mirror page, and the
    pages fit every size without JavaScript errors."""
    from edge.core.http_server import LocalHttpServer
    from edge.privacy.config import PrivacyConfig
    from edge.privacy.notice import make_notice_routes

    cfg = PrivacyConfig(notice="Camera in use: it only counts who waits here. No image is kept or sent.")
    srv = LocalHttpServer("127.0.0.1", 0, lambda: (True, {}))
    srv.add_method_routes(make_notice_routes(cfg, kiosk=True))
    srv.start()
    try:
        for name in SIZES:
            _viewport(browser, name)
            for path in ("/privacy", "/kiosk/"):
                browser.cmd("POST", "/url", {"url": f"http://127.0.0.1:{srv.port}{path}"})
                got = browser.wait("""const n = document.getElementById('privacy-notice'); if (!n) return null;
                    const i = n.querySelector('svg'), de = document.documentElement;
                    return {astral: [...n.textContent].filter(c => c.codePointAt(0) > 0xffff),
                            icon: i ? i.getBoundingClientRect().width : 0, text: n.textContent.trim(),
                            scroll: de.scrollWidth, width: de.clientWidth, errors: window.__errors};""")
                assert got["astral"] == [] and got["icon"] >= 12, f"{path} {name}: {got}"
                assert got["text"] == cfg.notice and got["scroll"] <= got["width"], f"{path} {name}: {got}"
                assert got["errors"] == [], got
    finally:
        srv.stop()


# -- mirror page ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """The real mirror pipeline on the mannequin camera (exact poses, real garments and renderer)."""
    from devtools.mannequin import MannequinSource, TruthPose
    from edge.core.events import ListSink
    from edge.tryon.config import TryOnConfig
    from edge.tryon.garments import Catalog
    from edge.tryon.pipeline import TryOnPipeline
    from edge.tryon.server import serve

    cache = tmp_path_factory.mktemp("sfcache")
    mp = pytest.MonkeyPatch()
    mp.setenv("STOREFRONT_EDGE_CACHE", str(cache))
    pipe = TryOnPipeline(TryOnConfig(mirror_view=False), MannequinSource(640, 480, fps=15, n_cycle=1), TruthPose(),
                         ListSink(), catalog=Catalog(cache_dir=cache / "garments")).start()
    srv = serve(pipe, "127.0.0.1", 0, background=True)
    yield pipe, f"http://127.0.0.1:{srv.port}"
    srv.stop()
    pipe.stop()
    mp.undo()


QR = """const q = document.getElementById('look-qr'), l = document.getElementById('look');
if (l.hidden || !q.complete || !q.naturalWidth) return null;
const r = q.getBoundingClientRect(), out = [];
for (let fx = 0.05; fx < 1; fx += 0.1) {
  for (let fy = 0.05; fy < 1; fy += 0.1) {
    const e = document.elementFromPoint(r.x + fx * r.width, r.y + fy * r.height);
    if (e !== q) out.push(`${fx.toFixed(2)},${fy.toFixed(2)}: ${e.id || e.className}`);
  }
}
return {covered: out, toast: !document.getElementById('toast').hidden};"""


def test_the_saved_look_qr_code_is_not_covered_by_the_toast(mirror, browser):
    """"Save look" shows the QR code and the toast "Look saved: ..." at the same moment: the toast (over the dialog)
    hid the top finder patterns of the QR code, so a shopper scanning at once got nothing; on every size the QR code
    is whole, and the page has no JavaScript errors."""
    _, base = mirror
    for name in SIZES:
        _viewport(browser, name)
        browser.cmd("POST", "/url", {"url": base + "/mirror/"})
        browser.wait("const v = document.getElementById('video'); return v.complete && v.naturalWidth === 640 && "
                     "document.querySelectorAll('#colours .swatch').length > 0 && "
                     "document.getElementById('attract').hidden;", timeout=60)
        browser.click("#save")
        got = browser.wait("return (() => {" + QR + "})();")
        assert got["toast"], "the toast should still be showing: the check would prove nothing"
        assert got["covered"] == [], f"{name}: the QR code is covered at {got['covered']}"
        assert browser.js("return window.__errors;") == [], name
        browser.click("#look-close")


def test_the_mirror_title_from_the_config_is_text_not_markup(browser, tmp_path):
    """`[tryon.page] title` goes into the page's <title> and the attract screen: a title with markup in it ("Try <b>
    new</b> looks", a store name with "<") must show as the text configured, never run or add elements."""
    from edge.core.http_server import LocalHttpServer
    from edge.tryon.config import PageSection, TryOnConfig
    from edge.tryon.garments import Catalog
    from edge.tryon.pipeline import TryOnPipeline
    from edge.tryon.server import make_mirror_routes

    title = 'Mirror <img src=x onerror="window.pwned=1"> & more'
    pipe = TryOnPipeline(TryOnConfig(page=PageSection(title=title)), [], None,
                         catalog=Catalog(cache_dir=tmp_path / "garments"))
    srv = LocalHttpServer("127.0.0.1", 0, lambda: (True, {}))
    srv.add_method_routes(make_mirror_routes(pipe), home="/mirror")
    srv.start()
    try:
        page = urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/mirror/", timeout=10).read().decode()
        assert html.escape(title) in page and title not in page
        browser.cmd("POST", "/url", {"url": f"http://127.0.0.1:{srv.port}/mirror/"})
        got = browser.wait("return document.readyState !== 'loading' && "
                           "{title: document.title, imgs: document.querySelectorAll('#attract img').length, "
                           "pwned: window.pwned === undefined ? null : window.pwned};")
        assert got == {"title": title, "imgs": 0, "pwned": None}, got
    finally:
        srv.stop()
        pipe.close_sync()
