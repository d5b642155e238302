"""Parity of a session against golden outputs, with the model's tolerance.

Error metric, per output tensor: e = |out - ref| / max(1, max|ref|), i.e. absolute error for small-range outputs
(scores, flags, normalized coordinates) and error relative to the output's range for large-range ones (pixel
coordinates up to ±800, segmentation logits down to -1800). A session passes when, for every output,
max(e) <= max_err and mean(e) <= mean_err.

Per-model tolerances are data: the `[tolerance.<precision>]` tables of the model manifest
(models/manifests/<name>.toml), carried into signed update payloads. This module holds only the generic
per-precision defaults used where a manifest sets none.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from edge.backends.base import BackendError, Session


@dataclass(frozen=True)
class Tolerance:
    max_err: float  # worst element, in units of max(1, max|ref|)
    mean_err: float  # mean over elements, same units
    outputs: tuple[tuple[str, float, float], ...] = ()  # per-output overrides: (name, max_err, mean_err)

    def for_output(self, name: str) -> tuple[float, float]:
        for n, mx, mean in self.outputs:
            if n == name:
                return mx, mean
        return self.max_err, self.mean_err

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_table(cls, t: dict) -> Tolerance:
        """From a manifest table {max_err, mean_err, outputs = {name = {max_err, mean_err}}}."""
        outs = tuple((n, float(o["max_err"]), float(o["mean_err"])) for n, o in sorted(t.get("outputs", {}).items()))
        return cls(float(t["max_err"]), float(t["mean_err"]), outs)


# FP32 conversions (tf2onnx ONNX, OpenVINO reading .tflite, FP32 IR) agree with TFLite XNNPACK to ~1e-5 of range
# on BlazePose (worst: seg logits 1.0 of 1800 = 5.5e-4); TFLite's own kernel sets differ by the same amount.
# INT8 post-training quantization moves landmarks 0.016-0.04 of the 256 crop and detector scores up to ~0.5,
# so INT8 is checked for "still the same model" (mean error), not bit-closeness.
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(max_err=2e-3, mean_err=2e-4),
    "fp16": Tolerance(max_err=2e-2, mean_err=2e-3),
    # bf16 keeps 8 mantissa bits: NanoDet 0.012 / 6e-4 measured; models where it costs more carry their own table
    "bf16": Tolerance(max_err=0.1, mean_err=0.01),
    "int8": Tolerance(max_err=0.5, mean_err=0.03),
}


def tolerance_for(spec: dict, precision: str) -> Tolerance:
    """The tolerance for `precision` of a model manifest or update payload `spec` (its optional `tolerance`
    table, where an int8 variant such as int8_full falls back to int8), else the generic default."""
    table = spec.get("tolerance") or {}
    base = "int8" if precision.startswith("int8") else precision
    t = table.get(precision) or table.get(base)
    if t:
        return Tolerance.from_table(t)
    return DEFAULT_TOLERANCES.get(base) or DEFAULT_TOLERANCES["int8"]


def run_batched(session: Session, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run golden inputs stacked along axis 0 (N samples) through a batch-1 model one sample at a time."""
    spec = session.inputs[0]
    n = next(iter(inputs.values())).shape[0]
    if spec.shape and spec.shape[0] == 1 and n != 1:
        outs = [session.run({k: v[i:i + 1] for k, v in inputs.items()}) for i in range(n)]
        return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}
    return session.run(inputs)


def compare(outputs: dict[str, np.ndarray], golden: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per golden output: {"max": ..., "mean": ...} of the normalized error. BackendError on missing names."""
    missing = sorted(set(golden) - set(outputs))
    if missing:
        raise BackendError(f"outputs {missing} missing (session has {sorted(outputs)})")
    res = {}
    for name, ref in golden.items():
        out = outputs[name]
        if out.shape != ref.shape:
            raise BackendError(f"output {name!r} has shape {out.shape}, golden has {ref.shape}")
        ref = ref.astype(np.float64)
        e = np.abs(out.astype(np.float64) - ref) / max(1.0, float(np.abs(ref).max()))
        e = np.nan_to_num(e, nan=np.inf)  # NaN output never passes
        res[name] = {"max": float(e.max()), "mean": float(e.mean())}
    return res


def check(session: Session, inputs: dict, golden: dict, tol: Tolerance) -> tuple[bool, dict, str]:
    """(passed, per-output errors, reason when not passed)."""
    errs = compare(run_batched(session, inputs), golden)
    return judge(errs, tol)


def judge(errs: dict[str, dict[str, float]], tol: Tolerance) -> tuple[bool, dict, str]:
    """(passed, errs, reason) for per-output errors from compare()."""
    bad = []
    for n, e in errs.items():
        mx, mean = tol.for_output(n)
        if e["max"] > mx:
            bad.append(f"{n}: max {e['max']:.3g} > {mx:g}")
        elif e["mean"] > mean:
            bad.append(f"{n}: mean {e['mean']:.3g} > {mean:g}")
    return not bad, errs, "; ".join(bad)
