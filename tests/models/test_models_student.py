"""pose_landmark_student as a zoo model (source.kind = "trained"): manifest schema, the build chain's steps in a
throw-away cache, and the fail-soft path when the committed file is missing or altered."""
from __future__ import annotations

import copy
import json
import logging
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest

from models import manifest
from models.manifest import ManifestError
from tests.models.student_cache import STUDENT, STUDENT_STEPS, build_student, prepared_cache

ROOT = Path(__file__).resolve().parents[2]


def _student() -> dict:
    with open(manifest.MANIFEST_DIR / f"{STUDENT}.toml", "rb") as f:
        return tomllib.load(f)


def test_student_manifest_matches_the_committed_file():
    from models.build import trained

    m = manifest.load_all()[STUDENT]
    s = m["source"]
    assert s["kind"] == "trained" and s["teacher"] == "pose_landmark_full" and "Apache-2.0" in s["licence"]
    f = trained.verified_file(STUDENT, s["member"], manifest.load_all()[s["teacher"]]["source"]["sha256"])
    assert (f.sha256, f.size_bytes) == (s["sha256"], s["size_bytes"])
    assert f.size_bytes <= trained.MAX_COMMITTED_BYTES
    assert {(a["backend"], a["precision"]) for a in m["artifacts"]} == {
        ("onnxruntime", "fp32"), ("openvino", "fp32"), ("openvino", "int8"), ("onnxruntime", "int8")}
    assert set(m["defaults"]) == {"onnxruntime", "openvino"}  # no TFLite artefact, so no TFLite default
    assert all(d["precision"] == "fp32" and "0.074" in d["reason"] for d in m["defaults"].values())
    teacher = manifest.load_all()["pose_landmark_full"]
    assert m["inputs"] == teacher["inputs"] and [o["shape"] for o in m["outputs"]] == \
        [o["shape"] for o in teacher["outputs"]]


@pytest.mark.parametrize("mutate, expect", [
    (lambda m: m["source"].pop("teacher"), "source.teacher: required for source.kind = 'trained'"),
    (lambda m: m["source"].update(member="models/trained/x.onnx"), "source.member: 'models/trained/x.onnx' must be"),
    (lambda m: m["source"].update(member="student.tflite"), "source.member"),
    (lambda m: m["source"].update(wheel="mediapipe==0.10.21"), "source.wheel: not used by source.kind = 'trained'"),
    (lambda m: m["defaults"].pop("openvino"), "defaults.openvino: required key is missing"),
    (lambda m: m["defaults"].update(tflite={"precision": "fp32", "reason": "x"}),
     "defaults.tflite.precision: 'fp32' has no artefact for tflite"),
])
def test_bad_trained_manifest_names_the_key(mutate, expect):
    m = copy.deepcopy(_student())
    mutate(m)
    with pytest.raises(ManifestError) as e:
        manifest.validate(m, "pose_landmark_student.toml")
    assert "pose_landmark_student.toml" in str(e.value) and expect in str(e.value)


@pytest.fixture(scope="module")
def student_build(built_cache, tmp_path_factory):
    """The chain builds the student (FP32) in a throw-away copy of the real, built cache."""
    return build_student(built_cache, tmp_path_factory.mktemp("student"))


