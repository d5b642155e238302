"""A captured frame and its timing metadata (carried through the pipeline for motion-to-photon latency)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Frame:
    image: np.ndarray  # HxWx3 uint8, BGR (OpenCV order)
    seq: int  # per-source monotonically increasing frame number
    t_capture: float  # time.monotonic() when the frame was captured
    t_wall: float  # time.time() at capture (for event timestamps)
    source: str = "default"
    meta: dict = field(default_factory=dict)  # per-stage timestamps, e.g. {"t_pose_done": ...}

    @property
    def shape(self) -> tuple[int, int]:
        return self.image.shape[0], self.image.shape[1]
