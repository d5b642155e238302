"""Inference backends: one plug-in per runtime behind edge.backends.base.Backend."""
from edge.backends.base import Backend, BackendError, ModelLoadError, Session, SessionInfo, TensorSpec
from edge.backends.registry import available_backends, get_backend, load_session

__all__ = [
    "Backend", "BackendError", "ModelLoadError", "Session", "SessionInfo", "TensorSpec",
    "available_backends", "get_backend", "load_session",
]
