"""TFLite backend: ai-edge-litert (maintained successor of tflite-runtime), tflite-runtime as fallback import.

INT8-I/O models (ai-edge-quantizer) are quantized on the way in and dequantized on the way out, using each
tensor's (scale, zero_point), so callers always see float32.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import logging
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from edge.backends.base import (Backend, BackendError, ModelLoadError, Session, SessionInfo, TensorSpec,
                                canonical_output_name, check_threads, select_outputs)
from edge.backends.formats import validate
from edge.core.config_base import StrictModel

log = logging.getLogger(__name__)

NAME = "tflite"
# runtime name -> (module with Interpreter, distribution name)
RUNTIMES = {"ai-edge-litert": ("ai_edge_litert.interpreter", "ai-edge-litert"),
            "tflite-runtime": ("tflite_runtime.interpreter", "tflite-runtime")}


class TfliteOptions(StrictModel):
    """Plug-in options of the TFLite backend."""

    runtime: Literal["auto", "ai-edge-litert", "tflite-runtime"] = Field(
        "auto", description="auto: ai-edge-litert, else tflite-runtime")
    threads: int | None = Field(None, ge=1, le=64, description="None: the model's `threads`")
    xnnpack: bool = Field(True, description="XNNPACK delegate (default, fastest); off: builtin kernels")


def _import_runtime(which: str):
    """(Interpreter module, 'name version') or BackendError naming what is missing."""
    names = list(RUNTIMES) if which == "auto" else [which]
    errors = []
    for name in names:
        mod, dist = RUNTIMES[name]
        try:
            m = importlib.import_module(mod)
        except Exception as e:  # noqa: BLE001 - ImportError, or a numpy ABI mismatch in the extension
            errors.append(f"{dist}: {type(e).__name__}: {e}")
            continue
        try:
            ver = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            ver = "?"
        return m, f"{dist} {ver}"
    raise BackendError(f"{NAME}: no TFLite runtime imports ({'; '.join(errors)}); "
                       "install ai-edge-litert (or tflite-runtime)")


def _qparams(detail: dict) -> tuple[float, int] | None:
    scale, zp = detail.get("quantization", (0.0, 0))
    return (float(scale), int(zp)) if scale else None


class TfliteSession(Session):
    def __init__(self, interp, path: Path, threads: int, precision: str, version: str, opts: TfliteOptions,
                 outputs=None):
        self._it = interp
        ins, outs = interp.get_input_details(), interp.get_output_details()
        self.inputs = [TensorSpec(d["name"], tuple(int(x) for x in d["shape_signature"]), np.dtype(d["dtype"]).name)
                       for d in ins]
        self.outputs = [TensorSpec(canonical_output_name([d["name"]], n), tuple(int(x) for x in d["shape_signature"]),
                                   np.dtype(d["dtype"]).name) for n, d in enumerate(outs)]
        self._in = {}
        for spec, d in zip(self.inputs, ins):
            q = None
            if spec.dtype != "float32":
                q = _qparams(d)
                if q is None or spec.dtype not in ("int8", "uint8", "int16"):
                    raise ModelLoadError(f"{NAME}: cannot load {path}: input {spec.name!r} is {spec.dtype} without "
                                         "quantization parameters; only float32 or quantized int inputs are supported")
            self._in[spec.name] = (d["index"], np.dtype(d["dtype"]), q)
        self._out = [(spec.name, d["index"], _qparams(d) if spec.dtype != "float32" else None)
                     for spec, d in zip(self.outputs, outs)]
        self.outputs = select_outputs(self.outputs, outputs, NAME, path)  # the interpreter computes all anyway
        self._out = [o for o in self._out if o[0] in {s.name for s in self.outputs}]
        int_io = any(q for _, _, q in self._in.values()) or any(q for _, _, q in self._out)
        self.info = SessionInfo(NAME, precision, threads, str(path), version,
                                {"int8_io": bool(int_io), "options": opts.model_dump()})

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = self._check_feeds(feeds)
        try:
            for name, a in feeds.items():
                idx, dtype, q = self._in[name]
                if q is not None:
                    info = np.iinfo(dtype)
                    a = np.clip(np.round(a / q[0] + q[1]), info.min, info.max).astype(dtype)
                self._it.set_tensor(idx, a)
            self._it.invoke()
            out = {}
            for name, idx, q in self._out:
                t = self._it.get_tensor(idx)  # a copy
                out[name] = ((t.astype(np.float32) - q[1]) * np.float32(q[0]) if q is not None
                             else t.astype(np.float32, copy=False))
            return out
        except Exception as e:  # noqa: BLE001 - runtime errors surface as BackendError
            raise BackendError(f"{NAME}: {self.info.path}: run failed: {e}") from e


class TfliteBackend(Backend):
    name = NAME
    suffixes = (".tflite",)
    options_model = TfliteOptions

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            return True, _import_runtime("auto")[1]
        except BackendError as e:
            return False, str(e)

    def load(self, path: Path, *, threads: int = 2, precision: str = "fp32", outputs=None,
             max_batch: int = 1) -> Session:
        path = Path(path)
        check_threads(threads, NAME)
        validate(path, NAME, ("tflite",))
        o: TfliteOptions = self.options
        mod, version = _import_runtime(o.runtime)
        n = o.threads or threads
        kw = {"model_path": str(path), "num_threads": n}
        if not o.xnnpack:
            kw["experimental_op_resolver_type"] = mod.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        try:
            it = mod.Interpreter(**kw)
            it.allocate_tensors()
        except Exception as e:  # noqa: BLE001 - ValueError on a bad flatbuffer, RuntimeError on unsupported ops
            raise ModelLoadError(f"{NAME}: cannot load {path} with {version}: {e}") from None
        s = TfliteSession(it, path, n, precision, version, o, outputs)
        s.info.extra["batch"] = {"max_batch": 1} if max_batch <= 1 else {
            "max_batch": 1, "reason": f"{NAME}: the interpreter's tensors are allocated for the model's own input "
                                      "shape; it runs one sample per call"}
        log.debug("%s: loaded %s (%s, %d threads, xnnpack=%s)", NAME, path, version, n, o.xnnpack)
        return s
