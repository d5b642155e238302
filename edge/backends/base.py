"""The one small interface every inference backend implements.

load a model file -> Session with named inputs/outputs -> run(feeds) -> outputs.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np


class BackendError(RuntimeError):
    """A backend is missing, broken, or cannot load/run a model. The message names the backend."""


class ModelLoadError(BackendError):
    """A model file is missing, truncated, corrupt or of the wrong format."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]  # -1 for dynamic dimensions
    dtype: str  # numpy dtype name, e.g. "float32", "int8"


@dataclass(frozen=True)
class SessionInfo:
    backend: str
    precision: str  # "fp32" | "fp16" | "int8" | "mixed"
    threads: int
    path: str
    extra: dict = field(default_factory=dict)


class Session(abc.ABC):
    """A loaded model. Not thread-safe: use one session per thread."""

    info: SessionInfo
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    @abc.abstractmethod
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once. feeds are float32 (quantized-I/O models are handled inside); outputs are float32."""

    def close(self) -> None:  # pragma: no cover - most runtimes free on GC
        pass


class Backend(abc.ABC):
    """A backend plug-in: one file per runtime, registered by name."""

    name: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]]  # model file suffixes this backend loads

    @classmethod
    @abc.abstractmethod
    def available(cls) -> tuple[bool, str]:
        """(True, version) if the runtime imports here, else (False, reason)."""

    @abc.abstractmethod
    def load(self, path: Path, *, threads: int = 2, precision: str = "fp32") -> Session:
        """Load a model file. Raises ModelLoadError with the path and backend on a bad file."""


def check_model_file(path: Path, backend: str) -> Path:
    """Cheap checks before handing a file to a runtime (runtimes crash or hang on some garbage)."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{backend}: model file not found: {path}")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{backend}: model file is empty: {path}")
    return path
