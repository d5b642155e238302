"""Time-based landmark smoothing with MediaPipe semantics: One-Euro per coordinate, low-pass on visibility.

The One-Euro speed term is measured in object sizes per second (value_scale = 1 / object size in px), so the same
parameters behave alike for near and far people. Timestamps are seconds on the stream clock (Frame.t: media time for
recorded media, the monotonic capture time for live sources); the filter derives the sampling rate from them, so a
dropped frame does not change the smoothing strength.
"""
from __future__ import annotations

import math

import numpy as np


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuro:
    """Vectorised One-Euro filter over an array of values (each element filtered independently)."""

    def __init__(self, min_cutoff: float, beta: float, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.reset()

    def reset(self) -> None:
        self._t: float | None = None
        self._raw: np.ndarray | None = None  # last raw value
        self._x: np.ndarray | None = None  # last filtered value
        self._dx: np.ndarray | None = None  # last filtered derivative

    def __call__(self, value: np.ndarray, t: float, value_scale: float = 1.0) -> np.ndarray:
        value = np.asarray(value, np.float64)
        if self._x is None or self._x.shape != value.shape:
            self._t, self._raw, self._x, self._dx = t, value.copy(), value.copy(), np.zeros_like(value)
            return value.copy()
        if t <= self._t:  # not a newer sample: pass through unchanged (MediaPipe does the same)
            return value.copy()
        dt = t - self._t
        self._t = t
        d = (value - self._raw) * value_scale / dt
        self._dx = self._dx + _alpha(self.d_cutoff, dt) * (d - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        self._x = self._x + _alpha(cutoff, dt) * (value - self._x)
        self._raw = value.copy()
        return self._x.copy()


class LowPass:
    """Exponential low-pass: y = a * x + (1 - a) * y_prev (first sample passes through)."""

    def __init__(self, alpha: float):
        self.alpha = alpha
        self._y: np.ndarray | None = None

    def reset(self) -> None:
        self._y = None

    def __call__(self, value: np.ndarray) -> np.ndarray:
        value = np.asarray(value, np.float64)
        self._y = value.copy() if self._y is None or self._y.shape != value.shape else \
            self.alpha * value + (1 - self.alpha) * self._y
        return self._y.copy()


class PoseSmoother:
    """Smooths one person's landmarks (33, 5), aux points (2, 2) and world landmarks (33, 3) across frames.

    As in MediaPipe Pose: image landmarks and aux points use the tracking-ROI size as object scale, world
    landmarks are filtered unscaled, visibility goes through a low-pass filter.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.lm = OneEuro(cfg.min_cutoff, cfg.beta, cfg.d_cutoff)
        self.aux = OneEuro(cfg.aux_min_cutoff, cfg.aux_beta, cfg.d_cutoff)
        self.world = OneEuro(cfg.world_min_cutoff, cfg.world_beta, cfg.d_cutoff)
        self.vis = LowPass(cfg.visibility_alpha)

    def reset(self) -> None:
        for f in (self.lm, self.aux, self.world, self.vis):
            f.reset()

    def __call__(self, landmarks: np.ndarray, aux: np.ndarray, world: np.ndarray, t: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Smoothed (landmarks, aux, world). The aux points (tracking ROI) are always smoothed, as in MediaPipe;
        `enabled=False` turns off the smoothing of the reported landmarks only."""
        # Object scale: side of the square spanned by the aux points (2 x centre-to-scale-point distance, px).
        scale = 2.0 * float(np.hypot(*(aux[1] - aux[0])))
        if scale < 1e-6:
            return landmarks, aux, world
        aux_s = self.aux(aux, t, 1.0 / scale)
        if not self.cfg.enabled:
            return landmarks, aux_s, world
        out = landmarks.copy()
        out[:, 3] = self.vis(landmarks[:, 3])
        out[:, :3] = self.lm(landmarks[:, :3], t, 1.0 / scale)
        return out, aux_s, self.world(world, t, 1.0)
