"""Parity of a session against golden outputs, with the model's tolerance.

Error metric, per output tensor: e = |out - ref| / max(1, max|ref|), i.e. absolute error for small-range outputs
(scores, flags, normalized coordinates) and error relative to the output's range for large-range ones (pixel
coordinates up to ±800, segmentation logits down to -1800). A session passes when, for every output,
max(e) <= max_err and mean(e) <= mean_err.

Score logits (an output whose manifest `meaning` says "score logit", e.g. the SSD detectors' per-anchor scores, used
only as sigmoid(x) > threshold) are compared as probabilities instead: e = |sigmoid(out) - sigmoid(ref)|. Divided by
their range (background anchors reach -517) a shift of every score by 6 logits, which empties or floods the
detections, was 0.012; as probabilities it is up to 0.9 near the threshold, while -517 vs -511 stays 0.

Per-model tolerances are data: the `[tolerance.<precision>]` tables of the model manifest
(models/manifests/<name>.toml), carried into signed update payloads. This module holds only the generic
per-precision defaults used where a manifest sets none.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, replace

import numpy as np

from edge.backends.base import BackendError, Session


@dataclass(frozen=True)
class Tolerance:
    max_err: float  # worst element, in units of max(1, max|ref|)
    mean_err: float  # mean over elements, same units
    outputs: tuple[tuple[str, float, float], ...] = ()  # per-output overrides: (name, max_err, mean_err)
    sigmoid: tuple[str, ...] = ()  # outputs compared as probabilities (score logits): see the module doc

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


SCORE_LOGIT = re.compile(r"\bscore logits?\b")  # in a manifest output's `meaning`


def score_logits(spec: dict) -> tuple[str, ...]:
    """Names of the outputs a model manifest declares as score logits (`meaning`); none for an update payload,
    which carries no output table."""
    return tuple(sorted(o["name"] for o in spec.get("outputs", []) if SCORE_LOGIT.search(o.get("meaning", ""))))


def tolerance_for(spec: dict, precision: str) -> Tolerance:
    """The tolerance for `precision` of a model manifest or update payload `spec` (its optional `tolerance`
    table, where an int8 variant such as int8_full falls back to int8), else the generic default; its score-logit
    outputs (score_logits) compared as probabilities."""
    table = spec.get("tolerance") or {}
    base = "int8" if precision.startswith("int8") else precision
    t = table.get(precision) or table.get(base)
    tol = Tolerance.from_table(t) if t else DEFAULT_TOLERANCES.get(base) or DEFAULT_TOLERANCES["int8"]
    logits = score_logits(spec)
    return replace(tol, sigmoid=logits) if logits else tol


def run_batched(session: Session, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run golden inputs stacked along axis 0 (N samples) in calls the session takes: one sample at a time on a
    batch-1 model; on a batching session (max_batch > 1) the first sample alone, then chunks of max_batch (and the
    rest), so both its batch-1 and batched paths are checked; all at once on a dynamic batch without max_batch."""
    spec = session.inputs[0]
    n = next(iter(inputs.values())).shape[0]
    mb = int(getattr(session, "max_batch", 1) or 1)
    if mb > 1:
        bounds = [0, 1, *range(1 + mb, n, mb), n] if n > 1 else [0, n]
    elif spec.shape and spec.shape[0] == 1 and n != 1:
        bounds = list(range(n + 1))
    else:
        return session.run(inputs)
    outs = [session.run({k: v[a:b] for k, v in inputs.items()}) for a, b in zip(bounds, bounds[1:])]
    return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for any logit


def compare(outputs: dict[str, np.ndarray], golden: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Per golden output: {"max", "mean"} of the normalized error and {"sigmoid_max", "sigmoid_mean"} of the error
    as probabilities (what judge uses for a tolerance's `sigmoid` outputs). BackendError on missing names."""
    missing = sorted(set(golden) - set(outputs))
    if missing:
        raise BackendError(f"outputs {missing} missing (session has {sorted(outputs)})")
    res = {}
    for name, ref in golden.items():
        out = outputs[name]
        if out.shape != ref.shape:
            raise BackendError(f"output {name!r} has shape {out.shape}, golden has {ref.shape}")
        ref, out = ref.astype(np.float64), out.astype(np.float64)
        e = np.abs(out - ref) / max(1.0, float(np.abs(ref).max()))
        e = np.nan_to_num(e, nan=np.inf)  # NaN output never passes
        p = np.nan_to_num(np.abs(_sigmoid(out) - _sigmoid(ref)), nan=np.inf)
        res[name] = {"max": float(e.max()), "mean": float(e.mean()),
                     "sigmoid_max": float(p.max()), "sigmoid_mean": float(p.mean())}
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
        as_p = n in tol.sigmoid and "sigmoid_max" in e
        got_max, got_mean = (e["sigmoid_max"], e["sigmoid_mean"]) if as_p else (e["max"], e["mean"])
        unit = " (as probabilities)" if as_p else ""
        if got_max > mx:
            bad.append(f"{n}: max {got_max:.3g} > {mx:g}{unit}")
        elif got_mean > mean:
            bad.append(f"{n}: mean {got_mean:.3g} > {mean:g}{unit}")
    return not bad, errs, "; ".join(bad)
