"""The frame reader survives any error a driver raises, not only SourceError: it records it for health, reconnects
and goes on (before, an OSError from a V4L2 read ended its thread with `error` None and `ended` False)."""
from __future__ import annotations

import time

import numpy as np

from edge.core.frames import Frame
from edge.sources.base import FrameSource, LatestFrameReader


class Flaky(FrameSource):
    """Frames, with an OSError (EIO, as a V4L2 device or NFS folder gives) on reads 3 and 4."""

    name = "cam"

    def __init__(self):
        self.reads = self.opens = 0

    def open(self):
        self.opens += 1

    def read(self):
        self.reads += 1
        if self.reads in (3, 4):
            raise OSError(5, "Input/output error")
        return Frame(np.zeros((4, 4, 3), np.uint8), self.reads, time.monotonic(), time.time())


def test_a_driver_error_is_recorded_and_the_source_reconnected():
    src = Flaky()
    r = LatestFrameReader(src, reconnect_s=0.05).start()
    try:
        seen_error = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and src.reads < 8:
            seen_error = seen_error or r.error
            time.sleep(0.005)
        assert seen_error == "OSError: [Errno 5] Input/output error"
        assert r._thread.is_alive() and not r.ended and src.opens >= 2  # reopened after the error
        f = r.get(timeout=1)
        assert f is not None and f.seq > 4 and r.error is None  # frames flow again, the error cleared
    finally:
        r.stop()
