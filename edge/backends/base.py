"""The one small interface every inference backend implements.

load a model file -> Session with named inputs/outputs -> run(feeds) -> outputs.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np


class BackendError(RuntimeError):
    """A backend is missing, broken, or cannot load/run a model. The message names the backend."""


class ModelLoadError(BackendError):
    """A model file is missing, truncated, corrupt or of the wrong format."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]  # -1 for dynamic dimensions
    dtype: str  # numpy dtype name of the model tensor, e.g. "float32", "int8" (feeds/outputs are float32)


@dataclass(frozen=True)
class SessionInfo:
    backend: str
    precision: str  # "fp32" | "fp16" | "int8" | "mixed"
    threads: int
    path: str
    runtime_version: str = ""  # e.g. "onnxruntime 1.32.0"
    extra: dict = field(default_factory=dict)  # backend options in force, providers, device ...

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "precision": self.precision, "threads": self.threads, "path": self.path,
                "runtime_version": self.runtime_version, "extra": self.extra}


class Session(abc.ABC):
    """A loaded model. Not thread-safe: use one session per thread.

    max_batch: feeds may stack up to this many samples on the first axis (outputs then do too); 1 = the model's
    own shapes. Loaded with `Backend.load(..., max_batch=N)`; a backend or model that cannot batch gives 1 and
    says why in `info.extra["batch"]`."""

    info: SessionInfo
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    max_batch: int = 1

    @abc.abstractmethod
    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run once. feeds are float32 (quantized-I/O models are handled inside); outputs are float32."""

    def close(self) -> None:  # pragma: no cover - most runtimes free on GC
        pass

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _check_feeds(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Feeds as C-contiguous float32, keyed exactly by the input names; BackendError on a mismatch."""
        names = {t.name for t in self.inputs}
        if set(feeds) != names:
            raise BackendError(f"{self.info.backend}: {self.info.path}: feeds {sorted(feeds)} != inputs "
                               f"{sorted(names)}")
        out = {}
        for spec in self.inputs:
            a = np.asarray(feeds[spec.name])
            if a.dtype.kind != "f":  # a uint8 frame cast to 0..255 floats runs and returns nonsense
                raise BackendError(f"{self.info.backend}: {self.info.path}: input {spec.name!r} is {a.dtype.name}; "
                                   "feeds are float32 in the model's input range (preprocess the image, e.g. "
                                   "x.astype(np.float32) / 255, as the manifest's [[inputs]] range says)")
            a = np.ascontiguousarray(a, dtype=np.float32)
            if len(a.shape) != len(spec.shape) or any(d not in (-1, s) for d, s in zip(spec.shape, a.shape)):
                raise BackendError(f"{self.info.backend}: {self.info.path}: input {spec.name!r} has shape "
                                   f"{a.shape}, model expects {spec.shape}")
            out[spec.name] = a
        return out


class Backend(abc.ABC):
    """A backend plug-in: one file per runtime, registered by name. Options: a typed pydantic model per plug-in."""

    name: ClassVar[str]
    suffixes: ClassVar[tuple[str, ...]]  # model file suffixes this backend loads
    options_model: ClassVar[type] | None = None  # pydantic model of the plug-in's options

    def __init__(self, options: Any = None):
        if self.options_model is not None:
            if options is None:
                options = self.options_model()
            elif not isinstance(options, self.options_model):  # a dict; another plug-in's model is an error
                options = self.options_model.model_validate(options)
        self.options = options

    @classmethod
    @abc.abstractmethod
    def available(cls) -> tuple[bool, str]:
        """(True, version) if the runtime imports here, else (False, reason)."""

    @abc.abstractmethod
    def load(self, path: Path, *, threads: int = 2, precision: str = "fp32",
             outputs: Sequence[str] | None = None, max_batch: int = 1) -> Session:
        """Load a model file. Raises ModelLoadError with the path and backend on a bad file.

        outputs: canonical names of the outputs to return (None = all). Runtimes that can prune the graph
        (OpenVINO) then skip the sub-graphs only the other outputs need.
        max_batch: ask for a session whose run() takes up to this many samples stacked on the first axis; the
        session's `max_batch` says what it got (see Session)."""


def select_outputs(specs: list[TensorSpec], wanted: Sequence[str] | None, backend: str, path) -> list[TensorSpec]:
    """The specs named in `wanted` (all when None), in model order; BackendError naming unknown outputs."""
    if wanted is None:
        return list(specs)
    names = {s.name for s in specs}
    unknown = sorted(set(wanted) - names)
    if unknown:
        raise BackendError(f"{backend}: {path}: no output(s) {unknown}; the model has {sorted(names)}")
    return [s for s in specs if s.name in set(wanted)]


def batch_fallback(inputs: list[TensorSpec], max_batch: int, backend: str) -> tuple[int, dict]:
    """(max_batch, info) for runtimes that batch only models whose inputs already have a dynamic first dimension
    (onnxruntime): max_batch when every input has one, else 1 and why."""
    if max_batch <= 1:
        return 1, {"max_batch": 1}
    fixed = [(t.name, t.shape) for t in inputs if not t.shape or t.shape[0] != -1]
    if not fixed:
        return max_batch, {"max_batch": max_batch, "how": "dynamic first dimension of the model"}
    return 1, {"max_batch": 1, "reason": f"{backend}: the model's inputs have a fixed batch ({fixed}); this backend "
                                         "does not rewrite graphs, so it runs one sample per call"}


def check_threads(threads, backend: str) -> int:
    """threads when it is an int >= 1; BackendError naming the backend otherwise (runtimes take 0 or -1 as "all
    cores", or refuse it with an error that blames the model file)."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise BackendError(f"{backend}: threads must be >= 1, got {threads!r} (the model's `threads`, 1..64)")
    return threads


def check_model_file(path: Path, backend: str) -> Path:
    """Cheap checks before handing a file to a runtime (runtimes crash or hang on some garbage)."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{backend}: model file not found: {path}")
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{backend}: model file is empty: {path}")
    return path


def canonical_output_name(names: set[str] | list[str], index: int) -> str:
    """The model's canonical name for an output: its TFLite-style `Identity*` name when it has one, else the
    first of its names, else `Identity` / `Identity_<index>` by position."""
    names = sorted(n for n in names if n)
    for n in names:
        if n == "Identity" or (n.startswith("Identity_") and n[9:].isdigit()):
            return n
    if names:
        return names[0]
    return "Identity" if index == 0 else f"Identity_{index}"
