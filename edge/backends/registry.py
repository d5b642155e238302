"""Registry of backend plug-ins, by name."""
from __future__ import annotations

import importlib
from pathlib import Path

from edge.backends.base import Backend, BackendError, Session

# name -> "module:Class"; modules import their runtime lazily so a missing runtime only hurts its users.
BACKENDS: dict[str, str] = {
    "onnxruntime": "edge.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "openvino": "edge.backends.openvino_backend:OpenVinoBackend",
    "tflite": "edge.backends.tflite_backend:TfliteBackend",
}


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)} or 'auto'")
    mod, cls = BACKENDS[name].split(":")
    klass = getattr(importlib.import_module(mod), cls)
    ok, why = klass.available()
    if not ok:
        raise BackendError(f"backend {name!r} is not usable here: {why}")
    return klass()


def available_backends() -> dict[str, tuple[bool, str]]:
    """name -> (usable, version or reason)."""
    out = {}
    for name, spec in BACKENDS.items():
        mod, cls = spec.split(":")
        try:
            out[name] = getattr(importlib.import_module(mod), cls).available()
        except Exception as e:  # noqa: BLE001 - report any import failure as unusable
            out[name] = (False, f"{type(e).__name__}: {e}")
    return out


def load_session(backend: str, path: Path, *, threads: int = 2, precision: str = "fp32") -> Session:
    return get_backend(backend).load(Path(path), threads=threads, precision=precision)
