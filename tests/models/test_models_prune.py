"""The pruned student (models/build/train/prune.py, `--arch pruned`): the cut keeps the teacher's inputs and outputs,
moving the segmentation refinement to 128x128 alone keeps the landmarks, a run resumes to the same weights and
exports a model the runtimes load, and wrong options are refused before any training."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

TRAIN_DIR = Path(__file__).resolve().parents[2] / "models" / "build" / "train"

CHECK = """
import json, sys
import numpy as np, onnx, onnxruntime as ort
from prune import PRUNED_KEEP, prune
teacher, out, golden, keep = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
x = np.load(golden)["x"].astype(np.float32) / 255.0
rep = prune(__import__("pathlib").Path(teacher), __import__("pathlib").Path(out), keep or PRUNED_KEEP, x[:8],
            low_seg=sys.argv[5] == "1")
names = ["Identity", "Identity_1", "Identity_2", "Identity_3", "Identity_4"]
def run(p):
    s = ort.InferenceSession(p, providers=["CPUExecutionProvider"])
    return [np.concatenate(v) for v in zip(*[s.run(names, {"input_1": x[i:i + 1]}) for i in range(len(x))])]
t, o = run(teacher), run(out)
a, b = (s[0].reshape(len(x), 39, 5)[:, :33, :2] for s in (t, o))
st, so = t[2] > 0, o[2] > 0
iou = float(((st & so).sum((1, 2, 3)) / np.maximum((st | so).sum((1, 2, 3)), 1)).mean())
m = onnx.load(out)
print(json.dumps({"params": rep["params"], "groups": rep["groups"], "moved": rep["low_seg_moved_nodes"],
                  "shapes_equal": [u.shape == v.shape for u, v in zip(t, o)], "lm_err": float(np.abs(a - b).max()),
                  "seg_iou": iou, "inputs": [i.name for i in m.graph.input],
                  "outputs": [i.name for i in m.graph.output]}))
"""


def _check(train_py, teacher, golden, out, keep: dict, low_seg: bool) -> dict:
    r = subprocess.run([train_py, "-c", CHECK, str(teacher), str(out), str(golden), json.dumps(keep),
                        "1" if low_seg else "0"], capture_output=True, text=True, cwd=TRAIN_DIR, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_pruned_cut_keeps_io_and_cuts_parameters(train_py, teacher, built_cache, tmp_path):
    """The default cut: the teacher's input and five outputs in the same shapes, about 1.0 M parameters (the issue
    allows 1.3 M; the teacher has 3.1 M), each group cut to a multiple of 8 channels."""
    golden = built_cache / "calibration" / "pose_landmark_full" / "golden.npz"
    r = _check(train_py, teacher, golden, tmp_path / "p.onnx", {}, True)
    assert r["inputs"] == ["input_1"] and r["outputs"] == ["Identity", "Identity_1", "Identity_2", "Identity_3",
                                                           "Identity_4"]
    assert all(r["shapes_equal"])
    assert 0.9e6 < r["params"] < 1.1e6, r["params"]
    assert r["moved"] >= 8  # the refinement blocks between the last Resize and the segmentation head
    assert len(r["groups"]) >= 9 and all(g["kept"] % 8 == 0 and g["kept"] < g["channels"] for g in r["groups"])
    assert r["lm_err"] > 1.0  # untrained: cutting two thirds of the channels moves the landmarks (training mends it)


def test_low_seg_alone_keeps_landmarks(train_py, teacher, built_cache, tmp_path):
    """Moving the segmentation refinement below the upsampling touches no other output: the landmarks are the
    teacher's, and the mask still mostly agrees before any training."""
    golden = built_cache / "calibration" / "pose_landmark_full" / "golden.npz"
    r = _check(train_py, teacher, golden, tmp_path / "s.onnx", {"8x864": 1.0}, True)
    assert r["groups"] == [] and r["moved"] >= 8
    assert r["lm_err"] < 1e-3
    assert r["seg_iou"] > 0.8, r["seg_iou"]
    same = _check(train_py, teacher, golden, tmp_path / "n.onnx", {"8x864": 1.0}, False)
    assert same["moved"] == 0 and same["lm_err"] < 1e-4 and same["seg_iou"] > 0.999


