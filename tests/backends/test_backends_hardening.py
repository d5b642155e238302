"""auto with batching, onnxruntime's provider fallback, and golden parity of score logits. Real model files and
runtimes."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edge.app.config import ModelRef
from edge.backends import BackendError, load_session
from edge.backends.auto import open_model, runs_as_built
from edge.backends.onnxruntime_backend import check_providers
from edge.backends.parity import check, compare, judge, run_batched, score_logits, tolerance_for

DET = "pose_detection"
PEOPLE = "nanodet_m_416"


class Recorder:
    """A real session that records the batch size of each call."""

    def __init__(self, s):
        self._s, self.calls = s, []

    def __getattr__(self, name):
        return getattr(self._s, name)

    def run(self, feeds):
        self.calls.append(next(iter(feeds.values())).shape[0])
        return self._s.run(feeds)


def test_golden_runs_in_the_batches_a_batching_session_takes(zoo):
    a = zoo.artifact(PEOPLE, "openvino", "fp32")
    s = load_session("openvino", a.path, threads=2, max_batch=4)
    assert s.max_batch == 4
    ins, gold = zoo.golden(PEOPLE)
    rec = Recorder(s)
    ok, errs, why = check(rec, ins, gold, tolerance_for(zoo.manifest(PEOPLE), "fp32"))
    assert ok, why
    assert rec.calls == [1, 4, 3]  # batch 1 and batched paths, never more than max_batch


@pytest.mark.parametrize("max_batch", [2, 4])
def test_auto_with_max_batch_keeps_openvino_and_keys_on_it(zoo, tmp_path, max_batch):
    cache = tmp_path / "choice.json"
    ref = ModelRef(name=PEOPLE, backend="auto", threads=2)
    s = open_model(zoo, ref, cache_path=cache, max_batch=max_batch, rounds=1, per_round=1)
    (entry,) = json.loads(cache.read_text()).values()
    assert entry["reasons"]["openvino"].startswith("passed"), entry["reasons"]["openvino"]
    assert entry["max_batch"] == max_batch
    if s.info.backend == "openvino":
        assert s.max_batch == max_batch
    open_model(zoo, ref, cache_path=cache, max_batch=1, rounds=1, per_round=1)
    assert len(json.loads(cache.read_text())) == 2  # max_batch is part of the key: chosen again


def test_onnxruntime_never_falls_back_silently(zoo):
    s = load_session("onnxruntime", zoo.artifact(DET, "onnxruntime", "fp32").path, threads=1)
    assert s._sess._enable_fallback is False  # ORT's wrapper would retry a failed provider on the CPU one
    assert "CPUExecutionProvider" in s.info.extra["providers"]


def test_missing_execution_provider_is_named():
    check_providers(["CPUExecutionProvider"], ["CPUExecutionProvider"], "m.onnx")
    check_providers(["AzureExecutionProvider"], ["AzureExecutionProvider", "CPUExecutionProvider"], "m.onnx")
    with pytest.raises(BackendError, match=r"m\.onnx: execution provider\(s\) \['CUDAExecutionProvider'\] did not "
                                           r"start \(the session has \['CPUExecutionProvider'\]\)"):
        check_providers(["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"], "m.onnx")


@pytest.mark.parametrize("shift", [-6.0, -3.0, +3.0, +4.0])
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_shifted_score_logits_fail_parity(zoo, shift, precision):
    """Every score moved by a few logits empties or floods the detections; over the range of the logits (-517 on
    background anchors) that was 0.012 and passed int8; as probabilities it fails."""
    _, gold = zoo.golden(DET)
    tol = tolerance_for(zoo.manifest(DET), precision)
    assert tol.sigmoid == ("Identity_1",)
    broken = {"Identity": gold["Identity"], "Identity_1": gold["Identity_1"] + shift}
    ok, errs, why = judge(compare(broken, gold), tol)
    assert not ok and "Identity_1" in why and "as probabilities" in why
    assert errs["Identity_1"]["max"] < 0.02  # what the range-normalised error saw


@pytest.mark.parametrize("name", ["pose_detection", "face_detection_full_range", "palm_detection_full",
                                  "palm_detection_lite"])
def test_every_built_artefact_of_a_score_logit_model_still_passes(zoo, name):
    assert score_logits(zoo.manifest(name)) == ("Identity_1",)
    ins, gold = zoo.golden(name)
    tried = []
    for a in zoo.artifacts(name):
        if a.precision == "int8_full" or not runs_as_built(a.backend, a.precision)[0]:
            continue  # report-only, or not used on this CPU
        s = load_session(a.backend, a.path, threads=2, precision=a.precision)
        ok, errs, why = judge(compare(run_batched(s, ins), gold), tolerance_for(zoo.manifest(name), a.precision))
        assert ok, f"{name} {a.backend}/{a.precision}: {why} {errs}"
        tried.append((a.backend, a.precision))
    assert len(tried) >= 3, tried


def test_sigmoid_error_is_stable_for_huge_logits():
    ref = {"y": np.array([[-517.0, -1e4, 0.0, 1e4]], np.float32)}
    out = {"y": np.array([[-511.0, -9e3, 0.0, 9e3]], np.float32)}
    e = compare(out, ref)["y"]
    assert e["sigmoid_max"] == 0.0 and np.isfinite(e["sigmoid_mean"])
    assert compare({"y": np.full((1, 4), np.nan, np.float32)}, ref)["y"]["sigmoid_max"] == np.inf
