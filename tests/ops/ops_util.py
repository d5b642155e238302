"""Helpers of the operations tests (a module of its own: `conftest` is ambiguous when several test folders run)."""
from __future__ import annotations

import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def wait_until(pred, timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return bool(pred())


def scrape(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        return r.read().decode()
