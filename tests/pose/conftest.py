"""Pose test fixtures: real BlazePose models (zoo artefacts, else the original .tflite from the mediapipe wheel)."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from edge.backends import available_backends, load_session
from edge.core.paths import cache_dir

log = logging.getLogger(__name__)
FIXTURES = Path(__file__).with_name("fixtures")
SOURCE = {"pose_detection": "mediapipe/modules/pose_detection/pose_detection.tflite",
          "pose_landmark_full": "mediapipe/modules/pose_landmark/pose_landmark_full.tflite"}
BACKENDS = ("onnxruntime", "openvino", "tflite")


def _model_path(name: str, backend: str) -> Path:
    """The zoo's fp32 artefact; when the zoo is not built, the wheel's .tflite (OpenVINO and TFLite read it)."""
    from models.zoo import ModelNotBuilt, ModelZoo

    try:
        return ModelZoo().artifact(name, backend, "fp32").path
    except ModelNotBuilt as e:
        if backend == "onnxruntime":
            pytest.fail(f"{name} for onnxruntime not built (run `edge models build`): {e}")
        from models.build.source import extract_member, fetch_wheel

        log.warning("%s: zoo not built, using the original .tflite from the mediapipe wheel", name)
        wheel = fetch_wheel("mediapipe==0.10.21", cache_dir() / "downloads")
        return extract_member(wheel, SOURCE[name], cache_dir() / "test-models" / Path(SOURCE[name]).name)


_SESSIONS: dict = {}


def pose_sessions(backend: str = "openvino"):
    """(detector, landmark) sessions on `backend`, opened once per test run."""
    ok, why = available_backends().get(backend, (False, "unknown"))
    if not ok:
        pytest.fail(f"{backend} not usable here: {why}")
    if backend not in _SESSIONS:
        _SESSIONS[backend] = tuple(load_session(backend, _model_path(n, backend), threads=2)
                                   for n in ("pose_detection", "pose_landmark_full"))
    return _SESSIONS[backend]


@pytest.fixture(scope="session")
def reference() -> dict:
    """MediaPipe Pose 0.10.21 outputs recorded by fixtures/record_reference.py."""
    return json.loads((FIXTURES / "mediapipe_reference.json").read_text())
