"""Batched person detection on the real nanodet_m_416 files: a batch gives the boxes per-frame runs give (every
installed backend; the backends that cannot batch this model say why and run one window per call), the OpenVINO
batch keeps each sample's own cells, and bad batches are clear errors."""
from __future__ import annotations

import numpy as np
import pytest

from edge.backends import load_session
from edge.backends.base import BackendError
from edge.people import NanoDetPeople

MODEL = "nanodet_m_416"


def _variants(zoo, backends) -> list[tuple[str, str]]:
    out = [(b, "fp32") for b in backends]
    return out + [(b, zoo.default_precision(MODEL, b)) for b in backends if zoo.default_precision(MODEL, b) != "fp32"]


def _images(small_set) -> list[np.ndarray]:
    """Real photos, small pasted people and negatives: 7 frames of different content."""
    real = [f.image for f in small_set if f.kind == "real"]
    other = [f.image for f in small_set if f.kind != "real"]
    return real[:3] + other[:4]


def test_batch_gives_the_per_frame_boxes(people_zoo, backends, small_set):
    """7 frames x 3 windows (tiles 2x1) = 21 windows, in batches of up to 8, against one window per call."""
    images = _images(small_set)
    for backend, precision in _variants(people_zoo, backends):
        path = people_zoo.artifact(MODEL, backend, precision).path
        one = NanoDetPeople(load_session(backend, path, threads=2, max_batch=1), threshold=0.3)
        many = NanoDetPeople(load_session(backend, path, threads=2, max_batch=8), threshold=0.3)
        assert one.max_batch == 1
        if backend == "openvino":
            assert many.max_batch == 8, many.session.info.extra["batch"]
            assert many.session.info.extra["batch"]["reshapes_rewritten"] == 6  # NanoDet's [1, 80, -1] Reshapes
        else:  # fixed batch-1 graphs (input (1, 416, 416, 3), Reshape [1, 80, -1]): one window per call, and why
            assert many.max_batch == 1 and "one sample per call" in many.session.info.extra["batch"]["reason"]
        ref = [one.detect_boxes(im) for im in images]
        got = many.detect_batch(images)
        assert sum(len(b) for b, _ in ref) >= 10, f"{backend}/{precision}: the frames should have people"
        for (rb, rs), (gb, gs) in zip(ref, got):
            assert rb.shape == gb.shape, (backend, precision)
            np.testing.assert_allclose(gb, rb, atol=0.5, err_msg=f"{backend}/{precision} boxes")
            np.testing.assert_allclose(gs, rs, atol=1e-3, err_msg=f"{backend}/{precision} scores")


def test_openvino_batch_keeps_each_sample_apart(people_zoo):
    """Raw outputs of a batch of 5 different frames (uneven chunks over the infer streams) are the per-frame
    outputs; without the Reshape rewrite the same batch would come out as one sample of 5 x 3549 cells."""
    import openvino as ov

    from edge.backends.openvino_backend import batch_polymorphic, core

    path = people_zoo.artifact(MODEL, "openvino", "int8").path
    s = load_session("openvino", path, threads=2, max_batch=8)
    x = np.random.default_rng(3).random((5, 416, 416, 3), np.float32)
    got = s.run({"input_1": x})
    assert got["Identity"].shape == (5, 3549, 80) and got["Identity_1"].shape == (5, 3549, 44)
    for i in range(5):
        one = s.run({"input_1": x[i:i + 1]})
        for name in one:
            np.testing.assert_allclose(got[name][i:i + 1], one[name], atol=1e-4)

    plain = core().read_model(str(path))
    plain.reshape({plain.inputs[0]: ov.PartialShape([2, 416, 416, 3])})
    assert tuple(plain.outputs[0].get_partial_shape().to_shape()) == (1, 2 * 3549, 80)  # what the rewrite prevents
    fixed = core().read_model(str(path))
    assert batch_polymorphic(fixed) == (6, "")


def test_bad_batches_are_clear_errors(people_zoo):
    path = people_zoo.artifact(MODEL, "openvino", "int8").path
    batched = load_session("openvino", path, threads=2, max_batch=4)
    with pytest.raises(BackendError, match=r"batch of 5 .* takes 1\.\.4"):
        batched.run({"input_1": np.zeros((5, 416, 416, 3), np.float32)})
    single = load_session("onnxruntime", people_zoo.artifact(MODEL, "onnxruntime", "fp32").path, max_batch=1)
    with pytest.raises(BackendError, match=r"has shape \(2, 416, 416, 3\), model expects \(1, 416, 416, 3\)"):
        single.run({"input_1": np.zeros((2, 416, 416, 3), np.float32)})
