"""Size suggestion from the measured shoulder width (landmark-to-landmark, metres) and a garment's size chart."""
from __future__ import annotations

from collections import deque

import numpy as np


SIZE_HOLD_M = 0.005  # the size suggested now stays until the measurement is this far outside its range


def suggest_size(chart: dict[str, tuple[float, float]], shoulder_width_m: float, keep: str | None = None
                 ) -> str | None:
    """The size whose [lo, hi) shoulder-width range contains the measurement; None without a chart. `keep` (the
    size suggested now) stays while the measurement is within SIZE_HOLD_M of its range: the running median of a
    shopper on a size boundary wanders across it by a millimetre or two, and the page would flip between sizes."""
    if keep in chart:
        lo, hi = chart[keep]
        if lo - SIZE_HOLD_M <= shoulder_width_m < hi + SIZE_HOLD_M:
            return keep
    for size, (lo, hi) in chart.items():
        if lo <= shoulder_width_m < hi:
            return size
    return None


class ShoulderWidthEstimator:
    """Robust running measurement: median of recent samples, reported only once it is stable."""

    def __init__(self, window: int = 45, min_samples: int = 15, max_iqr_m: float = 0.02):
        self.samples: deque[float] = deque(maxlen=window)
        self.min_samples = min_samples
        self.max_iqr_m = max_iqr_m

    def add(self, width_m: float, facing: bool = True) -> None:
        """Add a measurement; samples taken while the shopper is turned (foreshortened) should pass facing=False."""
        if facing and 0.2 < width_m < 0.7:
            self.samples.append(float(width_m))

    def reset(self) -> None:
        self.samples.clear()

    def value(self) -> float | None:
        if len(self.samples) < self.min_samples:
            return None
        a = np.asarray(self.samples)
        q1, q3 = np.percentile(a, [25, 75])
        return float(np.median(a)) if q3 - q1 <= self.max_iqr_m else None
