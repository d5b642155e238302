"""A minimal W3C WebDriver client (stdlib) for Debian's chromedriver + headless Chromium, shared by the page tests
(the mirror page, the staff page). Imported by basename: tests/ is on sys.path (tests/conftest.py)."""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

CHROMIUM, DRIVER = "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"


def require_chromium() -> None:
    if not shutil.which(CHROMIUM) or not shutil.which(DRIVER):
        raise RuntimeError("headless Chromium is required: run `bash scripts/setup.sh --test` (chromium, "
                           "chromium-driver)")


class WebDriver:
    """One Chromium session: JavaScript, element clicks and typing, screenshots."""

    def __init__(self, base: str, profile: str, size: tuple[int, int] = (1180, 820)):
        self.base = base
        caps = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "pageLoadStrategy": "eager",
                "goog:chromeOptions": {"binary": CHROMIUM, "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                    f"--user-data-dir={profile}", f"--window-size={size[0]},{size[1]}"]}}}}
        self.sid = self._call("POST", "/session", caps)["sessionId"]

    def _call(self, method, path, body=None):
        req = urllib.request.Request(self.base + path, method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=60) as r:
            return json.loads(r.read())["value"]

    def cmd(self, method, path, body=None):
        return self._call(method, f"/session/{self.sid}{path}", body)

    def js(self, script, *args):
        return self.cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def find(self, css: str) -> str:
        """Element reference of the first match (for real clicks and typing)."""
        ref = self.cmd("POST", "/element", {"using": "css selector", "value": css})
        return next(iter(ref.values()))

    def click(self, css: str) -> None:
        self.cmd("POST", f"/element/{self.find(css)}/click", {})

    def type(self, css: str, text: str) -> None:
        el = self.find(css)
        self.cmd("POST", f"/element/{el}/clear", {})
        self.cmd("POST", f"/element/{el}/value", {"text": text})

    def wait(self, script, timeout=20.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            v = self.js(script)
            if v:
                return v
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for: {script}")

    def screenshot_png(self) -> bytes:
        return base64.b64decode(self.cmd("GET", "/screenshot"))

    def screenshot(self):
        """The page as a BGR image."""
        import cv2
        import numpy as np

        return cv2.imdecode(np.frombuffer(self.screenshot_png(), np.uint8), cv2.IMREAD_COLOR)

    def quit(self):
        try:
            self.cmd("DELETE", "")
        except Exception:  # noqa: BLE001 - the browser may already be gone
            pass


@contextmanager
def chromium(profile_dir, size: tuple[int, int] = (1180, 820)) -> Iterator[WebDriver]:
    """chromedriver on a free port and one headless Chromium session; both stopped on exit."""
    from devtools.broker import free_port

    require_chromium()
    port = free_port()
    proc = subprocess.Popen([DRIVER, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(base + "/status", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        wd = WebDriver(base, str(profile_dir), size)
        try:
            yield wd
        finally:
            wd.quit()
    finally:
        proc.terminate()
        proc.wait(10)
