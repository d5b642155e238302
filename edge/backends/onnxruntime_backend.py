"""onnxruntime backend: loads .onnx files (FP32 or INT8 QDQ) on the CPU execution provider by default."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from edge.backends.base import (Backend, BackendError, ModelLoadError, Session, SessionInfo, TensorSpec,
                                batch_fallback, check_threads, select_outputs)
from edge.backends.formats import validate
from edge.core.config_base import StrictModel

log = logging.getLogger(__name__)

NAME = "onnxruntime"
_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int8)": "int8",
           "tensor(uint8)": "uint8", "tensor(int32)": "int32", "tensor(int64)": "int64"}


class OrtOptions(StrictModel):
    """Plug-in options of the onnxruntime backend."""

    intra_op_threads: int | None = Field(None, ge=1, le=64, description="None: the model's `threads`")
    inter_op_threads: int = Field(1, ge=1, le=64)
    execution_mode: Literal["sequential", "parallel"] = "sequential"
    graph_optimization: Literal["disable", "basic", "extended", "all"] = "all"
    providers: list[str] = Field(default_factory=lambda: ["CPUExecutionProvider"])
    # Off by default: the pipeline's other stages (capture, render) share the cores. On a busy 2-core box the
    # landmark model ran in 45 ms without spinning vs 79 ms with it. Turn it on for a device that does nothing else.
    allow_spinning: bool = Field(False, description="spin-wait worker threads between ops")
    io_binding: bool = Field(False, description="bind pre-allocated output buffers (saves a copy on big outputs)")


def _version() -> str:
    import onnxruntime as ort

    return ort.__version__


def _dims(shape) -> tuple[int, ...]:
    return tuple(d if isinstance(d, int) and d >= 0 else -1 for d in shape)


def check_providers(requested: list[str], got: list[str], path) -> None:
    """BackendError naming the requested execution providers the session did not get (ORT appends the CPU
    provider to every session, so extra ones are fine)."""
    missing = [p for p in requested if p not in got]
    if missing:
        raise BackendError(f"{NAME}: {path}: execution provider(s) {missing} did not start (the session has {got}); "
                           "fix the provider's installation or remove it from [backends.onnxruntime] providers")


class OrtSession(Session):
    def __init__(self, sess, path: Path, threads: int, precision: str, opts: OrtOptions, outputs=None):
        self._sess = sess
        self.inputs = [TensorSpec(i.name, _dims(i.shape), _DTYPES.get(i.type, i.type)) for i in sess.get_inputs()]
        self.outputs = select_outputs([TensorSpec(o.name, _dims(o.shape), _DTYPES.get(o.type, o.type))
                                       for o in sess.get_outputs()], outputs, NAME, path)
        for t in self.inputs:
            if t.dtype != "float32":
                raise ModelLoadError(f"{NAME}: cannot load {path}: input {t.name!r} is {t.dtype}; "
                                     "only float32 I/O is supported (quantize with QDQ and float I/O)")
        self._names = [o.name for o in self.outputs]
        self.info = SessionInfo(NAME, precision, threads, str(path), f"onnxruntime {_version()}",
                                {"providers": sess.get_providers(), "options": opts.model_dump()})
        self._binding = None
        if opts.io_binding and all(-1 not in o.shape for o in self.outputs):
            self._bufs = {o.name: np.empty(o.shape, np.float32) for o in self.outputs}
            self._binding = sess.io_binding()
            for name, buf in self._bufs.items():
                self._binding.bind_output(name, "cpu", 0, np.float32, buf.shape, buf.ctypes.data)

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = self._check_feeds(feeds)
        try:
            if self._binding is not None:
                for name, a in feeds.items():
                    self._binding.bind_cpu_input(name, a)
                self._sess.run_with_iobinding(self._binding)
                return {n: b.copy() for n, b in self._bufs.items()}
            outs = self._sess.run(self._names, feeds)
        except Exception as e:  # noqa: BLE001 - runtime errors surface as BackendError
            raise BackendError(f"{NAME}: {self.info.path}: run failed: {e}") from e
        return {n: np.asarray(o, dtype=np.float32) for n, o in zip(self._names, outs)}


class OnnxRuntimeBackend(Backend):
    name = NAME
    suffixes = (".onnx",)
    options_model = OrtOptions

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            return True, f"onnxruntime {_version()}"
        except Exception as e:  # noqa: BLE001 - ImportError or a broken native library
            return False, f"onnxruntime does not import: {type(e).__name__}: {e}"

    def load(self, path: Path, *, threads: int = 2, precision: str = "fp32", outputs=None,
             max_batch: int = 1) -> Session:
        import onnxruntime as ort

        path = Path(path)
        check_threads(threads, NAME)
        validate(path, NAME, ("onnx",))
        o: OrtOptions = self.options
        missing = [p for p in o.providers if p not in ort.get_available_providers()]
        if missing:
            raise BackendError(f"{NAME}: execution provider(s) {missing} not available here; "
                               f"available: {ort.get_available_providers()}")
        so = ort.SessionOptions()
        so.intra_op_num_threads = o.intra_op_threads or threads
        so.inter_op_num_threads = o.inter_op_threads
        so.execution_mode = (ort.ExecutionMode.ORT_SEQUENTIAL if o.execution_mode == "sequential"
                             else ort.ExecutionMode.ORT_PARALLEL)
        level = ort.GraphOptimizationLevel
        so.graph_optimization_level = {"disable": level.ORT_DISABLE_ALL, "basic": level.ORT_ENABLE_BASIC,
                                       "extended": level.ORT_ENABLE_EXTENDED, "all": level.ORT_ENABLE_ALL,
                                       }[o.graph_optimization]
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if o.allow_spinning else "0")
        so.log_severity_level = 3
        try:
            # enable_fallback=0: where a requested provider fails to start, ORT's Python wrapper would otherwise
            # print to stdout and quietly retry on the CPU provider
            sess = ort.InferenceSession(str(path), sess_options=so, providers=o.providers, enable_fallback=0)
        except Exception as e:  # noqa: BLE001 - InvalidProtobuf, InvalidGraph, NotImplemented, EP errors ...
            raise ModelLoadError(f"{NAME}: cannot load {path} with providers {o.providers}: {e}") from None
        sess.disable_fallback()  # nor retry a failed run() on the CPU provider
        check_providers(o.providers, sess.get_providers(), path)
        s = OrtSession(sess, path, so.intra_op_num_threads, precision, o, outputs)
        s.max_batch, s.info.extra["batch"] = batch_fallback(s.inputs, max_batch, NAME)
        log.debug("%s: loaded %s (%d threads, %s)", NAME, path, so.intra_op_num_threads, o.providers)
        return s
