"""OpenVINO backend: reads .tflite directly, OpenVINO IR (.xml + .bin, FP32 or NNCF INT8) and .onnx."""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from edge.backends.base import (Backend, BackendError, ModelLoadError, Session, SessionInfo, TensorSpec,
                                canonical_output_name, select_outputs)
from edge.backends.formats import validate
from edge.core.config_base import StrictModel

log = logging.getLogger(__name__)

NAME = "openvino"
_core = None
_core_lock = threading.Lock()


class OpenVinoOptions(StrictModel):
    """Plug-in options of the OpenVINO backend."""

    device: str = "CPU"
    performance_hint: Literal["LATENCY", "THROUGHPUT"] = "LATENCY"
    num_streams: int = Field(1, ge=1, le=64, description="parallel infer streams (1 for one frame at a time)")
    threads: int | None = Field(None, ge=1, le=64, description="None: the model's `threads`")
    # f32 by default: on CPUs with AMX/AVX512-BF16 OpenVINO would otherwise silently run in bf16 and drift.
    inference_precision: Literal["f32", "bf16", "f16"] = "f32"
    cache_dir: str = Field("", description="directory for compiled-model blobs (faster start); '' = off")
    cpu_pinning: bool | None = Field(None, description="pin threads to cores; None = OpenVINO's default")


def _version() -> str:
    import openvino as ov

    return ov.get_version()


def core():
    """One shared ov.Core per process (it owns the plug-ins and thread pools)."""
    global _core
    with _core_lock:
        if _core is None:
            import openvino as ov

            _core = ov.Core()
        return _core


def _dims(pshape) -> tuple[int, ...]:
    return tuple(d.get_length() if d.is_static else -1 for d in pshape)


class OpenVinoSession(Session):
    def __init__(self, compiled, path: Path, threads: int, precision: str, opts: OpenVinoOptions):
        self._compiled = compiled
        self._req = compiled.create_infer_request()  # reused: no per-call allocation
        self.inputs = [TensorSpec(min(i.get_names()) if i.get_names() else f"input_{n}",
                                  _dims(i.get_partial_shape()), i.get_element_type().to_dtype().name)
                       for n, i in enumerate(compiled.inputs)]
        self.outputs = [TensorSpec(canonical_output_name(o.get_names(), n), _dims(o.get_partial_shape()),
                                   o.get_element_type().to_dtype().name) for n, o in enumerate(compiled.outputs)]
        for t in self.inputs:
            if t.dtype != "float32":
                raise ModelLoadError(f"{NAME}: cannot load {path}: input {t.name!r} is {t.dtype}; only float32 "
                                     "I/O is supported here (the tflite backend runs int8-I/O models)")
        self._in_index = {t.name: n for n, t in enumerate(self.inputs)}
        props = {}
        for k in ("INFERENCE_NUM_THREADS", "NUM_STREAMS", "PERFORMANCE_HINT", "INFERENCE_PRECISION_HINT"):
            try:
                v = compiled.get_property(k)
                props[k] = v.get_type_name() if hasattr(v, "get_type_name") else str(v)
            except Exception:  # noqa: BLE001 - property not supported by this device
                pass
        self.info = SessionInfo(NAME, precision, threads, str(path), f"openvino {_version()}",
                                {"device": opts.device, "compiled": props, "options": opts.model_dump()})

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = self._check_feeds(feeds)
        try:
            # share_inputs: no input copy; share_outputs=False: OpenVINO hands back fresh arrays (safe to keep)
            res = self._req.infer({self._in_index[k]: v for k, v in feeds.items()}, share_inputs=True,
                                  share_outputs=False)
            return {spec.name: np.asarray(res[n], dtype=np.float32) for n, spec in enumerate(self.outputs)}
        except Exception as e:  # noqa: BLE001 - runtime errors surface as BackendError
            raise BackendError(f"{NAME}: {self.info.path}: run failed: {e}") from e


def prune_outputs(model, outputs, path):
    """The model with only the named results: OpenVINO then compiles (and runs) only what they need."""
    import openvino as ov

    results = model.get_results()
    specs = [TensorSpec(canonical_output_name(r.output(0).get_names(), n), (), "") for n, r in enumerate(results)]
    keep = {s.name for s in select_outputs(specs, outputs, NAME, path)}
    kept = [r for r, s in zip(results, specs) if s.name in keep]
    return ov.Model(kept, model.get_parameters(), model.get_friendly_name())


class OpenVinoBackend(Backend):
    name = NAME
    suffixes = (".xml", ".tflite", ".onnx")
    options_model = OpenVinoOptions

    @classmethod
    def available(cls) -> tuple[bool, str]:
        try:
            return True, f"openvino {_version()}"
        except Exception as e:  # noqa: BLE001 - ImportError or a broken native library
            return False, f"openvino does not import: {type(e).__name__}: {e}"

    def load(self, path: Path, *, threads: int = 2, precision: str = "fp32", outputs=None) -> Session:
        path = Path(path)
        validate(path, NAME, ("ir", "tflite", "onnx"))
        o: OpenVinoOptions = self.options
        n_threads = o.threads or threads
        c = core()
        if o.device not in c.available_devices:
            raise BackendError(f"{NAME}: device {o.device!r} not available here; available: {c.available_devices}")
        config = {"PERFORMANCE_HINT": o.performance_hint, "NUM_STREAMS": str(o.num_streams),
                  "INFERENCE_NUM_THREADS": n_threads, "INFERENCE_PRECISION_HINT": o.inference_precision}
        if o.cpu_pinning is not None:
            config["ENABLE_CPU_PINNING"] = o.cpu_pinning
        if o.cache_dir:
            Path(o.cache_dir).expanduser().mkdir(parents=True, exist_ok=True)
            config["CACHE_DIR"] = str(Path(o.cache_dir).expanduser())
        try:
            model = c.read_model(str(path))
        except Exception as e:  # noqa: BLE001 - frontend errors: corrupt or unsupported file
            raise ModelLoadError(f"{NAME}: cannot load {path}: {e}") from None
        if outputs is not None:
            model = prune_outputs(model, outputs, path)
        try:
            compiled = c.compile_model(model, o.device, config)
        except Exception as e:  # noqa: BLE001
            raise BackendError(f"{NAME}: cannot compile {path} for {o.device}: {e}") from None
        s = OpenVinoSession(compiled, path, n_threads, precision, o)
        log.debug("%s: loaded %s (%s)", NAME, path, s.info.extra["compiled"])
        return s
