"""The MediaPipe reference driver, run for real in its own venv (created on first use)."""
from __future__ import annotations

import numpy as np
import pytest

from calibration.photos import load_photo
from devtools import pose_reference as mpref
from devtools.pose_metrics import drift


@pytest.fixture(scope="module")
def reference_venv():
    """The MediaPipe reference venv (created once into the cache with exact pins; ~1 GB, a few minutes)."""
    return mpref.ensure_venv()


def test_reference_worker_reproduces_fixture(reference, reference_venv):
    fx = reference
    with mpref.MediaPipeReference() as ref:
        assert ref.versions["mediapipe"] == "0.10.21"
        ref.open("s", static=True)
        r = ref.process(load_photo("grace_hopper"), "s")
        assert r.landmarks.shape == (33, 5) and r.world.shape == (33, 3) and r.ms > 0
        assert drift(np.asarray(fx["photos"]["grace_hopper"]["landmarks"]), r.landmarks) < 1e-3
        r = ref.process(np.zeros((240, 320, 3), np.uint8), "s")
        assert r.landmarks is None and r.world is None


def test_pins_are_exact():
    assert all("==" in p for p in mpref.PINS)
    assert {p.split("==")[0] for p in mpref.PINS} >= {"mediapipe", "numpy", "protobuf"}
