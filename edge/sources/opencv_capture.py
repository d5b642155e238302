"""USB cameras, video files and RTSP streams through OpenCV's VideoCapture.

Video files carry media time from the container's timestamps (frame index / fps when it has none); cameras and
RTSP streams keep the capture clock.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2

from edge.core.frames import Frame
from edge.sources.base import FrameSource, MediaClock, Pacer, SourceError, resolve_start_wall

log = logging.getLogger(__name__)

# RTSP: how long opening a stream or waiting for its next frame may take before the stream counts as lost (OpenCV's
# FFmpeg default is 30 s: a dropped stream went unnoticed, and the reader thread could not be stopped, for that long).
RTSP_TIMEOUT_S = 4.0  # under LatestFrameReader.stop()'s 5 s join


class CaptureSource(FrameSource):
    """kind "camera" (uri = device index or /dev/videoN), "video" (file path) or "rtsp" (URL)."""

    def __init__(self, kind: str, uri: str, *, width: int = 640, height: int = 480, fps: float = 30.0,
                 loop: bool = True, realtime: bool = True, name: str | None = None, start_time: str = ""):
        self.kind, self.uri = kind, uri
        self.width, self.height, self.fps = width, height, fps
        self.loop = loop
        self.start_time = start_time
        self.name = name or f"{kind}:{uri}"
        self._cap: cv2.VideoCapture | None = None
        self._seq = 0
        self._pos = 0  # video: frames read in this pass (where a reopened file goes on)
        self._stretch_warned = False
        self._clock: MediaClock | None = None
        self._pacer = Pacer(enabled=realtime and kind == "video")

    def open(self) -> None:
        if self.kind == "video" and not Path(self.uri).is_file():
            raise SourceError(f"video file not found: {self.uri}")
        cap = self._capture()
        if self.kind == "camera":
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
            cap.set(cv2.CAP_PROP_FPS, self.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        if self.kind == "video" and self._clock is None:
            fps = cap.get(cv2.CAP_PROP_FPS)
            fps = fps if 0 < fps <= 1000 else self.fps
            n = cap.get(cv2.CAP_PROP_FRAME_COUNT)  # the file was written until the recording ended: mtime is its end
            length_s = n / fps if 0 < n < 1e9 else 0.0
            self._clock = MediaClock(fps, resolve_start_wall(self.start_time, self.uri, length_s))
        elif self.kind == "video" and self._pos:  # reopened after a loss: go on where it was, clock and frames
            cap.set(cv2.CAP_PROP_POS_FRAMES, self._pos)
        self._cap = cap

    def _capture(self) -> cv2.VideoCapture:
        """A new opened VideoCapture of the uri; SourceError when it cannot be opened."""
        target: int | str = int(self.uri) if self.kind == "camera" and self.uri.isdigit() else self.uri
        if self.kind == "rtsp":
            ms = int(RTSP_TIMEOUT_S * 1000)
            cap = cv2.VideoCapture(target, cv2.CAP_FFMPEG,
                                   [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
        else:
            cap = cv2.VideoCapture(target, cv2.CAP_ANY)
        if not cap.isOpened():
            cap.release()
            if self.kind == "video" and not Path(self.uri).is_file():
                raise SourceError(f"video file not found: {self.uri}")
            why = ("not a video FFmpeg can decode: corrupt, truncated before its header, or an unsupported codec"
                   if self.kind == "video" else "unplugged, wrong index/path or unreachable")
            raise SourceError(f"cannot open {self.kind} {self.uri!r} ({why})")
        return cap

    def read(self) -> Frame | None:
        if self._cap is None:
            raise SourceError(f"{self.name} is not open")
        ok, img = self._cap.read()
        if not ok:
            if self.kind == "video":
                if self.loop and self._seq > 0:
                    # open the file again rather than seek to frame 0: in some containers (MPEG-TS) that seek lands
                    # a few frames in, so every pass lost its first frames
                    self._cap.release()
                    self._cap = None
                    self._cap = self._capture()
                    self._clock.new_pass()
                    self._pos = 0
                    ok, img = self._cap.read()
                if not ok:
                    return None
            else:  # a live source that stops delivering is lost (unplugged camera, dropped stream)
                raise SourceError(f"{self.kind} {self.uri!r} stopped delivering frames")
        if img.shape[1] != self.width or img.shape[0] != self.height:
            h, w = img.shape[:2]
            if not self._stretch_warned and abs(w * self.height - h * self.width) > 0.02 * w * self.height:
                self._stretch_warned = True
                what = {"video": "file", "rtsp": "stream"}.get(self.kind, "camera")
                log.warning("%s gives %dx%d frames, stretched to the configured %dx%d: people look distorted, which "
                            "costs pose accuracy (fix: set [source] width and height to the %s's aspect ratio)",
                            self.name, w, h, self.width, self.height, what)
            img = cv2.resize(img, (self.width, self.height), interpolation=cv2.INTER_AREA)
        self._seq += 1
        if self.kind != "video":
            return Frame(img, self._seq, time.monotonic(), time.time(), self.name)
        self._pos += 1
        pos_ms = self._cap.get(cv2.CAP_PROP_POS_MSEC)
        t_media, t_wall = self._clock.stamp(pos_ms / 1000.0 if pos_ms >= 0 else None)
        self._pacer.wait(t_media)
        return Frame(img, self._seq, time.monotonic(), t_wall, self.name, t_media=t_media)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
