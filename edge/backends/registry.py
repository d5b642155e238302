"""Registry of backend plug-ins, by name."""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from edge.backends.base import Backend, BackendError, Session

# name -> "module:Class"; modules import their runtime lazily so a missing runtime only hurts its users.
BACKENDS: dict[str, str] = {
    "onnxruntime": "edge.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "openvino": "edge.backends.openvino_backend:OpenVinoBackend",
    "tflite": "edge.backends.tflite_backend:TfliteBackend",
}


def backend_class(name: str) -> type[Backend]:
    """The plug-in class for `name`; BackendError naming it when unknown or its module does not import."""
    if name not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)} or 'auto'")
    mod, cls = BACKENDS[name].split(":")
    try:
        return getattr(importlib.import_module(mod), cls)
    except Exception as e:  # noqa: BLE001 - ImportError, AttributeError, or a broken native library
        raise BackendError(f"backend {name!r} is not usable here: its plug-in {BACKENDS[name]} does not load "
                           f"({type(e).__name__}: {e})") from None


def get_backend(name: str, options: Any = None) -> Backend:
    """An instance of backend `name` with its typed options (a dict, the plug-in's options model, or None)."""
    klass = backend_class(name)
    ok, why = klass.available()
    if not ok:
        raise BackendError(f"backend {name!r} is not usable here: {why}")
    try:
        return klass(options)
    except ValueError as e:  # pydantic ValidationError: bad plug-in options
        errs = getattr(e, "errors", None)
        why = "; ".join(f"{'.'.join(map(str, x['loc'])) or type(options).__name__}: {x['msg']}" for x in errs()) \
            if errs else str(e)
        raise BackendError(f"backend {name!r}: invalid options: {why}") from None


def available_backends() -> dict[str, tuple[bool, str]]:
    """name -> (usable, version or reason)."""
    out = {}
    for name in BACKENDS:
        try:
            out[name] = backend_class(name).available()
        except BackendError as e:
            out[name] = (False, str(e))
    return out


def load_session(backend: str, path: Path, *, threads: int = 2, precision: str = "fp32",
                 options: Any = None, outputs: list[str] | None = None, max_batch: int = 1) -> Session:
    return get_backend(backend, options).load(Path(path), threads=threads, precision=precision, outputs=outputs,
                                              max_batch=max_batch)
