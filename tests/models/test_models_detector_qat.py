"""`edge models train --kind detector_qat` (issue 11 item 4): the converted person detector answers like
onnxruntime, and a tiny QAT run goes end to end (data, NNCF, training, export to IR + QDQ ONNX, evaluation against
the FP32 IR and the held-out gate, packaging refused unless the gate holds)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

TRAIN_DIR = Path(__file__).resolve().parents[2] / "models" / "build" / "train"


def test_detector_converts_with_parity(train_py, zoo, built_cache):
    """detector_loop.load_detector (DCR DepthToSpace, batch-agnostic head Reshapes) answers like onnxruntime on
    a batch of calibration windows; a wrong DepthToSpace order would move boxes and scores far beyond this."""
    onnx = zoo.artifact("pose_detection", "onnxruntime", "fp32").path
    calib = built_cache / "calibration" / "pose_detection" / "calib.npz"
    code = """
import sys, numpy as np, onnxruntime as ort, torch
import detector_loop as d
x = np.load(sys.argv[2])["x"][:4].astype(np.float32) / 127.5 - 1
model = d.load_detector(sys.argv[1])
with torch.no_grad():
    out = model(torch.from_numpy(x))
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
ref = [s.run(None, {"input_1": x[i:i + 1]}) for i in range(len(x))]
print(*(float(np.abs(np.concatenate([r[k] for r in ref]) - out[k].numpy()).max()) for k in range(2)))
"""
    r = subprocess.run([train_py, "-c", code, str(onnx), str(calib)], capture_output=True, text=True, cwd=TRAIN_DIR,
                       timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    boxes, scores = map(float, r.stdout.split()[-2:])
    assert boxes < 5e-3 and scores < 5e-3


def test_augmented_batches_depend_on_seed_and_step_only(train_py):
    code = """
import torch, detector_loop as d
pool = (torch.arange(6 * 224 * 224 * 3) % 251).to(torch.uint8).reshape(6, 224, 224, 3)
a, b, c = d.batch(pool, 4, 1, 5), d.batch(pool, 4, 1, 5), d.batch(pool, 4, 1, 6)
print(torch.equal(a, b), torch.equal(a, c), float(a.min()) >= -1, float(a.max()) <= 1, tuple(a.shape))
"""
    r = subprocess.run([train_py, "-c", code], capture_output=True, text=True, cwd=TRAIN_DIR, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split()[-8:] == ["True", "False", "True", "True", "(4,", "224,", "224,", "3)"]


def test_tiny_detector_qat_run_end_to_end(built_cache, tmp_path, train_py):
    """Two QAT steps on CPU through `edge models train --kind detector_qat --install`: exported IR and QDQ ONNX,
    calibration-split evaluation vs the FP32 IR (with the PTQ int8 beside it, speed interleaved), the held-out
    gate in PROVENANCE.json; an artefact that does not hold the gate is not installed."""
    root, work, bench = tmp_path / "trained", tmp_path / "run", tmp_path / "bench.json"
    r = subprocess.run([sys.executable, "-m", "edge.app.cli", "models", "train", "--kind", "detector_qat",
                        "--steps", "2", "--batch", "2", "--windows", "8", "--calib", "4", "--threads", "1",
                        "--rounds", "1", "--work", str(work), "--bench-json", str(bench), "--install",
                        "--trained-root", str(root)], capture_output=True, text=True, timeout=1500)
    prov = json.loads((work / "export" / "PROVENANCE.json").read_text())
    passes = prov["gate"]["passes"]
    assert r.returncode == (0 if passes else 2), r.stdout[-2000:] + r.stderr[-3000:]
    assert (root / "pose_detection").is_dir() == passes
    if not passes:
        assert "not installing" in r.stdout
    assert set(prov["files"]) == {"pose_detection_int8_qat.xml", "pose_detection_int8_qat.bin",
                                  "pose_detection_int8_qat.onnx"}
    assert prov["steps_done"] == 2 and prov["recipe"]["scope"] == {"first_convs": 6,
                                                                    "head_convs": ["Identity", "Identity_1"]}
    assert [c["step"] for c in prov["curve"]] == [0, 2] and "val_flips" in prov["curve"][0]
    assert prov["data"]["windows"] == 8 and prov["data"]["val"]["seed"] != prov["data"]["seed"]
    calib = prov["accuracy_calib_split"]
    assert set(calib["accuracy"]) == {"int8_ptq_x6", "int8_qat"}
    qat = calib["accuracy"]["int8_qat"]
    assert calib["val"]["split"] == "calib" and qat["n_ref_detections"] > 50 and 0.5 < qat["recall"] <= 1
    assert qat["empty_scenes"]["n_frames"] == calib["empty"]["n"] > 0
    assert {"1t", "2t"} <= set(calib["timing"]["int8_qat"])
    held = prov["accuracy_heldout"]
    assert set(held) == {"openvino/int8", "openvino/int8_qat", "onnxruntime/int8_qat"}
    assert held["openvino/int8_qat"]["gate"].startswith("recall ")
    assert json.loads(bench.read_text())["gate"] == prov["gate"]
    import openvino as ov

    m = ov.Core().read_model(str(work / "export" / "pose_detection_int8_qat.xml"))
    assert [o.get_any_name() for o in m.outputs] == ["Identity", "Identity_1"]
    assert any(op.get_type_name() == "FakeQuantize" for op in m.get_ordered_ops())
    x = np.zeros((1, 224, 224, 3), np.float32)
    cm = ov.Core().compile_model(m, "CPU")
    out = cm({"input_1": x})
    assert out[cm.outputs[0]].shape == (1, 2254, 12) and out[cm.outputs[1]].shape == (1, 2254, 1)
