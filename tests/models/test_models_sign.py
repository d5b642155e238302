"""Signed built.json: a clean build verifies; tampered artefacts, manifests or keys give clear errors."""
from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from models.sign import SignatureError, verify_manifest


def test_built_models_verify(zoo):
    for name in zoo.names():
        zoo.verify(name)


def test_tampered_artifact(zoo, face_copy):
    f = face_copy / "face_detection_full_range_fp32.onnx"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(SignatureError, match="face_detection_full_range_fp32.onnx.*modified"):
        verify_manifest(face_copy / "built.json", zoo.public_key_path())


def test_truncated_artifact(zoo, face_copy):
    f = face_copy / "face_detection_full_range.tflite"
    f.write_bytes(f.read_bytes()[:1000])
    with pytest.raises(SignatureError, match="truncated"):
        verify_manifest(face_copy / "built.json", zoo.public_key_path())


def test_tampered_built_json(zoo, face_copy):
    p = face_copy / "built.json"
    doc = json.loads(p.read_text())
    doc["payload"]["artifacts"][0]["sha256"] = "0" * 64
    p.write_text(json.dumps(doc))
    with pytest.raises(SignatureError, match="BAD SIGNATURE"):
        verify_manifest(p, zoo.public_key_path())


def test_wrong_key(zoo, face_copy, tmp_path):
    other = tmp_path / "other.pub.pem"
    other.write_bytes(Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(SignatureError, match="BAD SIGNATURE.*signed by key"):
        verify_manifest(face_copy / "built.json", other)


def test_not_a_manifest(zoo, tmp_path):
    p = tmp_path / "built.json"
    p.write_text("{}")
    with pytest.raises(SignatureError, match="not a signed"):
        verify_manifest(p, zoo.public_key_path())
    with pytest.raises(SignatureError, match="not found"):
        verify_manifest(tmp_path / "missing.json", zoo.public_key_path())


def test_a_new_dev_key_replaces_the_old_public_key(tmp_path):
    """Deleting only the dev private key (to rotate it) made a new key but kept the old public half, so every
    built.json signed with the new key failed its check."""
    from models import sign

    k1 = sign.signing_key(tmp_path)
    (tmp_path / "keys" / sign.DEV_KEY).unlink()
    k2 = sign.signing_key(tmp_path)
    pub = sign.load_public_key(sign.public_key_path(tmp_path))
    assert sign.key_id(pub) == sign.key_id(k2.public_key()) != sign.key_id(k1.public_key())
