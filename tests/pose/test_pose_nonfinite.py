"""A landmark model whose outputs are not finite (NaN: a damaged or overflowing model) never makes or keeps a track:
the real OpenVINO landmark model with its first weight tensor set to NaN, behind the real detector."""
from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from edge.core.frames import Frame
from edge.pose.config import PoseConfig
from edge.pose.pipeline import PosePipeline
from tests.pose.conftest import pose_sessions
from tests.pose.test_pose_pipeline import PHOTOS, load_photo

MODEL = "pose_landmark_full"


def nan_landmark_session(tmp_path):
    """The real FP32 landmark IR with every weight tensor set to NaN (clips between layers turn NaN into numbers,
    so one NaN layer is not enough): every output is NaN."""
    import openvino as ov

    from edge.backends.registry import load_session
    from models.zoo import ModelZoo

    src = ModelZoo().model_dir(MODEL) / f"{MODEL}_fp32.xml"
    if not src.is_file():
        pytest.fail(f"{MODEL} is not built: run `edge models build`")
    model = ov.Core().read_model(str(src))
    consts = [op for op in model.get_ordered_ops()
              if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.f32 and op.get_data().size >= 64]
    for op in consts:
        bad = ov.op.Constant(np.full(op.get_data().shape, np.nan, np.float32))
        for target in op.output(0).get_target_inputs():
            target.replace_source_output(bad.output(0))
    ov.save_model(model, str(tmp_path / "nan.xml"), compress_to_fp16=False)
    return load_session("openvino", tmp_path / "nan.xml", threads=2, precision="fp32")


def test_a_landmark_model_that_gives_nan_tracks_nobody(tmp_path, caplog):
    det, _ = pose_sessions("openvino")
    lmk = nan_landmark_session(tmp_path)
    out = lmk.run({lmk.inputs[0].name: np.zeros(lmk.inputs[0].shape, np.float32)})
    assert all(np.isnan(v).all() for v in out.values()), {k: np.isnan(v).mean() for k, v in out.items()}
    pipe = PosePipeline.from_sessions(PoseConfig(segmentation=False), det, lmk)
    img = load_photo(PHOTOS[0].name)
    with caplog.at_level(logging.WARNING):
        for i in range(4):
            res = pipe.process(Frame(img, i, time.monotonic(), time.time(), t_media=i / 30.0))
            assert res.people == [], i
    assert pipe.tracker.tracks == []
    assert caplog.text.count("gave non-finite outputs") == 1  # said once, not per frame
