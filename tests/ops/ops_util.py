"""Helpers of the operations tests (a module of its own: `conftest` is ambiguous when several test folders run)."""
from __future__ import annotations

import urllib.request
from pathlib import Path

from waiting import wait_until  # noqa: F401 - shared polling helper, re-exported

REPO = Path(__file__).resolve().parents[2]


def scrape(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        return r.read().decode()


class StreamFeed:
    """Stream progress as Runtime._progress reports it to the supervisor (stream -> monotonic time of its last
    frame), advanced every 20 ms for the streams whose `flowing[name]` is true; close() ends it."""

    def __init__(self, names):
        import threading
        import time

        self.last = {k: time.monotonic() for k in names}
        self.flowing = {k: True for k in names}
        self._done = threading.Event()

        def frames():
            while not self._done.is_set():
                for k in self.last:
                    if self.flowing[k]:
                        self.last[k] = time.monotonic()
                time.sleep(0.02)
        threading.Thread(target=frames, daemon=True).start()

    def progress(self) -> dict:
        return dict(self.last)

    def close(self) -> None:
        self._done.set()
