"""Minimal model runners used by the build (reference outputs, verification, calibration, report latency).

They load a file directly with the runtime in this venv: TFLite via ai-edge-litert (the reference), onnxruntime,
OpenVINO. float32 in, float32 out, outputs keyed by the canonical names; int8-I/O TFLite models are
quantized/dequantized here. The product backends live in edge/backends; these are build tools.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from models.manifest import source_file_name

Runner = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


def source_file(zoo, name: str) -> Path:
    """A built model's upstream source file (its manifest's first artefact, e.g. the TFLite FP32 reference)."""
    return zoo.model_dir(name) / source_file_name(zoo.manifest(name))


def open_source(zoo, name: str, threads: int = 2) -> Runner:
    """open_model on source_file(zoo, name)."""
    return open_model(source_file(zoo, name), threads)


def open_model(path: str | Path, threads: int = 2, precision: str = "fp32") -> Runner:
    """precision: the artefact's (models.manifest.PRECISIONS); OpenVINO runs `bf16` artefacts with the bf16
    inference precision (on CPUs that have it), everything else in f32."""
    path = Path(path)
    suffix = path.suffix
    if suffix == ".tflite":
        return _tflite(path, threads)
    if suffix == ".onnx":
        return _onnx(path, threads)
    if suffix == ".xml":
        return _openvino(path, threads, "bf16" if precision == "bf16" else "f32")
    raise ValueError(f"no runner for {path} (expected .tflite, .onnx or .xml)")


def _tflite(path: Path, threads: int) -> Runner:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path), num_threads=threads)
    it.allocate_tensors()
    ins, outs = it.get_input_details(), it.get_output_details()
    # outputs keep their canonical names (Identity*); order by name so Identity_10 sorts after Identity_9
    outs = sorted(outs, key=lambda d: (len(d["name"]), d["name"]))

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for d in ins:
            x = feeds[d["name"]]
            if d["dtype"] != np.float32:
                scale, zp = d["quantization"]
                info = np.iinfo(d["dtype"])
                x = np.clip(np.rint(x / scale + zp), info.min, info.max).astype(d["dtype"])
            it.set_tensor(d["index"], x)
        it.invoke()
        res = {}
        for d in outs:
            y = it.get_tensor(d["index"])
            if d["dtype"] != np.float32:
                scale, zp = d["quantization"]
                y = (y.astype(np.float32) - zp) * scale
            res[d["name"]] = y.copy()
        return res

    return run


def _onnx(path: Path, threads: int) -> Runner:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    s = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    names = [o.name for o in s.get_outputs()]

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(names, s.run(names, feeds)))

    return run


def _openvino(path: Path, threads: int, hint: str) -> Runner:
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(path))
    names = [o.get_any_name() for o in model.outputs]  # compiling can merge tensor names: take them from the IR
    cm = core.compile_model(model, "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": hint})
    req = cm.create_infer_request()
    outs = list(zip(cm.outputs, names))

    def run(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        r = req.infer(feeds)
        return {name: np.array(r[o]) for o, name in outs}

    return run


def run_batch(run: Runner, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Feed each sample of stacked batch-1 inputs (axis 0) and stack the outputs the same way."""
    n = len(next(iter(inputs.values())))
    outs = [run({k: v[i:i + 1] for k, v in inputs.items()}) for i in range(n)]
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
