"""A captured frame and its timing metadata.

Two clocks: `t_capture` (time.monotonic() when the frame was read) measures processing latency
(motion-to-photon, stage times); the stream clock `t` drives every duration, timer and rule (dwell, smoothing,
sessions, alerts). For recorded media (video files, image folders, the demo) `t` is the media time from the
recording itself (`t_media`), so a file processed faster or slower than real time gives the same durations; for
live cameras and RTSP it is the capture clock.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Frame:
    image: np.ndarray  # HxWx3 uint8, BGR (OpenCV order)
    seq: int  # per-source monotonically increasing frame number
    t_capture: float  # time.monotonic() when the frame was read (processing clock: latency metrics only)
    t_wall: float  # wall-clock time of the frame (recorded media: recording start + t_media)
    source: str = "default"
    meta: dict = field(default_factory=dict)  # per-stage timestamps, e.g. {"t_pose_done": ...}
    t_media: float | None = None  # seconds on the recording's own clock; None for live sources

    @property
    def clock(self) -> str:
        """'media' for recorded media, 'capture' for live sources."""
        return "capture" if self.t_media is None else "media"

    @property
    def t(self) -> float:
        """Stream time in seconds: media time for recorded media, the monotonic capture time for live sources."""
        return self.t_capture if self.t_media is None else self.t_media

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]


def frame_rate(times: Iterable[float], window_s: float, now: float) -> float:
    """Frames per second of the monotonic `times` (ascending) within the last `window_s` s before `now`: (n - 1) over
    their span; 0.0 with fewer than two."""
    recent = [t for t in times if now - t <= window_s]
    if len(recent) < 2:
        return 0.0
    return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)
