"""OpenVINO backend: reads .tflite directly, OpenVINO IR (.xml + .bin, FP32 or NNCF INT8) and .onnx."""
from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field

from edge.backends.base import (Backend, BackendError, ModelLoadError, Session, SessionInfo, TensorSpec,
                                canonical_output_name, check_threads, select_outputs)
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
    # None: bf16 for the zoo's bf16 artefacts (load(precision="bf16"): their accuracy-critical layers are marked to
    # stay f32), else f32. Never OpenVINO's own default: on CPUs with AMX/AVX512-BF16 it would run every layer in
    # bf16 and drift.
    inference_precision: Literal["f32", "bf16", "f16"] | None = None
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
        n = next(iter(feeds.values())).shape[0] if feeds else 1
        if self.max_batch > 1 and (n > self.max_batch or any(a.shape[0] != n for a in feeds.values())):
            raise BackendError(f"{NAME}: {self.info.path}: batch of {n} (first dimensions "
                               f"{[a.shape[0] for a in feeds.values()]}); this session takes 1..{self.max_batch}")
        try:
            if n > 1 and self.max_batch > 1:  # else a model with a dynamic first dimension runs it in one request
                return self._run_batch(feeds, n)
            # share_inputs: no input copy; share_outputs=False: OpenVINO hands back fresh arrays (safe to keep)
            res = self._req.infer({self._in_index[k]: v for k, v in feeds.items()}, share_inputs=True,
                                  share_outputs=False)
            return {spec.name: np.asarray(res[i], dtype=np.float32) for i, spec in enumerate(self.outputs)}
        except Exception as e:  # noqa: BLE001 - runtime errors surface as BackendError
            raise BackendError(f"{NAME}: {self.info.path}: run failed: {e}") from e

    def _run_batch(self, feeds: dict[str, np.ndarray], n: int) -> dict[str, np.ndarray]:
        """A batch of n as up to `streams` near-equal chunks run at once, one per infer stream (one thread each),
        each on the model compiled for its chunk size."""
        k = min(self._streams, n)
        used: dict[int, int] = {}
        running, start = [], 0
        for size in (n // k + (i < n % k) for i in range(k)):
            req = self._batch_reqs[size][used.get(size, 0)]
            used[size] = used.get(size, 0) + 1
            req.start_async({self._in_index[name]: a[start:start + size] for name, a in feeds.items()},
                            share_inputs=True)
            running.append(req)
            start += size
        for req in running:
            req.wait()
        return {spec.name: np.concatenate([np.array(r.get_output_tensor(i).data, dtype=np.float32) for r in running])
                for i, spec in enumerate(self.outputs)}

    def enable_batch(self, compiled_by_size: dict, streams: int, max_batch: int) -> None:
        """Take batches of up to min(max_batch, streams x largest chunk): `streams` infer requests per chunk size
        (compiled_by_size: chunk size -> compiled model)."""
        self._unbatched = (self.inputs, self.outputs)
        self._streams = streams
        self._batch_reqs = {size: [c.create_infer_request() for _ in range(streams)]
                            for size, c in compiled_by_size.items()}
        self.max_batch = min(max_batch, streams * max(compiled_by_size))
        self.inputs = [TensorSpec(t.name, (-1, *t.shape[1:]), t.dtype) for t in self.inputs]
        self.outputs = [TensorSpec(t.name, (-1, *t.shape[1:]), t.dtype) for t in self.outputs]

    def disable_batch(self) -> None:
        self.inputs, self.outputs = self._unbatched
        self.max_batch, self._batch_reqs = 1, {}


def prune_outputs(model, outputs, path):
    """The model with only the named results: OpenVINO then compiles (and runs) only what they need."""
    import openvino as ov

    results = model.get_results()
    specs = [TensorSpec(canonical_output_name(r.output(0).get_names(), n), (), "") for n, r in enumerate(results)]
    keep = {s.name for s in select_outputs(specs, outputs, NAME, path)}
    kept = [r for r, s in zip(results, specs) if s.name in keep]
    return ov.Model(kept, model.get_parameters(), model.get_friendly_name())


def batch_polymorphic(model) -> tuple[int, str]:
    """Make a batch-1 model keep its batch axis for any batch: Reshape ops whose constant target shape starts with
    a literal 1 where their input's first dimension is 1 get 0 there (with special_zero: copy the input's first
    dimension; identical at batch 1). Converters write such constants (NanoDet: [1, 80, -1]); without this a
    batch of N silently becomes one sample of N times the cells. Returns (ops rewritten, "" or why the model
    cannot batch)."""
    import openvino as ov

    params = model.get_parameters()
    if any(p.get_partial_shape().rank.is_dynamic or p.get_partial_shape()[0] != 1 for p in params):
        return 0, f"inputs are not batch-1 ({[str(p.get_partial_shape()) for p in params]})"
    n = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "Reshape":
            continue
        target = op.input_value(1).get_node()
        data = op.input_value(0).get_partial_shape()
        if target.get_type_name() != "Constant" or data.rank.is_dynamic or data.rank.get_length() == 0:
            continue
        v = target.get_data().copy()
        if len(v) and v[0] == 1 and data[0] == 1:
            v[0] = 0
            op.input(1).replace_source_output(ov.op.Constant(v).output(0))
            op.set_special_zero(True)
            n += 1
    probe = model.clone()
    probe.reshape({p.output(0): ov.PartialShape([2, *p.get_partial_shape()[1:]]) for p in probe.get_parameters()})
    bad = [str(o.get_partial_shape()) for o in probe.outputs
           if o.get_partial_shape().rank.is_dynamic or o.get_partial_shape()[0] != 2]
    if bad:
        return n, f"at batch 2 outputs have shapes {bad}: the graph does not keep the batch axis"
    return n, ""


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

    def load(self, path: Path, *, threads: int = 2, precision: str = "fp32", outputs=None,
             max_batch: int = 1) -> Session:
        """max_batch > 1: besides the model as configured (batch 1), the model made batch-polymorphic
        (batch_polymorphic) is compiled for static chunk sizes 1..ceil(max_batch / streams) with `threads` infer
        streams of one thread each (THROUGHPUT): a batch runs as one chunk per stream, at once. The batched outputs
        are checked against per-sample runs at load; any failure leaves the session at batch 1, with the reason
        in info.extra["batch"]."""
        path = Path(path)
        check_threads(threads, NAME)
        validate(path, NAME, ("ir", "tflite", "onnx"))
        o: OpenVinoOptions = self.options
        n_threads = o.threads or threads
        c = core()
        if o.device not in c.available_devices:
            raise BackendError(f"{NAME}: device {o.device!r} not available here; available: {c.available_devices}")
        config = {"PERFORMANCE_HINT": o.performance_hint, "NUM_STREAMS": str(o.num_streams),
                  "INFERENCE_NUM_THREADS": n_threads}
        if o.cpu_pinning is not None:
            config["ENABLE_CPU_PINNING"] = o.cpu_pinning
        if o.cache_dir:
            Path(o.cache_dir).expanduser().mkdir(parents=True, exist_ok=True)
            config["CACHE_DIR"] = str(Path(o.cache_dir).expanduser())
        try:
            model = c.read_model(str(path))
        except Exception as e:  # noqa: BLE001 - frontend errors: corrupt or unsupported file
            raise ModelLoadError(f"{NAME}: cannot load {path}: {e}") from None
        config["INFERENCE_PRECISION_HINT"] = o.inference_precision or ("bf16" if precision == "bf16" else "f32")
        if outputs is not None:
            model = prune_outputs(model, outputs, path)
        try:
            compiled = c.compile_model(model, o.device, config)
        except Exception as e:  # noqa: BLE001
            raise BackendError(f"{NAME}: cannot compile {path} for {o.device}: {e}") from None
        s = OpenVinoSession(compiled, path, n_threads, precision, o)
        s.info.extra["batch"] = {"max_batch": 1}
        if max_batch > 1:
            s.info.extra["batch"] = self._batch(s, model, config, n_threads, max_batch)
        log.debug("%s: loaded %s (%s)", NAME, path, s.info.extra["compiled"])
        return s

    def _batch(self, s: OpenVinoSession, model, config: dict, n_threads: int, max_batch: int) -> dict:
        """Enable batches on session s (see load); the batch info for SessionInfo.extra."""
        import openvino as ov

        why = ""
        try:
            model = model.clone()
            rewritten, why = batch_polymorphic(model)
            if not why:
                streams = max(1, min(n_threads, max_batch))
                cfg = {**config, "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": str(streams)}
                compiled = {}
                for size in range(1, -(-max_batch // streams) + 1):
                    m = model.clone()
                    m.reshape({p.output(0): ov.PartialShape([size, *p.get_partial_shape()[1:]])
                               for p in m.get_parameters()})
                    compiled[size] = core().compile_model(m, self.options.device, cfg)
                s.enable_batch(compiled, streams, max_batch)
                why = _check_batch(s)
                if why:
                    s.disable_batch()
        except Exception as e:  # noqa: BLE001 - reshape/compile errors: stay at batch 1, say why
            why = f"{type(e).__name__}: {e}"
            if s.max_batch > 1:
                s.disable_batch()
        if why:
            log.warning("%s: %s: batching off, one sample per call: %s", NAME, s.info.path, why)
            return {"max_batch": 1, "reason": f"{NAME}: {why}"}
        return {"max_batch": s.max_batch, "streams": streams, "chunk_sizes": sorted(compiled),
                "reshapes_rewritten": rewritten}


def _check_batch(s: OpenVinoSession, tol: float = 1e-3) -> str:
    """"" when a batch (uneven chunks where there are several streams) gives what per-sample runs give, on random
    inputs, within tol of max(1, max|output|); else why."""
    n = min(s.max_batch, s._streams + 1)
    if n < 2:
        return ""
    rng = np.random.default_rng(0)
    feeds = {t.name: rng.random((n, *t.shape[1:]), np.float32) for t in s.inputs}
    got = s.run(feeds)
    for i in range(n):
        for name, ref in s.run({k: v[i:i + 1] for k, v in feeds.items()}).items():
            err = float(np.abs(got[name][i:i + 1] - ref).max()) / max(1.0, float(np.abs(ref).max()))
            if err > tol:
                return f"batched output {name!r} of sample {i} differs from a per-sample run by {err:.3g} (> {tol})"
    return ""
