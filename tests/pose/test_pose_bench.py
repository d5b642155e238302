"""`edge bench pose` writes its keys (a short run: one clip, OpenVINO FP32 + PTQ INT8 of the full landmark model,
against MediaPipe for real), including each FP32 pipeline's own noise floor (the same pipeline on the frames with
±1 grey level of noise, vs itself), the INT8 model replayed on the FP32 pipeline's ROIs, and the landmark model's
own time."""
from __future__ import annotations

import argparse
import json

import pytest

from devtools.bench import pose as bench_pose


def test_bench_pose_writes_its_keys_and_the_fp32_self_noise(tmp_path):
    from models.zoo import ModelZoo

    zoo = ModelZoo()
    for p in ("fp32", "int8", "bf16"):
        zoo.artifact("pose_landmark_full", "openvino", p)  # raises ModelNotBuilt: the suite builds the zoo first
    ap = argparse.ArgumentParser()
    bench_pose.add_arguments(ap)
    out = tmp_path / "pose.json"
    args = ap.parse_args(["--frames", "12", "--clips", "bus_walk", "--backends", "openvino", "--precisions", "fp32", "int8", "bf16",
                          "--models", "pose_landmark_full", "--threads", "1", "--warmup", "2", "--chunk", "4"])
    args.json = str(out)
    assert bench_pose.run(args) == 0
    r = json.loads(out.read_text())
    cfg = {c["key"]: c for c in r["configs"]}
    fp32, int8 = cfg["pose_landmark_full/openvino/fp32"], cfg["pose_landmark_full/openvino/int8"]
    for c in (fp32, int8):
        for k in ("ms_median", "ms_p95", "ms_p99", "fps_ratio_vs_mediapipe", "drift_vs_reference"):
            assert isinstance(c[k], float) and c[k] > 0, (c["key"], k)
        assert c["frames_compared"] == 12 and c["presence_disagreements"] == 0
    assert fp32["drift_vs_fp32"] == 0.0  # itself
    # the FP32 pipeline's own noise floor: sub-LSB noise moves the landmarks, but by far less than a torso
    assert 0 < fp32["fp32_self_noise"] < 0.1 and int8["fp32_self_noise"] == fp32["fp32_self_noise"]
    # the ratio is taken before rounding; the JSON values are rounded
    assert int8["drift_vs_fp32_over_self_noise"] == pytest.approx(int8["drift_vs_fp32"] / int8["fp32_self_noise"],
                                                                  abs=2e-3)
    # the INT8 model on the FP32 pipeline's ROIs (no loop feedback), and the landmark model timed alone
    assert fp32["drift_vs_fp32_same_rois"] == 0.0 and 0 < int8["drift_vs_fp32_same_rois"] < 0.1
    assert fp32["speedup_vs_fp32"] == fp32["landmark_speedup_vs_fp32"] == 1.0
    for c in (fp32, int8):
        assert 0 < c["landmark_ms_median"] < c["ms_median"] and c["landmark_ms_p95"] >= c["landmark_ms_median"]
    assert int8["landmark_speedup_vs_fp32"] > 0 and int8["speedup_vs_fp32"] == pytest.approx(
        fp32["ms_median"] / int8["ms_median"], abs=2e-3)
    # the full model corrects most of a ROI error within a frame (measured: scale 0.75, shift 0.03 on 6 photos)
    for c in (fp32, int8):
        assert c["roi_gain_photos"] >= 5 and 0.3 < c["roi_gain_scale"] < 1.0 and abs(c["roi_gain_shift"]) < 0.3
    assert 0 < r["reference_self_noise"] < 0.1 and r["drift_limit"] >= 0.01
    assert r["machine"]["cpu_class"] and "cpu_flags" in r["machine"]
    # bf16 counts as run as built only on a CPU with native bf16 (else OpenVINO runs it in f32: FP32's numbers)
    bf16 = cfg["pose_landmark_full/openvino/bf16"]
    assert bf16["runs_as_built_on_this_cpu"] == r["machine"]["bf16_supported"]
    assert bf16["session"]["precision"] == "bf16" and bf16["presence_disagreements"] == 0
    assert (bf16["drift_vs_fp32_same_rois"] > 0) == r["machine"]["bf16_supported"]
