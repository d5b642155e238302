"""A model update carries its model manifest's parity tolerance in the signed payload, and the device's self-test
judges that version with it (generic defaults without one; `selftest.tolerance` still overrides). Real files: a
hand-encoded ONNX model run by onnxruntime, real Ed25519 signatures."""
from __future__ import annotations

import pytest

from edge.backends.parity import DEFAULT_TOLERANCES, Tolerance
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
