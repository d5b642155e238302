"""A background check that runs `run_once()` every `interval_s` on a daemon thread until stopped."""
from __future__ import annotations

import logging
import math
import threading
import time

log = logging.getLogger(__name__)


def next_start(due: float, now: float, period: float) -> float:
    """The start after the one at `due` on a fixed schedule of `period`: due + period, or, when a run took longer
    than the period, the first one after `now` (missed starts are skipped, not caught up)."""
    due += period
    if due <= now:
        due = due + (math.floor((now - due) / period) + 1) * period if period > 0 else now
    return due


class Periodic:
    """Subclasses define `run_once()` and set `interval_s` and `thread_name`. Runs start every `interval_s` on a
    fixed (monotonic) schedule, the first at once; a run that takes longer than the period skips the starts it
    missed. A failing run is logged and retried at the next interval; `stop()` ends the loop and waits up to `join_s`
    for it (a run in progress finishes; none starts after the stop)."""

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

    def stop(self) -> bool:
        """Stop the loop; True once its thread has ended, False (logged) while a run is still in progress after
        `join_s`: the caller must not yet take away what run_once uses (call stop() again to wait more)."""
        self._stop.set()
        th = self._thread
        if th is None:
            return True
        th.join(self.join_s)
        if th.is_alive():
            log.warning("%s: a run is still in progress %.1f s after the stop; it ends when that run returns",
                        self.thread_name, self.join_s)
            return False
        self._thread = None
        return True

    def _run(self) -> None:
        due = time.monotonic()
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - try again at the next check
                log.exception("%s failed", self.thread_name)
            now = time.monotonic()
            due = next_start(due, now, self.interval_s)
            if self._stop.wait(due - now):
                return
