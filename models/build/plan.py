"""What the build chain plans: steps (in-process actions or subprocess commands) and the model folder layout."""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


STEPS_DIR = Path(__file__).resolve().parent / "steps"


class BuildError(RuntimeError):
    """A build step failed; the message names the model, the step, the command and the log tail."""


@dataclass
class Step:
    model: str
    name: str
    outputs: list[Path]
    record: Path
    inputs: list[Path] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    code: list[Path] = field(default_factory=list)
    action: Callable[[], None] | None = None  # in-process
    command: Callable[[], list[str]] | None = None  # subprocess (resolved lazily: venvs are created on demand)
    argv: list[str] | None = None  # the subprocess's script and arguments (its command but the python)
    log_path: Path | None = None


def model_dir(cache: Path, m: dict) -> Path:
    return cache / "models" / m["name"] / m["version"]


def scope_selectors(table: dict | None) -> dict:
    """A manifest scope table ([quantization.ignored_scope], [bf16] fp32_scope) without its free-text `note`: the
    selectors steps/nncf_scope.py resolves."""
    return {k: v for k, v in (table or {}).items() if k != "note"}


def bins(paths) -> list[Path]:
    return [p.with_suffix(".bin") for p in paths if p.suffix == ".xml"]


def arg_key(args: list) -> list[str]:
    """A step command's arguments as they enter its key: a path by its name (its content is hashed as an input, and
    the key must not depend on where the cache is), every other value as given (--norm, --limit, --opset, ...)."""
    return [a.name if isinstance(a, Path) else str(a) for a in args]


@functools.cache
def runtime_versions() -> dict[str, str]:
    """Versions of the runtime packages the in-process steps run models (LiteRT, onnxruntime, OpenVINO) and make
    images with (OpenCV, NumPy): in those steps' keys, so a changed pin makes the golden outputs, the calibration sets
    and the parity / accuracy gates again."""
    from importlib.metadata import version

    import cv2
    import numpy

    return {"ai-edge-litert": version("ai-edge-litert"), "onnxruntime": version("onnxruntime"),
            "openvino": version("openvino"), "opencv": cv2.__version__, "numpy": numpy.__version__}


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, sort_keys=True))


def quantize_steps(sub, m: dict, by_producer: dict, d: Path, ov_fp32: Path, onnx_fp32: Path,
                   calib: Path) -> tuple[list[Step], dict[str, Path]]:
    """NNCF (OpenVINO) and onnxruntime post-training INT8 steps and the OpenVINO bf16 step of a model, the same for
    every chain. sub: the chain's subprocess-step maker. Returns (steps, {"backend/precision": reduced-precision
    file}), which the held-out evaluation compares with FP32."""
    cal, w = m["calibration"], d / "work"
    k = m["quantization"]["keep_first_convs"]
    qargs = ["--data", calib, "--norm", cal["norm"], "--limit", cal["calib_samples"]]
    steps: list[Step] = []
    int8: dict[str, Path] = {}
    scope = m["quantization"].get("ignored_scope")
    for a in by_producer.get("nncf", []):
        out = d / a["file"]
        if a["precision"] == "int8_full":
            how = ["--keep-first", 0]
        elif scope:  # the manifest's structural ignored scope (steps/nncf_scope.py) instead of keep_first_convs
            how = ["--ignored-scope", json.dumps(scope_selectors(scope), sort_keys=True)]
        else:
            how = ["--keep-first", k]
        if a["precision"] != "int8_full" and m["quantization"].get("int8_output_offset"):
            how += ["--output-offset", json.dumps(m["quantization"]["int8_output_offset"], sort_keys=True)]
        st = sub(f"nncf_{a['precision']}", "quant", "nncf_quantize.py",
                 [ov_fp32, out, *qargs, *how, "--info", w / f"{out.name}.json"],
                 [out, out.with_suffix(".bin")], [ov_fp32, ov_fp32.with_suffix(".bin"), calib],
                 {"scope": [str(x) for x in how]})  # a changed scope re-runs the step
        st.code.append(STEPS_DIR / "nncf_scope.py")
        steps.append(st)
        int8[f"openvino/{a['precision']}"] = out
    for a in by_producer.get("ov_bf16", []):  # the FP32 IR, marked: bf16 but for the [bf16] fp32_scope layers
        out = d / a["file"]
        keep = scope_selectors(m["bf16"].get("fp32_scope"))
        st = sub("ov_bf16", "quant", "ov_bf16.py",
                 [ov_fp32, out, "--fp32-scope", json.dumps(keep, sort_keys=True), "--info", w / f"{out.name}.json"],
                 [out, out.with_suffix(".bin")], [ov_fp32, ov_fp32.with_suffix(".bin")], {"fp32_scope": keep})
        st.code.append(STEPS_DIR / "nncf_scope.py")
        steps.append(st)
        int8[f"openvino/{a['precision']}"] = out
    for a in by_producer.get("ort_quant", []):
        out = d / a["file"]
        steps.append(sub(f"ort_{a['precision']}", "quant", "ort_quantize.py",
                         [onnx_fp32, out, *qargs, "--keep-first", k, "--info", w / f"{out.name}.json"],
                         [out], [onnx_fp32, calib]))
        int8[f"onnxruntime/{a['precision']}"] = out
    return steps, int8
