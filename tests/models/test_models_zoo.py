"""Zoo API, golden files and `edge models list --json`."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from models.zoo import Artifact, ModelNotBuilt, ModelZoo

KEYS = {"name": str, "version": str, "task": str, "backend": str, "precision": str, "path": str, "sha256": str,
        "size_bytes": int}


def test_list_json_schema(built_cache, repo):
    env = dict(os.environ, STOREFRONT_EDGE_CACHE=str(built_cache))
    r = subprocess.run([sys.executable, "-m", "edge.app.cli", "--log-level", "WARNING", "models", "list", "--json"],
                       capture_output=True, text=True, cwd=repo, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert isinstance(rows, list) and rows
    for row in rows:
        for k, t in KEYS.items():
            assert isinstance(row[k], t), (k, row)
        assert row["backend"] in ("onnxruntime", "openvino", "tflite")
        assert row["precision"] in ("fp32", "int8", "int8_full", "int8_qat", "bf16")
        assert os.path.getsize(row["path"]) == row["size_bytes"]
        assert hashlib.sha256(open(row["path"], "rb").read()).hexdigest() == row["sha256"]
    names = {(r["name"], r["backend"], r["precision"]) for r in rows}
    for n in ("pose_detection", "pose_landmark_full", "face_detection_full_range"):
        for b in ("onnxruntime", "openvino", "tflite"):
            assert (n, b, "fp32") in names


def test_artifact_lookup(zoo):
    a = zoo.artifact("pose_landmark_full", "openvino")
    assert isinstance(a, Artifact) and a.precision == zoo.default_precision("pose_landmark_full", "openvino")
    assert a.path.suffix == ".xml" and a.path.with_suffix(".bin").is_file() and a.format == "openvino"
    assert zoo.artifact("pose_detection", "onnxruntime", "fp32").path.suffix == ".onnx"
    assert zoo.artifact("pose_detection", "tflite", "int8").path.name == "pose_detection_int8.tflite"
    with pytest.raises(ModelNotBuilt, match="no onnxruntime × int8"):
        zoo.artifact("face_detection_full_range", "onnxruntime", "int8")


def test_not_built_names_the_command(tmp_path):
    z = ModelZoo(tmp_path)
    assert z.artifacts() == []
    with pytest.raises(ModelNotBuilt, match="pose_landmark_full.*edge models build"):
        z.artifact("pose_landmark_full", "tflite")
    with pytest.raises(ModelNotBuilt, match="edge models build"):
        z.golden("pose_detection")
    with pytest.raises(ModelNotBuilt, match="edge models build"):
        z.verify("pose_detection")


def test_golden_files(zoo):
    from models.build.runners import open_model, run_batch
    for name in zoo.names():
        m = zoo.manifest(name)
        ins, outs = zoo.golden(name)
        x = ins["input_1"]
        assert x.dtype == np.float32 and x.shape[1:] == tuple(m["inputs"][0]["shape"][1:]) and len(x) >= 8
        lo, hi = m["inputs"][0]["range"]
        assert x.min() >= lo - 1e-6 and x.max() <= hi + 1e-6 and x.std() > 0.05  # realistic, not blank
        assert [o["name"] for o in m["outputs"]] == sorted(outs, key=lambda k: (len(k), k))
        for o in m["outputs"]:
            assert outs[o["name"]].shape == (len(x), *o["shape"][1:])
        kind = m["source"].get("kind", "wheel")
        ref_backend = "onnxruntime" if kind == "trained" else "tflite"  # trained: golden = its ONNX on onnxruntime
        ref = run_batch(open_model(zoo.artifact(name, ref_backend, "fp32").path), ins)
        for k in outs:
            if kind in ("wheel", "trained"):  # golden = the original file on its runtime (.tflite on LiteRT)
                np.testing.assert_array_equal(ref[k], outs[k])
            else:  # golden = the TensorFlow graph; the .tflite is a conversion of it
                np.testing.assert_allclose(ref[k], outs[k], rtol=0, atol=m["verify"]["fp32_atol"])


def test_fp32_artifacts_match_golden(zoo):
    from models.build.runners import open_model, run_batch
    ins, outs = zoo.golden("pose_landmark_full")
    for backend in ("onnxruntime", "openvino"):
        got = run_batch(open_model(zoo.artifact("pose_landmark_full", backend, "fp32").path), ins)
        assert np.abs(got["Identity"] - outs["Identity"]).max() < 0.01  # landmark px in the 256 crop


FACE = "face_detection_full_range"


def _face_cache(real, cache):
    """cache holding a copy of the real face detector's version folder, its built.json re-signed with cache's key."""
    import shutil

    from models import sign

    src = ModelZoo(real).model_dir(FACE)
    dst = cache / "models" / FACE / src.name
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("work", "logs", ".steps"))
    payload = json.loads((dst / "built.json").read_text())["payload"]
    sign.write_signed(dst / "built.json", payload, sign.signing_key(cache))
    return dst


def test_current_link_out_of_the_model_folder_is_ignored(cache_as_is, tmp_path, caplog):
    """The zoo follows `current` only to a version folder beside it: an absolute target, `..` or a version name
    that is itself a link elsewhere would load (validly signed) files from outside the cache."""
    import shutil

    cache = tmp_path / "cache"
    built = _face_cache(cache_as_is, cache)
    mdir = built.parent
    outside = tmp_path / "elsewhere" / "9.9"
    shutil.copytree(built, outside)  # same key: the signature alone would not refuse it
    (mdir / "1.1").symlink_to(outside)
    for target in (str(outside), "../../../elsewhere/9.9", "1.1"):
        (mdir / "current").unlink(missing_ok=True)
        (mdir / "current").symlink_to(target)
        z = ModelZoo(cache)
        assert z.model_dir(FACE) == built, target
        a = z.artifact(FACE, "onnxruntime", "fp32")
        assert a.path.parent == built and outside not in a.path.resolve().parents, target
        z.check_artifact(a)
        assert f"ignoring {mdir / 'current'} -> {target}" in caplog.text
    inside = mdir / "1.2"  # an activated update: followed
    shutil.copytree(built, inside)
    (mdir / "current").unlink()
    (mdir / "current").symlink_to("1.2")
    assert ModelZoo(cache).model_dir(FACE) == inside


def test_verify_trusts_the_keys_the_runtime_trusts(cache_as_is, tmp_path):
    """A version signed by a key in <cache>/keys/trusted/ (the fleet key the update agent installs) opens at run
    time, so `edge models verify` (and doctor) must pass it too; a key nobody trusts still fails."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from models import sign

    cache = tmp_path / "cache"
    built = _face_cache(cache_as_is, cache)
    fleet, stranger = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    (cache / "keys" / "trusted").mkdir()
    (cache / "keys" / "trusted" / "fleet.pub").write_bytes(fleet.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    payload = json.loads((built / "built.json").read_text())["payload"]
    sign.write_signed(built / "built.json", payload, fleet)
    z = ModelZoo(cache)
    z.check_artifact(z.artifact(FACE, "onnxruntime", "fp32"))  # the runtime opens it
    z.verify(FACE)
    r = subprocess.run([sys.executable, "-m", "edge.app.cli", "models", "verify", "--cache", str(cache)],
                       capture_output=True, text=True, timeout=120)
    assert f"\n{FACE}: OK\n" in f"\n{r.stdout}", r.stdout + r.stderr  # (the other models are not in this cache)
    sign.write_signed(built / "built.json", payload, stranger)
    with pytest.raises(sign.SignatureError, match="BAD SIGNATURE"):
        z.verify(FACE)
    sign.write_signed(built / "built.json", payload, fleet)
    (built / "golden.npz").write_bytes(b"swapped")
    with pytest.raises(sign.SignatureError, match="golden.npz"):
        z.verify(FACE)  # every listed file is still hashed
