"""Second-look findings in the backends and the zoo: plug-in options of the wrong kind, OpenVINO on a model with a
dynamic batch, a choice cache that is valid JSON of the wrong shape, a model file replaced between its check and
its load, a (signed) model whose tensors are not its manifest's, and a dangling `current` link. Real model files
and runtimes; damaged copies live in a throw-away cache signed with its own key."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge.app.config import ModelRef
from edge.backends import BackendError, ModelLoadError, get_backend, load_session
from edge.backends.auto import open_model
from edge.backends.openvino_backend import OpenVinoOptions
from edge.backends.parity import run_batched
from models import sign
from models.zoo import ModelCorrupt, ModelZoo

FACE = "face_detection_full_range"
PALM = "palm_detection_lite"
DET = "pose_detection"
FIX = "edge models build"
FILES = {"onnxruntime": f"{FACE}_fp32.onnx", "openvino": f"{FACE}_fp32.bin", "tflite": f"{FACE}.tflite"}


def _face_cache(zoo, cache: Path) -> Path:
    """The face detector's built folder copied into `cache` (zoo layout), built.json signed with cache's own key."""
    src = zoo.model_dir(FACE)
    dst = cache / "models" / FACE / src.name
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("work", "logs", ".steps"))
    payload = json.loads((dst / "built.json").read_text())["payload"]
    sign.write_signed(dst / "built.json", payload, sign.signing_key(cache))
    return dst


@pytest.fixture()
def face(zoo, tmp_path):
    """(zoo over a throw-away cache holding only the face detector, its version folder)."""
    d = _face_cache(zoo, tmp_path / "cache")
    return ModelZoo(tmp_path / "cache"), d


def _other_bytes(path: Path) -> bytes:
    """Another file that the runtime loads just as well: the bytes plus a tail every reader skips (an unknown
    protobuf field 100 for ONNX; zeros past the flatbuffer or past the last weight for TFLite and IR .bin)."""
    return path.read_bytes() + (b"\xa0\x06\x01" if path.suffix == ".onnx" else bytes(16))


class ReplacedAfterCheck:
    """The real zoo, where a file of one backend's artefact is replaced right after check_artifact hashed it: a
    rebuild (atomic rename) or a writer in place racing the runtime's load."""

    def __init__(self, zoo, backend: str, victim: Path, in_place: bool):
        self._zoo, self.backend, self.victim, self.in_place, self.done = zoo, backend, victim, in_place, False

    def __getattr__(self, name):
        return getattr(self._zoo, name)

    def check_artifact(self, a):
        seen = self._zoo.check_artifact(a)
        if a.backend == self.backend and not self.done:
            self.done = True
            data = _other_bytes(self.victim)
            if self.in_place:
                with open(self.victim, "r+b") as f:
                    f.write(data)
            else:
                tmp = self.victim.with_name(self.victim.name + ".new")
                tmp.write_bytes(data)
                os.replace(tmp, self.victim)
        return seen


# ------------------------------------------------------------------ registry: typed options

def test_options_model_of_another_plugin_is_a_clear_error(model_files):
    """Another plug-in's options model was kept as the options and failed at load with an AttributeError."""
    with pytest.raises(BackendError, match=r"backend 'onnxruntime': invalid options: OpenVinoOptions: .*OrtOptions"):
        get_backend("onnxruntime", OpenVinoOptions())
    with pytest.raises(BackendError, match=r"invalid options: list: "):
        load_session("tflite", model_files[DET, "tflite"], options=[1, 2])


# ------------------------------------------------------------------ OpenVINO: a dynamic first dimension

@pytest.fixture(scope="module")
def dynamic_ir(tmp_path_factory) -> Path:
    """A tiny IR with a dynamic batch (written by OpenVINO itself): y = relu(x), x of shape (-1, 4)."""
    import openvino as ov
    import openvino.opset13 as ops

    x = ops.parameter(ov.PartialShape([-1, 4]), ov.Type.f32, name="x")
    y = ops.relu(x)
    y.output(0).set_names({"Identity"})
    path = tmp_path_factory.mktemp("ir") / "relu.xml"
    ov.save_model(ov.Model([y], [x], "relu"), str(path))
    return path


def test_openvino_runs_a_batch_on_a_dynamic_batch_model_without_max_batch(dynamic_ir):
    """The session advertises (-1, 4) but a batch of 3 failed: `'OpenVinoSession' object has no attribute
    '_streams'` (the batch path of max_batch > 1 was taken); golden parity then rejected such models."""
    s = load_session("openvino", dynamic_ir, threads=1)
    assert s.max_batch == 1 and s.inputs[0].shape == (-1, 4)
    x = np.arange(12, dtype=np.float32).reshape(3, 4) - 6
    np.testing.assert_array_equal(s.run({"x": x})["Identity"], np.maximum(x, 0))
    np.testing.assert_array_equal(run_batched(s, {"x": x})["Identity"], np.maximum(x, 0))  # auto's parity call


