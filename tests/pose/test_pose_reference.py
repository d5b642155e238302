"""The MediaPipe reference driver (runs only where its venv exists: `edge bench pose` creates it)."""
from __future__ import annotations

import numpy as np
import pytest

from calibration.photos import load_photo
from edge.pose import reference as mpref
from edge.pose.metrics import drift


@pytest.mark.skipif(not mpref.is_ready(), reason="MediaPipe reference venv not created (edge bench pose does)")
def test_reference_worker_reproduces_fixture(reference):
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
