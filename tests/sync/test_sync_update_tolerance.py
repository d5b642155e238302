"""A model update carries its model manifest's parity tolerance in the signed payload, and the device's self-test
judges that version with it (generic defaults without one; `selftest.tolerance` still overrides). Real files: a
hand-encoded ONNX model run by onnxruntime, real Ed25519 signatures."""
from __future__ import annotations

import pytest

from edge.backends.parity import DEFAULT_TOLERANCES, Tolerance, score_logits
from models import manifest, sign
from sync.update_manifest import UpdateError, build_payload, sign_payload, verify
from sync.update_selftest import _tolerance, self_test

from update_helpers import MODEL, keys, model_dir

WIDE = {"fp32": {"max_err": 1e-2, "mean_err": 1e-2}}


def test_payload_carries_the_manifest_tolerance(tmp_path):
    src = model_dir(tmp_path / "m")
    lmk = build_payload("pose_landmark_full", "0.10.21-r2", src)
    assert lmk["tolerance"] == manifest.load_all()["pose_landmark_full"]["tolerance"]
    assert _tolerance(lmk, "fp32") == Tolerance(2e-3, 2e-4, outputs=(("Identity_2", 1e-2, 2e-4),))
    assert _tolerance(lmk, "int8") == DEFAULT_TOLERANCES["int8"]
    plain = build_payload(MODEL, "1.1", src)  # no committed manifest: generic defaults
    assert "tolerance" not in plain and _tolerance(plain, "fp32") == DEFAULT_TOLERANCES["fp32"]
    over = build_payload("pose_landmark_full", "0.10.21-r2", src, selftest={"tolerance": {"fp32": {"max_err": 0.5}}})
    assert _tolerance(over, "fp32") == Tolerance(0.5, 2e-4, outputs=(("Identity_2", 1e-2, 2e-4),))
    with pytest.raises(UpdateError, match=r"tolerance\.fp32\.mean_err: required key is missing"):
        build_payload(MODEL, "1.1", src, tolerance={"fp32": {"max_err": 1e-2}})


def test_selftest_judges_a_version_with_its_own_tolerance(tmp_path):
    """Golden outputs off by 0.01 (about 1.6e-3 of their range on every element): over the generic FP32 mean
    limit, within a version whose manifest tolerance is wider."""
    src = model_dir(tmp_path / "m", golden_error=0.01)
    with pytest.raises(UpdateError, match=r"self-test failed: tiny_add\.onnx: golden outputs differ: Identity: mean"):
        self_test(src, build_payload(MODEL, "1.1", src), backends=["onnxruntime"])
    report = self_test(src, build_payload(MODEL, "1.1", src, tolerance=WIDE), backends=["onnxruntime"])
    assert report["tiny_add.onnx"]["passed"] is True


def test_signed_tolerance_is_verified_on_the_device(tmp_path):
    priv, pub = keys(tmp_path / "keys")
    key = sign.signing_key(tmp_path, priv)
    src = model_dir(tmp_path / "m")
    p = tmp_path / "update.json"
    p.write_bytes(sign_payload(build_payload(MODEL, "1.1", src, tolerance=WIDE), key))
    assert verify(p, pub, name=MODEL, version="1.1", runtime="1")["tolerance"] == WIDE
    bad = build_payload(MODEL, "1.1", src)
    bad["tolerance"] = {"fp32": {"max_err": -1, "mean_err": 0}}
    p.write_bytes(sign_payload(bad, key))
    with pytest.raises(UpdateError, match=r"tolerance\.fp32\.max_err: must be a finite number >= 0"):
        verify(p, pub, name=MODEL, version="1.1", runtime="1")


def test_selftest_compares_detector_score_logits_as_probabilities(tmp_path):
    """The real pose detector's OpenVINO INT8 file against golden scores shifted by +6 logits (a model that would
    flood the detections): as a share of the logits' range (background anchors reach -517) that is 0.012, inside
    the INT8 tolerance; as probabilities anchors near the threshold move by 0.9, and the self-test refuses it, as
    the build's parity check does."""
    import shutil

    import numpy as np

    from models.zoo import ModelZoo

    zoo = ModelZoo()
    d, name = zoo.model_dir("pose_detection"), "pose_detection"
    if not (d / "pose_detection_int8.xml").is_file():
        pytest.fail("pose_detection is not built: run `edge models build`")
    src = tmp_path / "m"
    src.mkdir()
    for f in ("pose_detection_int8.xml", "pose_detection_int8.bin"):
        shutil.copy2(d / f, src / f)
    logits = score_logits(zoo.manifest(name))  # what the update installer passes
    assert logits == ("Identity_1",)
    with np.load(d / "golden.npz") as g:
        golden = {k: g[k] for k in g.files}
    np.savez(src / "golden.npz", **golden)
    payload = build_payload(name, "9.9", src)
    assert self_test(src, payload, backends=["openvino"], score_logits=logits)["pose_detection_int8.xml"][
        "passed"]
    golden["output:Identity_1"] = golden["output:Identity_1"] + np.float32(6.0)
    np.savez(src / "golden.npz", **golden)
    payload = build_payload(name, "9.9", src)
    assert self_test(src, payload, backends=["openvino"])["pose_detection_int8.xml"]["passed"]  # the old way
    with pytest.raises(UpdateError, match=r"pose_detection_int8\.xml: golden outputs differ: Identity_1: max .*"
                                          r"\(as probabilities\)"):
        self_test(src, payload, backends=["openvino"], score_logits=logits)
