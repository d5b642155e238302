"""Opening a model checks its files first: a damaged or swapped artefact, a tampered or damaged built.json and a
damaged golden.npz are refused with an error naming the model, the file and the fix. Real model files, copied
into a throw-away cache (its own signing key) and damaged there."""
from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import pytest

from edge.app.config import ModelRef
from edge.backends.auto import open_model
from models import sign
from models.golden import GoldenError
from models.zoo import ModelCorrupt, ModelNotBuilt, ModelZoo

FACE = "face_detection_full_range"
FIX = "edge models build"


def _copy_model(zoo, name: str, cache: Path) -> Path:
    """The model's built folder copied into cache (zoo layout), built.json re-signed with cache's dev key."""
    src = zoo.model_dir(name)
    dst = cache / "models" / name / src.name
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("work", "logs", ".steps"))
    _resign(dst / "built.json", cache, lambda p: None)
    return dst


def _resign(built: Path, cache: Path, edit) -> None:
    payload = json.loads(built.read_text())["payload"]
    edit(payload)
    sign.write_signed(built, payload, sign.signing_key(cache))


def _flip(path: Path) -> None:
    """Same size, sign bits flipped in the middle of the file: loads fine, computes garbage."""
    b = bytearray(path.read_bytes())
    for i in range(len(b) // 4 + 3, len(b) // 2, 4):
        b[i] ^= 0x80
    path.write_bytes(bytes(b))


@pytest.fixture()
def face(zoo, tmp_path):
    """(zoo over a throw-away cache holding only the face detector, its folder)."""
    d = _copy_model(zoo, FACE, tmp_path / "cache")
    return ModelZoo(tmp_path / "cache"), d


def test_clean_copy_opens_on_every_backend(face):
    z, _ = face
    for b in ("onnxruntime", "openvino", "tflite"):
        s = open_model(z, ModelRef(name=FACE, backend=b, precision="fp32", threads=1))
        assert s.info.backend == b


@pytest.mark.parametrize("backend, victim", [("openvino", "face_detection_full_range_fp32.bin"),
                                              ("openvino", "face_detection_full_range_fp32.xml"),
                                              ("onnxruntime", "face_detection_full_range_fp32.onnx"),
                                              ("tflite", "face_detection_full_range.tflite")])
def test_explicit_backend_refuses_a_damaged_file(face, backend, victim):
    z, d = face
    _flip(d / victim)
    with pytest.raises(ModelCorrupt) as ei:
        open_model(z, ModelRef(name=FACE, backend=backend, precision="fp32", threads=1))
    msg = str(ei.value)
    assert f"model '{FACE}'" in msg and str(d / victim) in msg and "modified" in msg and FIX in msg
    assert "roll back" in msg


def test_auto_does_not_reuse_a_cached_choice_whose_file_changed(face, tmp_path, caplog):
    z, d = face
    choice = tmp_path / "choice.json"
    ref = ModelRef(name=FACE, backend="auto", precision="fp32", threads=1)
    first = open_model(z, ref, cache_path=choice, rounds=1, per_round=1)
    art = z.artifact(FACE, first.info.backend, "fp32")
    _flip(Path(art.path).with_suffix(".bin") if art.format == "openvino" else Path(art.path))
    with caplog.at_level(logging.WARNING, logger="edge.backends.auto"):
        again = open_model(z, ref, cache_path=choice, rounds=1, per_round=1)
    assert again.info.backend != first.info.backend  # the damaged file is not loaded, cached choice or not
    warned = [r.message for r in caplog.records if "damaged" in r.message or "modified" in r.message]
    assert warned and FIX in warned[0] and FACE in warned[0]
    entries = json.loads(choice.read_text())
    assert len(entries) == 2  # another key: the damaged candidate is not part of it
    latest = max(entries.values(), key=lambda e: e["chosen_at"])
    assert latest["reasons"][first.info.backend].startswith("damaged artefact:")


def test_swapped_file_with_an_edited_built_json_fails_the_signature(face):
    """A file swapped for another model and built.json edited to its sha256, without the signing key."""
    z, d = face
    victim, other = d / "face_detection_full_range_fp32.onnx", d / "face_detection_full_range_fp32.xml"
    doc = json.loads((d / "built.json").read_text())
    shutil.copyfile(other, victim)
    a = next(a for a in doc["payload"]["artifacts"] if a["file"] == victim.name)
    meta = doc["payload"]["files"][other.name]
    a["sha256"], a["size_bytes"] = meta["sha256"], meta["size_bytes"]
    doc["payload"]["files"][victim.name] = dict(meta)
    (d / "built.json").write_text(json.dumps(doc))
    with pytest.raises(ModelCorrupt, match=rf"model '{FACE}': .*built.json: BAD SIGNATURE.*{FIX}"):
        open_model(z, ModelRef(name=FACE, backend="onnxruntime", precision="fp32", threads=1))


def test_unsafe_file_name_in_built_json_is_refused(face, tmp_path):
    """A signed built.json naming a file outside the model's folder is damaged, not a path to follow."""
    z, d = face
    outside = tmp_path / "cache" / "models" / FACE / "evil.onnx"
    shutil.copyfile(d / "face_detection_full_range_fp32.onnx", outside)

    def edit(p):
        a = next(a for a in p["artifacts"] if a["backend"] == "onnxruntime")
        a["file"] = "../evil.onnx"

    _resign(d / "built.json", tmp_path / "cache", edit)
    with pytest.raises(ModelCorrupt, match=r"'\.\./evil\.onnx' is not a plain name inside the model's folder"):
        z.artifact(FACE, "onnxruntime", "fp32")
    assert z.artifacts(FACE) == []  # listed as nothing (with a warning), not as the outside file


def test_truncated_built_json_names_the_file(face):
    z, d = face
    p = d / "built.json"
    p.write_bytes(p.read_bytes()[:700])
    with pytest.raises(ModelCorrupt) as ei:
        z.artifact(FACE, "onnxruntime", "fp32")
    msg = str(ei.value)
    assert str(p) in msg and "damaged" in msg and FIX in msg and "not built" not in msg
    assert isinstance(ei.value, ModelNotBuilt) and isinstance(ei.value, sign.SignatureError)  # old handlers


def test_damaged_golden_names_model_path_and_fix(face):
    z, d = face
    g = d / "golden.npz"
    raw = g.read_bytes()
    g.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ModelCorrupt, match=rf"model '{FACE}': golden set: {g}: size .* \(truncated or modified\).*"
                                          rf"{FIX}"):
        z.golden(FACE)
    # a golden.npz that built.json does not list (a partial build) still says which model, file and fix
    _resign(d / "built.json", d.parents[2], lambda p: p["files"].pop("golden.npz"))
    with pytest.raises(GoldenError, match=rf"model '{FACE}': {g}: not a readable golden set.*{FIX}"):
        z.golden(FACE)


def test_verification_cost_on_the_largest_artefact(zoo):
    """check_artifact hashes the file (and OpenVINO's .bin) each time a session is opened: tens of ms for the
    largest model here, well under a model load."""
    arts = [a for a in zoo.artifacts() if a.precision == "fp32"]
    size = {a: Path(a.path).stat().st_size + (Path(a.path).with_suffix(".bin").stat().st_size
                                              if a.format == "openvino" else 0) for a in arts}
    big = max(arts, key=size.get)
    zoo.check_artifact(big)  # page cache warm, as when the runtime reads it next
    t = time.perf_counter()
    zoo.check_artifact(big)
    ms = (time.perf_counter() - t) * 1e3
    logging.getLogger(__name__).warning("check_artifact %s/%s/%s (%.1f MB): %.1f ms", big.name, big.backend,
                                        big.precision, size[big] / 1e6, ms)
    assert ms < 500, ms
