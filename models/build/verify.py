"""Build-time checks: golden reference outputs, FP32 conversion parity, INT8 accuracy on the held-out set."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from models.build.runners import open_model, run_batch
from models.golden import load_golden

log = logging.getLogger(__name__)

NORMS = {"zero_one": (1 / 255.0, 0.0), "minus_one_one": (1 / 127.5, -1.0)}
# catastrophic-quantization guard: an INT8 artefact this far off is broken, not merely inaccurate
SANITY = {"landmarks": ("drift_mean", 0.1, "max"), "pose_detector": ("recall", 0.5, "min"),
          "face_detector": ("recall", 0.5, "min"), "palm_detector": ("recall", 0.5, "min"),
          "hand_landmarks": ("drift_mean", 0.1, "max")}


class ParityError(RuntimeError):
    """A converted or quantized model disagrees with the TFLite reference beyond tolerance."""


def normalize(x: np.ndarray, norm: str) -> dict[str, np.ndarray]:
    """uint8 NHWC images -> the model's `input_1` feed in its input range (NORMS)."""
    scale, offset = NORMS[norm]
    return {"input_1": x.astype(np.float32) * np.float32(scale) + np.float32(offset)}


def model_inputs(npz: Path, norm: str) -> dict[str, np.ndarray]:
    return normalize(np.load(npz)["x"], norm)


def save_golden(path: Path, inputs: dict[str, np.ndarray], outputs: dict[str, np.ndarray]) -> None:
    """golden.npz: `input:<name>` and `output:<name>` arrays, batch-1 samples stacked on axis 0."""
    arrays = {f"input:{k}": v for k, v in inputs.items()} | {f"output:{k}": v for k, v in outputs.items()}
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def make_golden(reference: Path, golden_inputs: Path, norm: str, out: Path) -> None:
    ins = model_inputs(golden_inputs, norm)
    save_golden(out, ins, run_batch(open_model(reference), ins))


def parity(golden: Path, model: Path, atol: float, rtol: float, output_atol: dict | None = None) -> dict:
    """Max abs diff per output vs the golden reference; ParityError when over atol + rtol * max|ref|
    (atol per output from output_atol where given)."""
    ins, ref = load_golden(golden)
    got = run_batch(open_model(model), ins)
    res = {}
    for k, r in ref.items():
        if k not in got:
            raise ParityError(f"{model.name}: output {k!r} missing (has {sorted(got)})")
        if got[k].shape != r.shape:
            raise ParityError(f"{model.name}: output {k} shape {got[k].shape} != reference {r.shape}")
        diff = float(np.abs(got[k].astype(np.float64) - r).max())
        tol = (output_atol or {}).get(k, atol) + rtol * float(np.abs(r).max())
        res[k] = {"max_abs_diff": diff, "tolerance": tol}
        if not diff <= tol:
            raise ParityError(f"conversion parity broken: {model.name} output {k}: max abs diff {diff:.3g} vs "
                              f"TFLite reference > tolerance {tol:.3g} on {len(r)} golden inputs")
    return res


def latency_ms(model: Path, x: dict[str, np.ndarray], runs: int = 30, warmup: int = 5, threads: int = 2) -> float:
    run = open_model(model, threads)
    one = {k: v[:1] for k, v in x.items()}
    for _ in range(warmup):
        run(one)
    ts = []
    for _ in range(runs):
        t = time.perf_counter()
        run(one)
        ts.append(time.perf_counter() - t)
    return float(np.median(ts) * 1000)


def empty_inputs(heldout: Path, metric: str, size: int, norm: str) -> dict[str, np.ndarray] | None:
    """The held-out empty scenes of a person detector as model inputs (None for other metrics); `heldout` is
    `<cache>/calibration/<model>/heldout.npz`, the negatives are staged in `<cache>/photos`."""
    from calibration.accuracy import EMPTY_SCENE_THRESHOLD, empty_scenes

    if metric not in EMPTY_SCENE_THRESHOLD:
        return None
    return normalize(empty_scenes(heldout.parents[2], "heldout", metric, size), norm)


def variants_accuracy(reference: Path, variants: dict[str, Path], ins: dict[str, np.ndarray],
                      empty: dict[str, np.ndarray] | None, compare, empty_check, broken) -> dict:
    """Each variant (label "backend/precision" -> artefact, run at that precision) vs the reference model on `ins`
    and, where given, the `empty` scenes: compare(ref_outputs, outputs) -> metrics; empty_check(ref_outputs,
    outputs) -> metrics["empty_scenes"]; broken(metrics) -> why the artefact is broken (ParityError) or None. A
    variant this CPU cannot run as built (QAT INT8 on AVX2: its sums saturate; edge.backends.auto.runs_as_built) is
    measured and marked `runs_as_built_on_this_cpu: false` with the reason, never called broken: its numbers are not
    what a device that runs it gets (there, `auto` checks it against the golden outputs)."""
    from edge.backends.auto import runs_as_built

    with np.errstate(over="ignore"):
        ref = run_batch(open_model(reference), ins)
        ref_empty = run_batch(open_model(reference), empty) if empty else None
        out = {}
        for label, path in variants.items():
            run = open_model(path, precision=label.split("/")[-1])
            res = compare(ref, run_batch(run, ins))
            if empty:
                res["empty_scenes"] = empty_check(ref_empty, run_batch(run, empty))
            why = broken(res)
            as_built, not_why = runs_as_built(*label.split("/")[:2])
            if not as_built:
                res |= {"runs_as_built_on_this_cpu": False, "not_as_built": not_why}
                if why:
                    log.warning("%s: %s on the held-out set, measured on a CPU that cannot run it as built (%s)",
                                path.name, why, not_why)
            elif why:
                raise ParityError(f"INT8 artefact {path.name} is broken: {why} on the held-out set")
            out[label] = res
            log.info("%s: %s", path.name, {k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()})
    return out


def int8_accuracy(metric: str, size: int, heldout: Path, norm: str, reference: Path,
                  variants: dict[str, Path]) -> dict:
    """Each INT8 / bf16 variant vs the TFLite FP32 reference on the held-out set (person detectors: also on the
    held-out empty scenes, calibration.accuracy.empty_scene_check); ParityError if one is broken."""
    from calibration import accuracy

    key, limit, kind = SANITY[metric]

    def broken(res: dict) -> str | None:
        v = res[key]
        return f"{key} = {v} ({kind} {limit})" if v is None or (v > limit if kind == "max" else v < limit) else None

    detect = accuracy.ssd_detect(metric, size, accuracy.EMPTY_SCENE_THRESHOLD[metric]) \
        if metric in accuracy.EMPTY_SCENE_THRESHOLD else None
    return variants_accuracy(reference, variants, model_inputs(heldout, norm), empty_inputs(heldout, metric, size, norm),
                             lambda ref, got: accuracy.compare(metric, size, ref, got),
                             lambda ref, got: accuracy.empty_scene_check(ref, got, detect), broken)
