"""Hand test fixtures: the real hand models of the zoo (built by `edge models build`, a no-op when built) and the
real hands of the package photos as landmark templates (devtools.hand_scenes)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.core.paths import cache_dir

from hand_helpers import HAND_MODELS, open_session

FIXTURES = Path(__file__).with_name("fixtures")


@pytest.fixture(scope="session")
def hand_zoo():
    from models.build.chain import build
    from models.zoo import ModelZoo

    cache = cache_dir()
    build(cache, only=list(HAND_MODELS), progress=False)  # builds what is missing; never skipped
    return ModelZoo(cache)


@pytest.fixture(scope="session")
def templates(hand_zoo):
    """{open, point, relaxed: [Template]}: the photos' hands found by the full models."""
    from devtools.hand_scenes import find_templates

    t = find_templates(open_session(hand_zoo, "palm_detection_full"), open_session(hand_zoo, "hand_landmark_full"))
    assert t["open"] and t["point"] and t["relaxed"], {k: len(v) for k, v in t.items()}
    return t


@pytest.fixture(scope="session")
def mp_reference() -> dict:
    """MediaPipe Hands 0.10.21 on t1 / zidane, recorded by fixtures/record_reference.py."""
    return json.loads((FIXTURES / "mediapipe_hands_reference.json").read_text())
