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
