"""Frame sources: one interface, several kinds (camera, video/RTSP, image folder, demo)."""
from __future__ import annotations

import abc
import logging
import threading
import time
from collections.abc import Iterator

from edge.core.frames import Frame

log = logging.getLogger(__name__)


class SourceError(RuntimeError):
    """A source cannot be opened (bad path, camera missing, stream unreachable)."""


class FrameSource(abc.ABC):
    """Produces Frames. `read()` returns None at the end of a finite source; raises SourceError when lost."""

    name: str = "source"

    @abc.abstractmethod
    def open(self) -> None: ...

    @abc.abstractmethod
    def read(self) -> Frame | None: ...

    def close(self) -> None:
        pass

    def __enter__(self) -> FrameSource:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def frames(self) -> Iterator[Frame]:
        while (f := self.read()) is not None:
            yield f


class Pacer:
    """Sleeps so that successive frames come at most `fps` per second (file/demo sources in real time)."""

    def __init__(self, fps: float, enabled: bool = True):
        self.period = 1.0 / fps
        self.enabled = enabled
        self._next = None

    def wait(self) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self._next is None or now - self._next > 1.0:  # first frame, or we fell far behind: resync
            self._next = now
        elif self._next > now:
            time.sleep(self._next - now)
        self._next += self.period


class LatestFrameReader:
    """Reads a source on its own thread and keeps only the newest frame (drop-oldest back-pressure).

    Live cameras must never queue: a slow consumer gets the latest frame, and `dropped` counts the rest.
    With `drop=False` (files played as fast as they are consumed) the reader waits for the consumer instead.
    Reconnects a lost source every `reconnect_s` seconds; `error` holds the last failure for health checks.
    """

    def __init__(self, source: FrameSource, reconnect_s: float = 2.0, *, drop: bool = True):
        self.source = source
        self.reconnect_s = reconnect_s
        self.drop = drop
        self.dropped = 0
        self.error: str | None = None
        self.ended = False
        self._frame: Frame | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"reader-{source.name}", daemon=True)

    def start(self) -> LatestFrameReader:
        self._thread.start()
        return self

    def _loop(self) -> None:
        opened = False
        while not self._stop.is_set():
            try:
                if not opened:
                    self.source.open()
                    opened = True
                    self.error = None
                frame = self.source.read()
            except SourceError as e:
                if opened:
                    self.source.close()
                opened = False
                if self.error != str(e):
                    log.error("source %s: %s (retrying every %.1fs)", self.source.name, e, self.reconnect_s)
                self.error = str(e)
                self._stop.wait(self.reconnect_s)
                continue
            with self._cond:
                if frame is None:
                    self.ended = True
                    self._cond.notify_all()
                    break
                if not self.drop:
                    self._cond.wait_for(lambda: self._frame is None or self._stop.is_set())
                if self._frame is not None:
                    self.dropped += 1
                self._frame = frame
                self._cond.notify_all()
        if opened:
            self.source.close()

    def get(self, timeout: float | None = None) -> Frame | None:
        """Newest unseen frame; None on timeout or when the source ended."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._frame is not None or self.ended or self._stop.is_set(), timeout):
                return None
            f, self._frame = self._frame, None
            self._cond.notify_all()
            return f

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        self._thread.join(timeout=5)
