"""Model-zoo fixtures: the real cache, built once per session (a no-op when `edge models build` already ran)."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from edge.core.paths import cache_dir


@pytest.fixture(scope="session")
def built_cache() -> Path:
    from models.build.chain import build

    cache = cache_dir()
    build(cache, progress=False)  # builds what is missing; never skipped
    return cache


@pytest.fixture(scope="session")
def cache_as_is() -> Path:
    """The real cache as it is, never built or written (for tests that copy real files out of it); skips when it
    holds no built face detector or no mediapipe wheel."""
    from models.zoo import ModelZoo

    cache = cache_dir()
    if not (ModelZoo(cache).model_dir("face_detection_full_range") / "built.json").is_file() \
            or not any((cache / "downloads").glob("mediapipe-0.10.21-*.whl")):
        pytest.skip(f"no built models in {cache}: run `edge models build` first")
    return cache


@pytest.fixture(scope="session")
def zoo(built_cache):
    from models.zoo import ModelZoo
    return ModelZoo(built_cache)


@pytest.fixture(scope="session")
def train_py(built_cache) -> str:
    """The isolated `train` build venv's python (torch, onnx2torch, NNCF)."""
    from models.build import venvs
    return str(venvs.ensure(built_cache, "train"))


@pytest.fixture(scope="session")
def teacher(zoo) -> Path:
    """The FP32 landmark ONNX that training distils from."""
    return zoo.artifact("pose_landmark_full", "onnxruntime", "fp32").path


@pytest.fixture()
def face_copy(zoo, tmp_path) -> Path:
    """A throw-away copy of the (small) face detector's built folder, for tampering."""
    src = zoo.model_dir("face_detection_full_range")
    dst = tmp_path / "face"
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("work", "logs", ".steps"))
    return dst