def test_chain_builds_the_student(student_build):
    from models.build.runners import open_model, run_batch
    from models.build.verify import model_inputs
    from models.zoo import ModelZoo

    cache, res = student_build
    assert {s.split(":")[1] for s in res.ran if s.startswith(STUDENT + ":")} == STUDENT_STEPS
    assert not [s for s in res.ran if s.startswith("pose_landmark_full:")]  # the teacher is not rebuilt
    zoo = ModelZoo(cache)
    zoo.verify(STUDENT)  # signed built.json, every file's sha256
    arts = {(a.backend, a.precision): a for a in zoo.artifacts(STUDENT)}
    assert set(arts) == {("onnxruntime", "fp32"), ("openvino", "fp32")}  # skip_int8
    assert zoo.artifact(STUDENT, "openvino").precision == "fp32"  # the default
    with pytest.raises(KeyError, match="no default precision for backend 'tflite'"):
        zoo.artifact(STUDENT, "tflite")
    # golden = the committed ONNX on the teacher's golden inputs; the OpenVINO IR made from it agrees
    ins, outs = zoo.golden(STUDENT)
    teacher_golden = model_inputs(cache / "calibration" / "pose_landmark_full" / "golden.npz", "zero_one")
    np.testing.assert_array_equal(ins["input_1"], teacher_golden["input_1"])
    got = run_batch(open_model(arts[("openvino", "fp32")].path), ins)
    for k, ref in outs.items():
        assert np.abs(got[k] - ref).max() <= 5e-3 + 1e-4 * np.abs(ref).max(), k


def test_student_accuracy_vs_teacher_is_measured_and_matches_its_provenance(student_build):
    """The build re-measures the distillation gap on the teacher's held-out crops; it must match what
    PROVENANCE.json claims for the committed file (the same crops, the same weights)."""
    from models.build import trained

    cache, _ = student_build
    m = manifest.load_all()[STUDENT]
    acc = json.loads((cache / "models" / STUDENT / m["version"] / "work" / "accuracy_teacher.json").read_text())
    got = acc["onnxruntime/fp32"]
    claimed = trained.provenance(STUDENT)["accuracy_heldout"]["onnxruntime/fp32"]
    assert got["n"] == claimed["n"] == m["calibration"]["heldout_samples"]
    for k in ("drift_mean", "drift_p95", "seg_iou"):
        assert got[k] == pytest.approx(claimed[k], abs=1e-3), k
    assert got["drift_mean"] > 0.02  # the documented miss of the 0.02 target; revisit the docs if this fails


def _altered_root(tmp_path, how: str):
    from models.build import trained

    root = tmp_path / "trained"
    shutil.copytree(trained.TRAINED_ROOT / STUDENT, root / STUDENT)
    f = root / STUDENT / _student()["source"]["member"]
    if how == "missing":
        f.unlink()
    else:
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0xFF
        f.write_bytes(bytes(data))
    return root


@pytest.mark.parametrize("how, says", [("missing", "is missing"), ("altered", "does not match PROVENANCE.json")])
def test_bad_committed_file_leaves_the_student_out(tmp_path, monkeypatch, caplog, how, says):
    from models.build import trained
    from models.build.chain import Chain

    monkeypatch.setattr(trained, "TRAINED_ROOT", _altered_root(tmp_path, how))
    chain = Chain(tmp_path / "cache", only=[STUDENT, "pose_detection"])
    with caplog.at_level(logging.WARNING, logger="models.build.trained_chain"):
        steps = chain.plan()
    assert not [s for s in steps if s.model == STUDENT]
    assert chain.names == ["pose_detection"]  # nothing of the student is signed; the other model builds
    assert "pose_landmark_student left out of the zoo" in caplog.text and says in caplog.text
    assert [s for s in steps if s.model == "pose_detection" and s.name == "verify_fp32"]


def test_manifest_out_of_step_with_the_committed_file_is_left_out(tmp_path, monkeypatch, caplog):
    """A retrained file installed without updating the manifest's sha256: left out, naming the manifest."""
    from models.build.chain import Chain

    chain = Chain(tmp_path / "cache", only=[STUDENT])
    chain.all[STUDENT]["source"]["sha256"] = "0" * 64
    with caplog.at_level(logging.WARNING, logger="models.build.trained_chain"):
        assert not [s for s in chain.plan() if s.model == STUDENT]
    assert "models/manifests/pose_landmark_student.toml" in caplog.text and chain.names == []


