"""Helpers shared by the alert tests (imported by basename: tests/alerts is on sys.path in pytest's default mode)."""
from __future__ import annotations

import base64
import json
import shutil
import time
import urllib.request
from datetime import datetime, timezone

from edge.alerts import AlertEngine, AlertsConfig
from edge.core.events import ListSink

CHROMIUM, DRIVER = "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"


def wall(hh: int, mm: int = 0, day: int = 2) -> float:
    """A UTC wall time (epoch seconds) on 2026-03-<day> at hh:mm."""
    return datetime(2026, 3, day, hh, mm, tzinfo=timezone.utc).timestamp()


class FakeWall:
    """An injectable wall clock for staff transitions."""

    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def make_engine(*rules: dict, sink=None, wall_clock=None, **alerts) -> tuple[AlertEngine, ListSink]:
    cfg = AlertsConfig.model_validate({"timezone": "UTC", **alerts, "rules": list(rules)})
    sink = sink if sink is not None else ListSink()
    return AlertEngine(cfg, sink, wall_clock=wall_clock or FakeWall(wall(12))), sink


def kinds(events) -> list[str]:
    """Event kinds of a sink or of a list of events."""
    return [e.kind for e in getattr(events, "events", events)]


def wait_until(pred, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return bool(pred())


class WebDriver:
    """Minimal W3C WebDriver client (stdlib) for chromedriver."""

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

    def quit(self):
        try:
            self.cmd("DELETE", "")
        except Exception:  # noqa: BLE001
            pass
