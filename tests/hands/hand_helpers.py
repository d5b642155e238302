"""Shared by the hand tests: the hand model names and a session on a built zoo artefact."""
from __future__ import annotations

HAND_MODELS = ("palm_detection_full", "palm_detection_lite", "hand_landmark_full", "hand_landmark_lite")


def open_session(zoo, name: str, backend: str = "onnxruntime", precision: str = "fp32"):
    from edge.backends import load_session

    return load_session(backend, zoo.artifact(name, backend, precision).path, threads=2)
