"""SSD anchors of the BlazePose person detector (MediaPipe SsdAnchorsCalculator options)."""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


@lru_cache(maxsize=4)
def ssd_anchors(input_size: int = 224, num_layers: int = 5, strides: tuple[int, ...] = (8, 16, 32, 32, 32),
                offset: float = 0.5) -> np.ndarray:
    """(N, 2) anchor centres in [0, 1]; fixed anchor size (w = h = 1). 2254 for the 224 detector."""
    centres: list[tuple[float, float]] = []
    layer = 0
    while layer < num_layers:
        per_cell, last = 0, layer
        while last < num_layers and strides[last] == strides[layer]:
            per_cell += 2  # aspect ratio 1.0 + the interpolated-scale anchor
            last += 1
        fm = math.ceil(input_size / strides[layer])
        for y in range(fm):
            for x in range(fm):
                centres.extend([((x + offset) / fm, (y + offset) / fm)] * per_cell)
        layer = last
    out = np.array(centres, np.float32)
    out.setflags(write=False)
    return out