def test_left_out_student_build_completes_without_it(built_cache, tmp_path, monkeypatch):
    """A whole build with an altered committed file finishes; the zoo has no student and says to build."""
    from models.build import trained
    from models.build.chain import Chain
    from models.zoo import ModelNotBuilt, ModelZoo

    monkeypatch.setattr(trained, "TRAINED_ROOT", _altered_root(tmp_path, "altered"))
    cache = prepared_cache(built_cache, tmp_path / "cache")
    res = Chain(cache, only=[STUDENT], skip_int8=True).run(progress=False)
    assert not [s for s in res.ran + res.skipped if s.startswith(STUDENT)]
    with pytest.raises(ModelNotBuilt, match="edge models build"):
        ModelZoo(cache).artifact(STUDENT, "onnxruntime")


@pytest.mark.parametrize("mutate, expect", [
    (lambda m: m["unsuited"][0].update(config="Analytics/Shelves"), "unsuited[0].config: 'Analytics/Shelves' must be"),
    (lambda m: m["unsuited"][0].pop("reason"), "reason: required key is missing"),
])
def test_bad_unsuited_entry_names_the_key(mutate, expect):
    m = copy.deepcopy(_student())
    mutate(m)
    with pytest.raises(ManifestError) as e:
        manifest.validate(m, "pose_landmark_student.toml")
    assert expect in str(e.value)


def test_unsuited_paths_name_device_config_sections():
    """Every manifest's [[unsuited]].config resolves on a device config (a typo would never warn)."""
    from edge.app.config import EdgeConfig

    paths = [u["config"] for m in manifest.load_all().values() for u in m.get("unsuited", [])]
    assert "analytics.shelves" in paths
    for path in paths:
        node = EdgeConfig
        for part in path.split("."):
            assert part in node.model_fields, f"{path}: no {part!r} in {node.__name__}"
            node = node.model_fields[part].annotation
            node = getattr(node, "__args__", (node,))[0] if not hasattr(node, "model_fields") else node


def test_doctor_warns_when_a_shelf_camera_selects_the_student(zoo, tmp_path):
    """The shelf camera's committed config with the student: `edge doctor` warns, naming the model, the section
    and the measured reason; with the full model, or with the student on a device without shelves, it does not."""
    import subprocess
    import sys

    from edge.app.config import load_config
    from edge.app.doctor import unsuited_uses

    text = (ROOT / "device_configs" / "shelf-camera.toml").read_text()
    assert 'name = "pose_landmark_full"' in text and "[[analytics.shelves]]" in text
    student = tmp_path / "shelf-student.toml"
    student.write_text(text.replace('name = "pose_landmark_full"', f'name = "{STUDENT}"').replace(
        'broker = ""', f'broker = ""\noutbox_path = "{tmp_path / "outbox.sqlite"}"'))
    out = tmp_path / "r.json"
    r = subprocess.run([sys.executable, "-m", "edge.app.cli", "doctor", "--config", str(student), "--json", str(out)],
                       capture_output=True, text=True, timeout=180)
    warned = [w for w in json.loads(out.read_text())["warnings"] if "not suited" in w]
    assert warned and f"model {STUDENT} is not suited to [analytics.shelves]" in warned[0], r.stdout + r.stderr
    assert "recall" in warned[0]
    r = subprocess.run([sys.executable, "-m", "edge.app.cli", "run", "--config", str(student), "--max-frames", "2",
                        "--no-http"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0 and f"model {STUDENT} is not suited to [analytics.shelves]" in r.stderr, r.stderr[-3000:]
    assert unsuited_uses(load_config(ROOT / "device_configs" / "shelf-camera.toml")) == []
    kiosk = (ROOT / "device_configs" / "kiosk.toml").read_text()
    assert "[[analytics.shelves]]" not in kiosk
    no_shelves = tmp_path / "kiosk-student.toml"
    no_shelves.write_text(kiosk.replace('name = "pose_landmark_full"', f'name = "{STUDENT}"'))
    assert STUDENT in no_shelves.read_text() and unsuited_uses(load_config(no_shelves)) == []
