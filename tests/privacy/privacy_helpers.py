"""Helpers of the privacy tests (imported by basename: tests/privacy is on sys.path in pytest's default mode)."""
from __future__ import annotations

from functools import cache

from waiting import wait_until  # noqa: F401, E402 - shared polling helper (tests/), re-exported


def metric(name: str, **labels) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


@cache
def face_checker(threshold: float = 0.5):
    """The zoo's face detector at MediaPipe's operating point (0.5), on the whole image and 2x2 / 3x3 tiles: the
    independent check that an anonymised image has no face left."""
    from edge.app.config import ModelsSection
    from edge.backends.auto import open_model
    from edge.privacy.faces import FaceDetector
    from models.zoo import ModelZoo

    ref = ModelsSection().face_detector.model_copy(update={"backend": "onnxruntime", "precision": "fp32"})
    return FaceDetector(open_model(ModelZoo(), ref), threshold=threshold)


def faces_in(image_bgr, threshold: float = 0.5) -> list:
    import cv2

    return face_checker(threshold)(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
