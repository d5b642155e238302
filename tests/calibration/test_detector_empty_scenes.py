"""Person-detector INT8 gate, empty scenes (issue 11 item 4): person-free frames, false positives at the runtime
threshold FP32 vs INT8, with the real model files of the built zoo."""
from __future__ import annotations

import numpy as np
import pytest

from calibration import accuracy
from calibration.accuracy import EMPTY_SCENE_THRESHOLD, empty_scene_check, empty_scenes, passes_gate, ssd_detect
from edge.core.paths import cache_dir
from models.build.runners import open_model, run_batch
from models.build.verify import empty_inputs

GATE = {"recall_min": 0.99, "kp_drift_max": 0.02, "score_drift_max": 0.1}


@pytest.fixture(scope="module")
def zoo():
    from models.zoo import ModelNotBuilt, ModelZoo

    z = ModelZoo(cache_dir())
    try:
        for name in ("pose_detection", "nanodet_m_416"):
            z.artifact(name, "openvino", "fp32")
    except ModelNotBuilt as e:
        pytest.fail(f"{e}")  # the model tests build the zoo; these need it
    return z


def test_empty_scenes_are_deterministic_and_split():
    cache = cache_dir()
    a = empty_scenes(cache, "heldout", "pose_detector", 224)
    b = empty_scenes(cache, "heldout", "pose_detector", 224)
    c = empty_scenes(cache, "calib", "pose_detector", 224)
    assert a.shape == (2 * 8 + 48, 224, 224, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert c.shape[0] == 3 * 8 + 48 and not np.array_equal(a[-48:], c[-48:])  # other negatives, other aisles
    n = empty_scenes(cache, "heldout", "people_detector", 416)
    assert n.shape == (64, 416, 416, 3)
    with pytest.raises(ValueError, match="unknown split 'golden'"):
        empty_scenes(cache, "golden", "pose_detector", 224)


def _pose(zoo, precision: str):
    return open_model(zoo.artifact("pose_detection", "openvino", precision).path, 1)


def test_check_counts_new_false_positives_on_real_outputs(zoo):
    """FP32 against itself adds nothing; one anchor pushed over the threshold in one frame is one new false
    positive, and the gate fails on it naming the counts."""
    feeds = empty_inputs(cache_dir() / "calibration" / "pose_detection" / "heldout.npz", "pose_detector", 224,
                         "minus_one_one")
    ref = run_batch(_pose(zoo, "fp32"), {"input_1": feeds["input_1"][-8:]})  # 8 shop aisles
    detect = ssd_detect("pose_detector", 224, EMPTY_SCENE_THRESHOLD["pose_detector"])
    same = empty_scene_check(ref, ref, detect)
    assert same["n_frames"] == 8 and same["new_false_positives"] == 0
    assert same["fp32_false_positives"] == same["int8_false_positives"]
    bad = {k: v.copy() for k, v in ref.items()}
    scores = bad["Identity_1"][3, :, 0]
    quiet = int(np.argmin(np.abs(scores + 5)))  # an anchor the model scores well below the threshold
    bad["Identity_1"][3, quiet, 0] = 6.0
    got = empty_scene_check(ref, bad, detect)
    assert got["new_false_positives"] == 1 and got["frames_with_new"] == [3] and got["new_max_score"] > 0.99
    result = {"recall": 1.0, "kp_drift": 0.001, "score_drift": 0.001, "empty_scenes": got}
    ok, why = passes_gate("pose_detector", result, GATE)
    assert not ok and "1 new false positives (max 0" in why
    ok, _ = passes_gate("pose_detector", {**result, "empty_scenes": same}, GATE)
    assert ok


@pytest.mark.parametrize("name", ["pose_detection", "nanodet_m_416"])
def test_openvino_default_adds_no_false_positives_on_empty_scenes(zoo, name):
    """The built OpenVINO INT8 artefact on the held-out empty scenes, as the build's eval step runs it: the count
    is reported, and where INT8 is the manifest default it adds no false positive."""
    m = zoo.manifest(name)
    cal = m["calibration"]
    feeds = empty_inputs(cache_dir() / "calibration" / name / "heldout.npz", cal["metric"], cal["input_size"],
                         cal["norm"])
    fp32 = run_batch(open_model(zoo.artifact(name, "openvino", "fp32").path, 1), feeds)
    int8 = run_batch(open_model(zoo.artifact(name, "openvino", "int8").path, 1), feeds)
    if cal["metric"] == "pose_detector":
        detect = ssd_detect("pose_detector", 224, EMPTY_SCENE_THRESHOLD["pose_detector"])
    else:
        from models.build.graph_chain import detect_fn
        detect = detect_fn(m["source"]["recipe"], cal["input_size"], EMPTY_SCENE_THRESHOLD["people_detector"])
    got = empty_scene_check(fp32, int8, detect)
    assert got["n_frames"] == 64
    if m["defaults"]["openvino"]["precision"] == "int8":
        assert got["new_false_positives"] == 0, got
    # the build's eval step recorded the same check on the held-out empty scenes
    rec = accuracy_record(zoo, name)["openvino/int8"]["empty_scenes"]
    assert rec["n_frames"] == 64 and rec["new_false_positives"] >= 0


def accuracy_record(zoo, name: str) -> dict:
    import json

    return json.loads((zoo.model_dir(name) / "work" / "accuracy_int8.json").read_text())


def test_gate_without_empty_scene_result_is_unchanged():
    ok, why = passes_gate("pose_detector", {"recall": 0.99, "kp_drift": 0.01, "score_drift": 0.05}, GATE)
    assert ok and "empty scenes" not in why
    assert accuracy.EMPTY_SCENE_THRESHOLD == {"pose_detector": 0.5, "people_detector": 0.3}