# ------------------------------------------------------------------ auto: the choice cache

@pytest.mark.parametrize("text", ["[]", "null", '"x"', "7"])
def test_choice_cache_that_is_not_an_object_is_ignored_and_rewritten(zoo, tmp_path, caplog, text):
    """Valid JSON of another shape crashed open_model (`'list' object has no attribute 'get'`)."""
    cache = tmp_path / "choice.json"
    cache.write_text(text)
    ref = ModelRef(name=FACE, backend="auto", precision="fp32", threads=1)
    with caplog.at_level(logging.WARNING, logger="edge.backends.auto"):
        s = open_model(zoo, ref, cache_path=cache, rounds=1, per_round=1)
    assert any(f"ignoring choice cache {cache}" in r.message for r in caplog.records)
    (entry,) = json.loads(cache.read_text()).values()
    assert entry["backend"] == s.info.backend


def test_malformed_cache_entry_selects_again(zoo, tmp_path, caplog):
    cache = tmp_path / "choice.json"
    ref = ModelRef(name=FACE, backend="auto", precision="fp32", threads=1)
    open_model(zoo, ref, cache_path=cache, rounds=1, per_round=1)
    (key,) = json.loads(cache.read_text())
    for bad in ("openvino", {"backend": 1}, ["openvino", "fp32"]):
        cache.write_text(json.dumps({key: bad}))
        with caplog.at_level(logging.WARNING, logger="edge.backends.auto"):
            s = open_model(zoo, ref, cache_path=cache, rounds=1, per_round=1)
        assert any("ignoring a malformed entry" in r.message for r in caplog.records), bad
        assert json.loads(cache.read_text())[key]["backend"] == s.info.backend


# ------------------------------------------------------------------ a file replaced between its check and its load

@pytest.mark.parametrize("in_place", [False, True], ids=["renamed-over", "written-in-place"])
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino", "tflite"])
def test_file_replaced_after_its_check_is_refused(face, backend, in_place):
    """The sha256 was checked, then the runtime read the path again: a file replaced in between was loaded and run
    unchecked."""
    z, d = face
    victim = d / FILES[backend]
    racing = ReplacedAfterCheck(z, backend, victim, in_place)
    with pytest.raises(ModelCorrupt) as ei:
        open_model(racing, ModelRef(name=FACE, backend=backend, precision="fp32", threads=1))
    assert racing.done
    msg = str(ei.value)
    assert f"model '{FACE}'" in msg and str(victim) in msg and "replaced or written" in msg and FIX in msg
    # once the writer is done the file is checked again, and fails its sha256 (it is not the signed one)
    with pytest.raises(ModelCorrupt, match="signed size"):
        open_model(z, ModelRef(name=FACE, backend=backend, precision="fp32", threads=1))


def test_auto_does_not_run_a_cached_choice_replaced_after_its_check(face, tmp_path, caplog):
    z, d = face
    cache = tmp_path / "choice.json"
    ref = ModelRef(name=FACE, backend="auto", precision="fp32", threads=1)
    first = open_model(z, ref, cache_path=cache, rounds=1, per_round=1).info.backend
    racing = ReplacedAfterCheck(z, first, d / FILES[first], in_place=False)
    with caplog.at_level(logging.WARNING, logger="edge.backends.auto"):
        again = open_model(racing, ref, cache_path=cache, rounds=1, per_round=1)
    assert racing.done and again.info.backend != first
    assert any("cached choice" in r.message and "replaced or written" in r.message for r in caplog.records)
    (entry,) = json.loads(cache.read_text()).values()
    assert entry["backend"] == again.info.backend
    assert entry["reasons"][first].startswith("damaged artefact:") and "replaced or written" in entry["reasons"][first]


def test_unchanged_files_pass_and_identities_cover_the_companion(face):
    z, d = face
    a = z.artifact(FACE, "openvino", "fp32")
    seen = z.check_artifact(a)
    assert set(seen) == {d / FILES["openvino"], d / f"{FACE}_fp32.xml"}
    z.check_unchanged(a, seen)
    os.utime(d / FILES["openvino"])  # a touch is a write for this purpose: the content may have changed with it
    with pytest.raises(ModelCorrupt, match="replaced or written"):
        z.check_unchanged(a, seen)


# ------------------------------------------------------------------ a model whose tensors are not the manifest's

