"""Fixtures for the backend tests: the real model zoo (built on demand, never skipped) and its files."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

log = logging.getLogger(__name__)

MODELS = ("pose_detection", "pose_landmark_full")
# (backend, precision) every backend test needs per model
NEEDED = (("tflite", "fp32"), ("onnxruntime", "fp32"), ("openvino", "fp32"))


def _missing(zoo) -> list[str]:
    from models.zoo import ModelNotBuilt

    out = []
    for name in MODELS:
        for backend, precision in NEEDED:
            try:
                a = zoo.artifact(name, backend, precision)
                if not Path(a.path).is_file():
                    out.append(f"{name}/{backend}/{precision}")
            except ModelNotBuilt:
                out.append(f"{name}/{backend}/{precision}")
    return out


@pytest.fixture(scope="session")
def zoo():
    """The zoo in the configured cache; runs `edge models build` when an artefact the tests need is missing."""
    from models.zoo import ModelZoo

    z = ModelZoo()
    missing = _missing(z)
    if missing:
        log.warning("building models for the backend tests (missing: %s)", ", ".join(missing))
        r = subprocess.run([sys.executable, "-m", "edge.app.cli", "models", "build"], capture_output=True, text=True,
                           timeout=3600)
        assert r.returncode == 0, f"`edge models build` failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        z = ModelZoo()
        assert not _missing(z), f"still missing after build: {_missing(z)}"
    return z


@pytest.fixture(scope="session")
def model_files(zoo) -> dict[tuple[str, str], Path]:
    """(model, kind) -> path, kind in tflite | onnx | ir: the FP32 files of each format."""
    out = {}
    for name in MODELS:
        out[name, "tflite"] = Path(zoo.artifact(name, "tflite", "fp32").path)
        out[name, "onnx"] = Path(zoo.artifact(name, "onnxruntime", "fp32").path)
        out[name, "ir"] = Path(zoo.artifact(name, "openvino", "fp32").path)
    return out
