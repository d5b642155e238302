"""Selecting outputs: only the named outputs come back (OpenVINO prunes the rest of the graph), same values."""
from __future__ import annotations

import numpy as np
import pytest

from edge.backends import BackendError, load_session

WANT = ["Identity", "Identity_1", "Identity_4"]  # landmarks, pose flag, world: no segmentation, no heatmap


@pytest.mark.parametrize("backend,kind", [("tflite", "tflite"), ("onnxruntime", "onnx"), ("openvino", "ir"),
                                          ("openvino", "tflite")])
def test_selected_outputs_match_the_full_model(zoo, model_files, backend, kind):
    path = model_files["pose_landmark_full", kind]
    inputs, _ = zoo.golden("pose_landmark_full")
    feed = {k: v[:1] for k, v in inputs.items()}
    full = load_session(backend, path).run(feed)
    sub = load_session(backend, path, outputs=WANT)
    assert [o.name for o in sub.outputs] == WANT
    got = sub.run(feed)
    assert sorted(got) == WANT
    for name in WANT:
        np.testing.assert_allclose(got[name], full[name], rtol=0, atol=1e-3 * max(1.0, np.abs(full[name]).max()))


def test_pruned_openvino_model_is_cheaper(model_files):
    """The segmentation head is real work: without it OpenVINO compiles a smaller graph."""
    full = load_session("openvino", model_files["pose_landmark_full", "ir"])
    sub = load_session("openvino", model_files["pose_landmark_full", "ir"], outputs=WANT)
    ops = lambda s: len(s._compiled.get_runtime_model().get_ops())  # noqa: E731
    assert ops(sub) < ops(full) - 10


@pytest.mark.parametrize("backend,kind", [("tflite", "tflite"), ("onnxruntime", "onnx"), ("openvino", "ir")])
def test_unknown_output_name_is_a_clear_error(model_files, backend, kind):
    with pytest.raises(BackendError, match=rf"{backend}: .*no output\(s\) \['segmentation'\]"):
        load_session(backend, model_files["pose_landmark_full", kind], outputs=["Identity", "segmentation"])


def test_pose_pipeline_without_segmentation_skips_the_mask_head(zoo):
    from edge.app.config import ModelsSection, ModelRef
    from edge.pose.config import PoseConfig
    from edge.pose.pipeline import PosePipeline

    models = ModelsSection(pose_detector=ModelRef(name="pose_detection", backend="openvino"),
                           pose_landmarks=ModelRef(name="pose_landmark_full", backend="openvino"))
    no_seg = PosePipeline((PoseConfig(segmentation=False), models), zoo)
    with_seg = PosePipeline((PoseConfig(segmentation=True), models), zoo)
    assert "Identity_2" not in {o.name for o in no_seg.sessions[1].outputs}
    assert "Identity_2" in {o.name for o in with_seg.sessions[1].outputs}
