"""Plug-in options from the device TOML (`[models.<model>.<backend>]`) reach the runtime sessions; bad keys are
config errors naming the key."""
from __future__ import annotations

import json

import pytest

from edge.app.config import ConfigError, load_config
from edge.backends.auto import open_model
from edge.backends.registry import BACKENDS
from edge.pose.pipeline import open_sessions

DEVICE = '[device]\nid = "d1"\nstore = "s1"\nkind = "kiosk"\n'


def _config(tmp_path, text: str):
    p = tmp_path / "device.toml"
    p.write_text(DEVICE + text)
    return load_config(p)


def test_toml_backend_options_reach_the_sessions(zoo, tmp_path):
    cfg = _config(tmp_path, """
[models.pose_detector]
name = "pose_detection"
backend = "onnxruntime"
precision = "fp32"
threads = 2

[models.pose_detector.onnxruntime]
intra_op_threads = 1
graph_optimization = "extended"

[models.pose_landmarks]
name = "pose_landmark_full"
backend = "openvino"
precision = "fp32"
threads = 1

[models.pose_landmarks.openvino]
threads = 2
performance_hint = "THROUGHPUT"
num_streams = 2

[models.pose_landmarks.tflite]
xnnpack = false
""")
    assert set(cfg.models.pose_landmarks.backend_options()) == {"openvino", "tflite"}
    assert cfg.models.pose_detector.backend_options()["onnxruntime"].intra_op_threads == 1
    det, lmk = open_sessions(cfg.models, zoo, cfg.pose)
    try:
        assert det.info.backend == "onnxruntime" and det.info.threads == 1  # the table wins over threads = 2
        assert det.info.extra["options"]["graph_optimization"] == "extended"
        assert lmk.info.backend == "openvino" and lmk.info.threads == 2
        compiled = lmk.info.extra["compiled"]  # read back from the compiled model
        assert compiled["INFERENCE_NUM_THREADS"] == "2"
        assert compiled["NUM_STREAMS"] == "2"
        assert compiled["PERFORMANCE_HINT"] == "THROUGHPUT"
    finally:
        det.close()
        lmk.close()


def test_auto_applies_the_options_of_the_backend_it_chooses(zoo, tmp_path):
    """Every candidate runs with its own table; the options are part of the cached choice's key."""
    cfg = _config(tmp_path, """
[models.pose_detector]
name = "pose_detection"
precision = "fp32"
threads = 2
[models.pose_detector.onnxruntime]
intra_op_threads = 1
[models.pose_detector.openvino]
threads = 1
[models.pose_detector.tflite]
threads = 1
""")
    ref = cfg.models.pose_detector
    cache = tmp_path / "choice.json"
    s = open_model(zoo, ref, cache_path=cache, options=ref.backend_options(), rounds=2, per_round=2)
    assert s.info.threads == 1, s.info
    open_model(zoo, ref, cache_path=cache, rounds=2, per_round=2)  # same model without the tables: another key
    assert len(json.loads(cache.read_text())) == 2


@pytest.mark.parametrize("table, key, msg", [
    ("[models.pose_landmarks.openvino]\nnum_stream = 1\n", "models.pose_landmarks.openvino.num_stream",
     "rename it to 'num_streams'"),
    ("[models.pose_landmarks.onnxruntime]\nexecution_mode = \"fast\"\n",
     "models.pose_landmarks.onnxruntime.execution_mode", "'sequential' or 'parallel'"),
    ("[models.pose_landmarks.tflite]\nthreads = 0\n", "models.pose_landmarks.tflite.threads", "greater than"),
    ("[models.pose_landmarks.hailo]\nthreads = 1\n", "models.pose_landmarks.hailo", "Extra inputs"),
])
def test_bad_backend_option_names_the_key(tmp_path, table, key, msg):
    with pytest.raises(ConfigError) as e:
        _config(tmp_path, f'[models.pose_landmarks]\nname = "pose_landmark_full"\n{table}')
    assert f"{tmp_path / 'device.toml'}: {key}: " in str(e.value) and msg in str(e.value)


def test_every_registered_backend_has_a_table():
    from edge.app.config import BackendName, ModelRef

    assert set(BACKENDS) <= set(ModelRef.model_fields)
    assert BackendName.__args__ == (*BACKENDS, "auto")
