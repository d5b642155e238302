"""Frame sources: one interface, several kinds (camera, video/RTSP, image folder, demo)."""
from __future__ import annotations

import abc
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator

from edge.core.frames import Frame, frame_rate

log = logging.getLogger(__name__)


class SourceError(RuntimeError):
    """A source cannot be opened (bad path, camera missing, stream unreachable)."""


class FrameSource(abc.ABC):
    """Produces Frames. `read()` returns None at the end of a finite source; raises SourceError when lost."""

    name: str = "source"
    _pacer: Pacer | None = None  # recorded media played in real time

    @abc.abstractmethod
    def open(self) -> None: ...

    @abc.abstractmethod
    def read(self) -> Frame | None: ...

    def close(self) -> None:
        pass

    def interrupt(self) -> None:
        """Wake a read() that waits for its frame's due time, so a stopping reader joins at once; reads are not
        paced any more."""
        if self._pacer is not None:
            self._pacer.interrupt()

    def __enter__(self) -> FrameSource:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def frames(self) -> Iterator[Frame]:
        while (f := self.read()) is not None:
            yield f


class Pacer:
    """Plays recorded media in real time: `wait(t_media)` sleeps until that media time is due on the monotonic
    clock (anchored at the first frame; re-anchored after a jump back, e.g. a loop, or when far behind)."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._origin: tuple[float, float] | None = None  # (monotonic, media time) of the anchor frame
        self._interrupted = threading.Event()

    def interrupt(self) -> None:
        """End the current wait now and make later ones return at once (the source is being stopped)."""
        self._interrupted.set()

    def wait(self, t_media: float) -> None:
        if not self.enabled or self._interrupted.is_set():
            return
        now = time.monotonic()
        if self._origin is not None:
            due = self._origin[0] + (t_media - self._origin[1])
            if due > now and t_media >= self._origin[1]:
                self._interrupted.wait(due - now)
                return
            if now - due <= 1.0 and t_media >= self._origin[1]:
                return  # slightly late: play on without sleeping
        self._origin = (now, t_media)  # first frame, fell far behind, or time went back: re-anchor


class MediaClock:
    """Timestamps of recorded media: `stamp(container_s)` -> (t_media, t_wall).

    Without container timestamps (image folders, the demo) t_media = frame index / `fps`. With them (video files)
    t_media follows the container while its times increase; a frame whose time does not increase (missing, stalled,
    duplicated) comes one frame period after the previous one. When the container's clock starts again (segments
    joined into one file: its times drop, then increase more than 3 frame periods below the highest time seen),
    t_media goes on from the frame before instead of standing still until the times pass the old ones. A looped file continues its clock
    (each pass starts one frame period after the previous one ended), so durations never run backwards.
    t_wall = `start_wall` (recording start) + t_media.
    """

    def __init__(self, fps: float, start_wall: float):
        self.period = 1.0 / fps
        self.start_wall = start_wall
        self._last = -float("inf")  # last t_media handed out
        self._begin_pass(0.0)

    def _begin_pass(self, offset: float) -> None:
        self._offset = offset  # media time at the start of this pass
        self._index = 0  # frames stamped in this pass
        self._base = (0.0, offset)  # (container time, t_media): t_media = base[1] + container time - base[0]
        self._prev: float | None = None  # the last container time read in this pass
        self._good: float | None = None  # the last container time that increased (timed from the base)
        self._fell_back = False  # the last frame had no increasing container time (timed one period on)

    def new_pass(self) -> None:
        """The file starts again (loop): continue after the last frame."""
        self._begin_pass(self._last + self.period if self._last > -float("inf") else 0.0)

    def stamp(self, container_s: float | None = None) -> tuple[float, float]:
        c, prev = container_s, self._prev
        if c is None and prev is None:  # no container times (yet): frame index / fps
            t = self._offset + self._index * self.period
        elif c is not None and (prev is None or c > prev):
            if self._fell_back and prev is not None and self._good is not None and c < self._good - 3 * self.period:
                # the container's clock started again (well below the highest time seen, not frames that came out
                # of order by a frame or two): go on from the last frame
                self._base = (prev, self._last)
            t = self._base[1] + (c - self._base[0])
            self._good, self._fell_back = c, False
        else:  # no increasing container time: one frame period on
            t = self._last + self.period
            self._fell_back = True
        if c is not None:
            self._prev = c
        self._index += 1
        if self._last > -float("inf"):
            t = max(t, self._last + 1e-6)
        self._last = t
        return t, self.start_wall + t


def resolve_start_wall(start_time: str, path: str | None, duration_s: float = 0.0) -> float:
    """Wall-clock start of a recording from `[source] start_time`: an ISO 8601 time, "now", "mtime" (the file's
    modification time less the recording's duration_s: a recorder writes the file until it ends), or "" (that when
    there is a file, else now)."""
    import os
    from datetime import datetime

    st = (start_time or "").strip()
    if st == "now" or (st == "" and not path):
        return time.time()
    if st in ("", "mtime"):
        try:
            return os.path.getmtime(path) - max(0.0, duration_s) if path else time.time()
        except OSError:
            return time.time()
    try:
        dt = datetime.fromisoformat(st)
    except ValueError:
        raise SourceError(f"source.start_time {st!r} is not ISO 8601, 'now' or 'mtime'") from None
    return dt.timestamp() if dt.tzinfo else dt.astimezone().timestamp()


OPEN_HANG_S = 30.0  # an open() of a lost source taking longer than this is a hang, not a reconnect attempt


class LatestFrameReader:
    """Reads a source on its own thread and keeps only the newest frame (drop-oldest back-pressure).

    Live cameras must never queue: a slow consumer gets the latest frame, and `dropped` counts the rest.
    With `drop=False` (files played as fast as they are consumed) the reader waits for the consumer instead.
    Reconnects a lost source every `reconnect_s` seconds, whatever it raised (SourceError, or a driver's OSError or
    cv2.error); `error` holds the last failure for health checks. A failure is logged once, and again only after
    frames flowed in between.
    """

    def __init__(self, source: FrameSource, reconnect_s: float = 2.0, *, drop: bool = True):
        self.source = source
        self.reconnect_s = reconnect_s
        self.drop = drop
        self.dropped = 0
        self.error: str | None = None
        self._logged: str | None = None  # the failure last logged (again only after frames flowed in between)
        self.ended = False
        self._opening_since: float | None = None  # monotonic start of an open() in progress
        self._read_t: deque[float] = deque(maxlen=600)  # monotonic times of the last frames read from the source
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
                    self._opening_since = time.monotonic()
                    try:
                        self.source.open()
                    finally:
                        self._opening_since = None
                    opened = True
                    self.error = None
                    if self._stop.is_set():  # asked to stop during a slow open: no read (it may block as long again)
                        break
                frame = self.source.read()
            except Exception as e:  # noqa: BLE001 - SourceError, or a driver's OSError / cv2.error: reconnect
                why = str(e) if isinstance(e, SourceError) else f"{type(e).__name__}: {e}"
                if opened:
                    try:
                        self.source.close()
                    except Exception:  # noqa: BLE001 - a broken device may fail to close too
                        log.debug("source %s: close failed", self.source.name, exc_info=True)
                opened = False
                if self._logged != why:
                    self._logged = why
                    log.error("source %s: %s (retrying every %gs)", self.source.name, why, self.reconnect_s,
                              exc_info=not isinstance(e, SourceError))
                self.error = why
                self._stop.wait(self.reconnect_s)
                continue
            with self._cond:
                if frame is None:
                    self.ended = True
                    self._cond.notify_all()
                    break
                self._read_t.append(time.monotonic())
                self._logged = None
                if not self.drop:
                    self._cond.wait_for(lambda: self._frame is None or self._stop.is_set())
                if self._frame is not None:
                    self.dropped += 1
                self._frame = frame
                self._cond.notify_all()
        if opened:
            self.source.close()

    def fps(self, window_s: float = 5.0) -> float:
        """Frames read from the source per second over the last `window_s` s (taken by the consumer or not)."""
        with self._cond:
            times = list(self._read_t)
        return frame_rate(times, window_s, time.monotonic())

    def lost(self, hang_s: float = OPEN_HANG_S) -> str | None:
        """The error of a source this reader knows it lost and is reconnecting to (for the watchdog: not a stall),
        else None; None too once an open() has been stuck for `hang_s` (a driver that hangs: a stall after all)."""
        if self.error is None or self.ended:
            return None
        since = self._opening_since
        return None if since is not None and time.monotonic() - since > hang_s else self.error

    def get(self, timeout: float | None = None) -> Frame | None:
        """Newest unseen frame; None on timeout or when the source ended."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._frame is not None or self.ended or self._stop.is_set(), timeout):
                return None
            f, self._frame = self._frame, None
            self._cond.notify_all()
            if f is not None and not self.drop:
                # held until taken (files as fast as processed): its latency starts when it is handed over, not when
                # it was read during the previous frame's processing (every frame counted as late, and the
                # earliest-deadline scheduler favoured such cameras)
                f.t_capture = time.monotonic()
            return f

    def request_stop(self) -> None:
        """Ask the reader thread to end, without waiting: wakes a paced read and a waiting hand-over (a driver call
        that blocks ends on its own timeout)."""
        self._stop.set()
        self.source.interrupt()
        with self._cond:
            self._cond.notify_all()

    def join(self, deadline: float) -> bool:
        """Wait for the reader thread until `deadline` (time.monotonic()); False, logged, if it is still blocked."""
        if self._thread.ident is not None:
            self._thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            log.warning("source %s: reader thread still blocked in the driver at the stop deadline; left to finish "
                        "on its own", self.source.name)
            return False
        return True

    def stop(self, timeout: float = 5.0) -> None:
        """request_stop(), then join() for up to `timeout` s."""
        self.request_stop()
        self.join(time.monotonic() + timeout)
