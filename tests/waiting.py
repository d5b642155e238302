"""Polling helper shared by the test folders (imported by basename: tests/ is on sys.path via tests/conftest.py)."""
from __future__ import annotations

import time


def wait_until(pred, timeout: float, interval: float = 0.02) -> bool:
    """True as soon as pred() is true, polling every `interval` s; pred()'s last answer after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return bool(pred())


def feed_until_dropped(alive, send, timeout: float, interval: float = 0.05) -> int:
    """Call send(k, noise) with a fresh 640x480 noise image (~0.5 MB as JPEG) every `interval` s while alive() is
    true, for at most `timeout` s: fills a stalled client's socket buffers. Returns how many were sent."""
    import numpy as np

    rng = np.random.default_rng(0)
    deadline, k = time.monotonic() + timeout, 0
    while alive() and time.monotonic() < deadline:
        send(k, rng.integers(0, 255, (480, 640, 3), np.uint8))
        k += 1
        time.sleep(interval)
    return k


def http_up(port: int, path: str = "/healthz") -> bool:
    """Whether 127.0.0.1:port answers `path` (any status below 400) within 1 s."""
    import urllib.request

    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=1)
        return True
    except OSError:
        return False
