"""One-Euro and landmark smoothing behaviour (time-based, MediaPipe semantics)."""
from __future__ import annotations

import numpy as np
import pytest

from edge.pose.config import OneEuroConfig
from edge.pose.smoothing import LowPass, OneEuro, PoseSmoother


def run(f: OneEuro, values, fps: float, scale: float = 1.0):
    return [float(f(np.array([v]), i / fps, scale)[0]) for i, v in enumerate(values)]


def test_constant_signal_passes_unchanged():
    assert run(OneEuro(1.0, 0.0), [5.0] * 10, 30) == pytest.approx([5.0] * 10)


def test_first_sample_passes_and_step_lags_then_converges():
    out = run(OneEuro(1.0, 0.0), [0.0] + [10.0] * 60, 30)
    assert out[0] == 0.0
    # beta = 0: plain low-pass at 1 Hz: alpha = 1 / (1 + 30 / (2 pi)) = 0.173
    assert out[1] == pytest.approx(10 / (1 + 30 / (2 * np.pi)), rel=1e-6)
    assert 0 < out[3] < out[10] < 10
    assert out[-1] == pytest.approx(10, abs=0.1)


def test_beta_reduces_lag_when_moving():
    ramp = [float(i) for i in range(30)]  # 30 units per second
    slow = run(OneEuro(0.05, 0.0), ramp, 30)
    fast = run(OneEuro(0.05, 1.0), ramp, 30)
    assert ramp[-1] - fast[-1] < 0.2 * (ramp[-1] - slow[-1])


def test_time_based_same_result_at_any_frame_rate():
    t30 = np.arange(0, 1.0, 1 / 30)
    t60 = np.arange(0, 1.0, 1 / 60)
    f30, f60 = OneEuro(2.0, 0.0), OneEuro(2.0, 0.0)
    y30 = [float(f30(np.array([0.0 if t == 0 else 1.0]), t)[0]) for t in t30][-1]
    y60 = [float(f60(np.array([0.0 if t == 0 else 1.0]), t)[0]) for t in t60][-1]
    assert y30 == pytest.approx(y60, abs=0.03)  # both ~1 s after the step


def test_value_scale_makes_speed_relative_to_object_size():
    # The same motion in px on a 10x bigger object counts as 10x slower: more smoothing (more lag).
    ramp = [float(i) for i in range(20)]
    small = run(OneEuro(0.05, 1.0), ramp, 30, scale=1 / 10)
    big = run(OneEuro(0.05, 1.0), ramp, 30, scale=1 / 100)
    assert ramp[-1] - small[-1] < ramp[-1] - big[-1]


def test_non_increasing_timestamp_passes_through():
    f = OneEuro(1.0, 0.0)
    f(np.array([0.0]), 1.0)
    assert f(np.array([7.0]), 1.0)[0] == 7.0


def test_lowpass():
    lp = LowPass(0.1)
    assert lp(np.array([1.0]))[0] == 1.0
    assert lp(np.array([0.0]))[0] == pytest.approx(0.9)


def test_pose_smoother_disabled_keeps_landmarks_but_smooths_roi_points():
    cfg = OneEuroConfig(enabled=False)
    s = PoseSmoother(cfg)
    lm = np.zeros((33, 5))
    aux = np.array([[100.0, 100.0], [100.0, 0.0]])
    s(lm, aux, np.zeros((33, 3)), 0.0)
    lm2 = lm + 5
    out, aux_s, _ = s(lm2, aux + 5, np.zeros((33, 3)), 1 / 30)
    assert out == pytest.approx(lm2)  # reported landmarks raw
    assert 100 < aux_s[0, 0] < 105  # tracking ROI points still smoothed, as in MediaPipe


def test_pose_smoother_reset_restarts_from_raw():
    s = PoseSmoother(OneEuroConfig())
    aux = np.array([[100.0, 100.0], [100.0, 0.0]])
    s(np.zeros((33, 5)), aux, np.zeros((33, 3)), 0.0)
    s.reset()
    out, _, _ = s(np.full((33, 5), 3.0), aux, np.zeros((33, 3)), 1 / 30)
    assert out[:, :3] == pytest.approx(3.0)
