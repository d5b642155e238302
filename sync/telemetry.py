"""Periodic device health as `telemetry` events (PUBACK delivery; the first stream dropped under disk pressure)."""
from __future__ import annotations

import logging
import os
import resource
import shutil
import threading
import time
from typing import Callable

from edge.core.events import Event

log = logging.getLogger(__name__)


def health_sample(started: float, extra: dict | None = None, disk_path: str = ".") -> dict:
    """One health record: uptime, load, process RSS and CPU, free disk, plus `extra` (sync metrics)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        load1 = None
    try:
        disk_free_mb = round(shutil.disk_usage(disk_path).free / 2**20, 1)
    except OSError:
        disk_free_mb = None
    return {"uptime_s": round(time.time() - started, 1), "load1": load1, "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
            "max_rss_mb": round(ru.ru_maxrss / 1024, 1), "disk_free_mb": disk_free_mb, **(extra or {})}


class TelemetryLoop:
    """Emits a `health` telemetry event every `interval_s` into `emit` (the outbox)."""

    def __init__(self, emit: Callable[[Event], object], interval_s: float, extra: Callable[[], dict],
                 disk_path: str = ".") -> None:
        self._emit, self.interval_s, self._extra, self._disk = emit, interval_s, extra, disk_path
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.time()

    def start(self) -> None:
        if self.interval_s <= 0:
            return
        self._thread = threading.Thread(target=self._run, name="sync-telemetry", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
            self._thread = None

    def sample(self) -> Event:
        return Event("health", health_sample(self._started, self._extra(), self._disk), stream="telemetry")

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._emit(self.sample())
            except Exception:
                log.exception("telemetry sample failed")