@pytest.fixture()
def face_is_palm(zoo, face):
    """The face detector's ONNX file swapped for the palm detector's, in a correctly signed built.json: a build (or
    update) that shipped the wrong model. Same input, other outputs: (1, 2016, 18) / (1, 2016, 1)."""
    z, d = face
    victim = d / FILES["onnxruntime"]
    shutil.copyfile(zoo.artifact(PALM, "onnxruntime", "fp32").path, victim)
    doc = json.loads((d / "built.json").read_text())
    meta = {"sha256": hashlib.sha256(victim.read_bytes()).hexdigest(), "size_bytes": victim.stat().st_size}
    doc["payload"]["files"][victim.name] = meta
    for a in doc["payload"]["artifacts"]:
        if a["file"] == victim.name:
            a.update(meta)
    sign.write_signed(d / "built.json", doc["payload"], sign.signing_key(z.cache))
    return z, victim


def test_model_whose_outputs_are_not_the_manifests_is_refused(face_is_palm, tmp_path):
    """It loaded and was handed to the pipeline, which failed at its first frame (or decoded 2016 anchors as 2304)."""
    z, victim = face_is_palm
    ref = ModelRef(name=FACE, backend="onnxruntime", precision="fp32", threads=1)
    with pytest.raises(ModelLoadError) as ei:
        open_model(z, ref)
    msg = str(ei.value)
    assert msg.startswith(f"onnxruntime: {victim}: ") and f"model '{FACE}'" in msg and "[[outputs]]" in msg
    assert "output 'Identity' has shape (1, 2016, 18), the manifest says (1, 2304, 16)" in msg and FIX in msg
    with pytest.raises(ModelLoadError, match=r"output 'Identity_1' has shape \(1, 2016, 1\)"):
        open_model(z, ref, outputs=["Identity_1"])
    s = open_model(z, ref.model_copy(update={"backend": "auto"}), cache_path=tmp_path / "c.json", rounds=1,
                   per_round=1)
    assert s.info.backend != "onnxruntime"
    (entry,) = json.loads((tmp_path / "c.json").read_text()).values()
    assert "the manifest says" in entry["reasons"]["onnxruntime"]


# ------------------------------------------------------------------ the CPU in the choice cache key

def _arm_cpuinfo(parts: list[str], board: str, name: str = "") -> str:
    named = f"model name\t: {name}\n" if name else ""
    cores = [f"processor\t: {i}\n{named}BogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
             f"CPU implementer\t: 0x41\nCPU architecture: 8\nCPU part\t: {p}\n" for i, p in enumerate(parts)]
    return "\n".join(cores) + f"\nRevision\t: c03114\nModel\t\t: {board}\n"


def test_arm_boards_are_told_apart_in_the_choice_key():
    """64-bit ARM kernels have no `model name`: every ARM device was `aarch64`, so a cache made on one board (a
    device image flashed with a warm cache) was reused on another."""
    from edge.backends.auto import cpu_model

    pi4 = cpu_model(_arm_cpuinfo(["0xd08"] * 4, "Raspberry Pi 4 Model B Rev 1.4"))
    pi5 = cpu_model(_arm_cpuinfo(["0xd0b"] * 4, "Raspberry Pi 5 Model B Rev 1.0"))
    rock = cpu_model(_arm_cpuinfo(["0xd05"] * 4 + ["0xd0b"] * 4, "Radxa ROCK 5B"))
    assert pi4 == "Raspberry Pi 4 Model B Rev 1.4, CPU part 0xd08"
    assert rock == "Radxa ROCK 5B, CPU part 0xd05/0xd0b"
    assert len({pi4, pi5, rock}) == 3
    pi4_32 = cpu_model(_arm_cpuinfo(["0xd08"] * 4, "Raspberry Pi 4 Model B Rev 1.4", "ARMv7 Processor rev 3 (v7l)"))
    assert pi4_32 == "ARMv7 Processor rev 3 (v7l), Raspberry Pi 4 Model B Rev 1.4, CPU part 0xd08"
    x86 = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel\t\t: 143\nmodel name\t: Intel(R) Xeon(R) Processor\n"
    assert cpu_model(x86) == "Intel(R) Xeon(R) Processor"  # unchanged on x86: existing cache keys stay valid


# ------------------------------------------------------------------ the `current` link

def test_dangling_current_link_is_named(face, caplog):
    """`current` pointing at a version folder that is gone fell back to the built version without a word."""
    z, d = face
    link = d.parent / "current"
    link.symlink_to("9.9.9")
    with caplog.at_level(logging.WARNING, logger="models.zoo"):
        assert z.model_dir(FACE) == d
    assert f"ignoring {link} -> 9.9.9: no such folder in {d.parent}" in caplog.text