def test_unknown_group_is_refused(train_py, teacher, tmp_path):
    r = subprocess.run([train_py, str(TRAIN_DIR / "prune.py"), str(teacher), str(tmp_path / "x.onnx"),
                        "--keep", "8x999=0.5"], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "8x999" in r.stderr and "--list" in r.stderr
    assert not (tmp_path / "x.onnx").exists()
    listed = subprocess.run([train_py, str(TRAIN_DIR / "prune.py"), str(teacher), "--list"], capture_output=True,
                            text=True, timeout=300)
    assert listed.returncode == 0 and "8x864" in listed.stdout and "graph input/output" in listed.stdout


def test_pruned_run_resumes_exports_and_refuses_mixups(train_py, teacher, built_cache, tmp_path):
    """A pruned run cut short resumes to exactly the weights of a whole one; its final.pt exports (the start
    graph travels in the checkpoint) to an ONNX file onnxruntime runs with the teacher's outputs; a small-student
    --init or QAT with --arch is refused naming the fix."""
    cal = built_cache / "calibration" / "pose_landmark_full"
    common = ["--kind", "student", "--arch", "pruned", "--keep", "8x864=0.25", "--teacher", str(teacher),
              "--photos", str(built_cache / "photos"), "--provenance", str(cal / "provenance.json"), "--steps", "2",
              "--batch", "2", "--threads", "1", "--device", "cpu", "--ckpt-every", "1"]

    def loop(out: Path, *extra: str, args=common) -> subprocess.CompletedProcess:
        return subprocess.run([train_py, str(TRAIN_DIR / "loop.py"), *args, "--out", str(out), *extra],
                              capture_output=True, text=True, timeout=600)

    whole = loop(tmp_path / "whole")
    assert whole.returncode == 0 and "pruned the teacher to" in whole.stderr, whole.stderr[-2000:]
    cut = loop(tmp_path / "cut", "--time-limit", "0.001")
    assert cut.returncode == 3, cut.stderr[-2000:]
    resumed = loop(tmp_path / "cut")
    assert resumed.returncode == 0 and "resuming at step 1 of 2" in resumed.stderr, resumed.stderr[-2000:]
    code = """
import sys, torch
a, b = (torch.load(p, map_location="cpu", weights_only=False) for p in sys.argv[1:3])
assert a["start_onnx"] == b["start_onnx"] and a["config"]["arch"]["keep"]["8x864"] == 0.25
print(max(float((a["model"][k] - b["model"][k]).abs().max()) for k in a["model"] if a["model"][k].numel()))
"""
    r = subprocess.run([train_py, "-c", code, str(tmp_path / "whole" / "final.pt"), str(tmp_path / "cut" /
                        "final.pt")], capture_output=True, text=True, cwd=TRAIN_DIR, timeout=300)
    assert r.returncode == 0 and float(r.stdout.split()[-1]) == 0.0, r.stderr[-2000:]
    stem = tmp_path / "export" / "pruned"
    stem.parent.mkdir()
    ex = subprocess.run([train_py, str(TRAIN_DIR / "export.py"), str(tmp_path / "whole" / "final.pt"), str(stem),
                         "--kind", "student", "--teacher", str(teacher)], capture_output=True, text=True, timeout=600)
    assert ex.returncode == 0, ex.stderr[-2000:]
    code = """
import sys, numpy as np, onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
out = dict(zip([o.name for o in s.get_outputs()], s.run(None, {"input_1": np.zeros((1, 256, 256, 3), np.float32)})))
print({k: v.shape for k, v in sorted(out.items())})
"""
    r = subprocess.run([train_py, "-c", code, str(stem) + ".onnx"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == ("{'Identity': (1, 195), 'Identity_1': (1, 1), 'Identity_2': (1, 256, 256, 1), "
                                "'Identity_3': (1, 64, 64, 39), 'Identity_4': (1, 117)}")
    small = [a for a in common if a not in ("--arch", "pruned", "--keep", "8x864=0.25")]
    mixed = loop(tmp_path / "mixed", "--init", str(tmp_path / "whole" / "final.pt"), args=small)
    assert mixed.returncode != 0 and "give --arch pruned" in mixed.stderr, mixed.stderr[-2000:]
    qat = loop(tmp_path / "qat", args=["--kind", "qat", *common[2:]])
    assert qat.returncode != 0 and "--arch is for --kind student" in qat.stderr
    assert not (tmp_path / "mixed" / "final.pt").exists() and not (tmp_path / "qat" / "final.pt").exists()
