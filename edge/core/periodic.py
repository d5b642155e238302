"""A background check that runs `run_once()` every `interval_s` on a daemon thread until stopped."""
from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class Periodic:
    """Subclasses define `run_once()` and set `interval_s` and `thread_name`. A failing run is logged and retried
    at the next interval; `stop()` ends the loop and waits up to `join_s` for it."""

    thread_name = "periodic"
    interval_s = 3600.0
    join_s = 2.0

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run_once(self):
        raise NotImplementedError

    def start(self):
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.join_s)
            self._thread = None

    def _run(self) -> None:
        while True:
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - try again at the next check
                log.exception("%s failed", self.thread_name)
            if self._stop.wait(self.interval_s):
                return
