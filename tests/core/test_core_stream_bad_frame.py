"""An extra camera's frame that breaks the motion gate (here a 2-D image where BGR is expected) is skipped and
counted as that stream's error; the worker's scheduling goes on (before, the exception left the worker thread)."""
from __future__ import annotations

import time

import numpy as np

from edge.app.config import parse_config
from edge.app.streams import Stream, StreamSet
from edge.core.detections import Detections
from edge.core.frames import Frame
from edge.sources.base import FrameSource, LatestFrameReader


class Frames(FrameSource):
    """Frame 1 is 2-D (a broken decode), the others are BGR."""

    name = "cam2"

    def __init__(self):
        self.n = 0

    def open(self):
        pass

    def read(self):
        self.n += 1
        time.sleep(0.02)
        img = np.zeros((48, 64), np.uint8) if self.n == 1 else np.zeros((48, 64, 3), np.uint8)
        return Frame(img, self.n, time.monotonic(), time.time(), self.name)


def test_a_frame_that_breaks_the_motion_gate_is_skipped():
    cfg = parse_config({"device": {"id": "d", "store": "s", "kind": "shelf-camera"},
                        "models": {"person_detector": {"name": "nanodet_m_416"}},
                        "cameras": [{"id": "cam2", "source": {"type": "demo", "fps": 50}}]}, "<test>")
    reader = LatestFrameReader(Frames(), drop=False).start()
    try:
        stream = Stream(cfg.cameras[0], reader, behaviour=None)
        worker = StreamSet([stream], detect=lambda f: Detections.empty())
        seqs = []
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(seqs) < 3:
            for s in worker._due(time.monotonic()):
                seqs.append(worker._take(s, time.monotonic()).seq)
            time.sleep(0.005)
        assert stream.stats.errors == 1 and seqs[:3] == [2, 3, 4]
    finally:
        reader.stop()
