"""Backend parity on the real BlazePose models: the same inputs on TFLite, OpenVINO and onnxruntime agree.

Reference: the original .tflite on ai-edge-litert (XNNPACK). Candidates: OpenVINO reading the same .tflite,
OpenVINO on the FP32 IR, onnxruntime on the tf2onnx ONNX. Stated tolerance (the model manifest's, else the
FP32 default of edge.backends.parity): per output, max |a - ref| <= 2e-3 * max(1, max|ref|) and mean <= 2e-4 *
max(1, max|ref|) (segmentation logits: max 1e-2, pose_landmark_full's [tolerance.fp32]); on top, landmark x/y agree within 0.05 px of the 256 crop, the pose flag within 1e-3, the
segmentation mask (logit > 0) on 99.9% of pixels, and detector boxes within 0.05 px of the 224 input.
"""
from __future__ import annotations

import numpy as np
import pytest

from edge.backends import load_session
from edge.backends.parity import compare, judge, run_batched, tolerance_for

CANDIDATES = [("openvino", "tflite"), ("openvino", "ir"), ("onnxruntime", "onnx")]


@pytest.fixture(scope="module")
def reference(zoo, model_files):
    """model -> (golden inputs, outputs of the .tflite on the tflite backend)."""
    out = {}
    for name in ("pose_detection", "pose_landmark_full"):
        inputs, _ = zoo.golden(name)
        s = load_session("tflite", model_files[name, "tflite"], threads=2)
        out[name] = (inputs, run_batched(s, inputs), s)
    return out


@pytest.mark.parametrize("name", ["pose_detection", "pose_landmark_full"])
@pytest.mark.parametrize("backend,kind", CANDIDATES)
def test_backends_agree_with_tflite(zoo, reference, model_files, name, backend, kind):
    inputs, ref, ref_session = reference[name]
    s = load_session(backend, model_files[name, kind], threads=2)
    assert [t.name for t in s.inputs] == [t.name for t in ref_session.inputs] == ["input_1"]
    assert [t.name for t in s.outputs] == [t.name for t in ref_session.outputs]  # canonical Identity* names
    assert s.info.backend == backend and s.info.threads == 2 and s.info.runtime_version.startswith(backend)
    out = run_batched(s, inputs)
    assert all(v.dtype == np.float32 for v in out.values())
    ok, errs, why = judge(compare(out, ref), tolerance_for(zoo.manifest(name), "fp32"))
    assert ok, why
    if name == "pose_landmark_full":
        a = out["Identity"].reshape(-1, 39, 5)[..., :2]
        b = ref["Identity"].reshape(-1, 39, 5)[..., :2]
        assert np.abs(a - b).max() < 0.05
        assert np.abs(out["Identity_1"] - ref["Identity_1"]).max() < 1e-3  # pose flag
        assert ((out["Identity_2"] > 0) == (ref["Identity_2"] > 0)).mean() > 0.999  # segmentation mask
    else:
        assert np.abs(out["Identity"][..., :4] - ref["Identity"][..., :4]).max() < 0.05


def test_three_backends_on_one_input_agree_pairwise(zoo, model_files):
    """One realistic crop through all three runtimes: every pair within the FP32 tolerance."""
    inputs, golden = zoo.golden("pose_landmark_full")
    feed = {k: v[:1] for k, v in inputs.items()}
    outs = {b: load_session(b, model_files["pose_landmark_full", k]).run(feed)
            for b, k in [("tflite", "tflite"), ("openvino", "tflite"), ("onnxruntime", "onnx")]}
    tol = tolerance_for(zoo.manifest("pose_landmark_full"), "fp32")
    names = list(outs)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            ok, _, why = judge(compare(outs[a], outs[b]), tol)
            assert ok, (a, b, why)
    # and the zoo's golden outputs are what the reference produces
    assert judge(compare(outs["tflite"], {k: v[:1] for k, v in golden.items()}), tol)[0]


def test_session_reuse_and_fresh_outputs(model_files):
    """Repeated runs give identical results and never hand out a buffer the next run overwrites."""
    for backend, kind in [("tflite", "tflite"), ("openvino", "tflite"), ("onnxruntime", "onnx")]:
        s = load_session(backend, model_files["pose_detection", kind])
        x1 = np.full((1, 224, 224, 3), -0.5, np.float32)
        x2 = np.full((1, 224, 224, 3), 0.5, np.float32)
        a = s.run({"input_1": x1})
        keep = {k: v.copy() for k, v in a.items()}
        s.run({"input_1": x2})
        for k in a:
            np.testing.assert_array_equal(a[k], keep[k], err_msg=f"{backend}: output {k} was overwritten")
        np.testing.assert_allclose(s.run({"input_1": x1})["Identity"], keep["Identity"], rtol=0, atol=1e-4)


def test_io_binding_and_options(zoo, model_files):
    """Typed plug-in options reach the runtime: ORT IOBinding, OpenVINO f32 hint, TFLite without XNNPACK."""
    from edge.backends.registry import get_backend

    x = {"input_1": np.random.default_rng(1).uniform(-1, 1, (1, 224, 224, 3)).astype(np.float32)}
    base = load_session("onnxruntime", model_files["pose_detection", "onnx"]).run(x)
    bound = get_backend("onnxruntime", {"io_binding": True, "allow_spinning": True}).load(
        model_files["pose_detection", "onnx"])
    for k in base:
        np.testing.assert_allclose(bound.run(x)[k], base[k], atol=1e-4)
    ov = get_backend("openvino", {"inference_precision": "f32", "num_streams": 1}).load(
        model_files["pose_detection", "tflite"], threads=1)
    assert ov.info.threads == 1 and ov.info.extra["compiled"]["INFERENCE_NUM_THREADS"] == "1"
    ref = get_backend("tflite", {"xnnpack": False}).load(model_files["pose_detection", "tflite"], threads=1)
    assert ref.info.extra["options"]["xnnpack"] is False
    assert judge(compare(ref.run(x), base), tolerance_for(zoo.manifest("pose_detection"), "fp32"))[0]
