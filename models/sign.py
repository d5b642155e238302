"""Ed25519 signing of per-model-version `built.json` (artefact list with sha256/size).

File format: {"format": FORMAT, "payload": {...}, "signature": {"algorithm": "ed25519", "key_id", "value"}}.
The signature covers the canonical JSON of `payload` (sorted keys, no spaces). A dev key pair is generated
into `<cache>/keys/` on first build; production builds pass their own private key, devices their public key.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

FORMAT = "storefront-edge/built-manifest/1"
DEV_KEY = "model-signing-dev.pem"
DEV_PUB = "model-signing-dev.pub.pem"
ENV_SIGNING_KEY = "STOREFRONT_EDGE_SIGNING_KEY"
ENV_PUBLIC_KEY = "STOREFRONT_EDGE_MODEL_PUBKEY"


class SignatureError(ValueError):
    """built.json is missing, malformed, signed by another key, tampered with, or lists a file that changed."""


def canonical(payload: dict) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def key_id(pub: Ed25519PublicKey) -> str:
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def signing_key(cache: Path, path: str | Path | None = None) -> Ed25519PrivateKey:
    """The given PEM private key, else $STOREFRONT_EDGE_SIGNING_KEY, else the cache's dev key (created once)."""
    path = path or os.environ.get(ENV_SIGNING_KEY)
    if path:
        k = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
        if not isinstance(k, Ed25519PrivateKey):
            raise SignatureError(f"{path}: not an Ed25519 private key")
        return k
    kdir = cache / "keys"
    priv, pub = kdir / DEV_KEY, kdir / DEV_PUB
    if not priv.is_file():
        kdir.mkdir(parents=True, exist_ok=True)
        k = Ed25519PrivateKey.generate()
        tmp = priv.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
        tmp.replace(priv)
        pub.write_bytes(k.public_key().public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo))
    k = serialization.load_pem_private_key(priv.read_bytes(), password=None)
    assert isinstance(k, Ed25519PrivateKey)
    if not pub.is_file():
        pub.write_bytes(k.public_key().public_bytes(serialization.Encoding.PEM,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo))
    return k


def public_key_path(cache: Path, path: str | Path | None = None) -> Path:
    """The given path, else $STOREFRONT_EDGE_MODEL_PUBKEY, else the cache's dev public key."""
    return Path(path or os.environ.get(ENV_PUBLIC_KEY) or cache / "keys" / DEV_PUB)


def load_public_key(public_key: str | Path | bytes | Ed25519PublicKey) -> Ed25519PublicKey:
    if isinstance(public_key, Ed25519PublicKey):
        return public_key
    if isinstance(public_key, (str, Path)):
        try:
            public_key = Path(public_key).read_bytes()
        except OSError as e:
            raise SignatureError(f"cannot read public key {public_key}: {e.strerror}") from None
    try:
        k = serialization.load_pem_public_key(public_key)
    except ValueError:
        raise SignatureError("public key is not a PEM Ed25519 public key") from None
    if not isinstance(k, Ed25519PublicKey):
        raise SignatureError("public key is not an Ed25519 key")
    return k


def write_signed(path: Path, payload: dict, key: Ed25519PrivateKey) -> None:
    doc = {"format": FORMAT, "payload": payload,
           "signature": {"algorithm": "ed25519", "key_id": key_id(key.public_key()),
                         "value": base64.b64encode(key.sign(canonical(payload))).decode()}}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)


def verify_manifest(path: str | Path, public_key: str | Path | bytes | Ed25519PublicKey,
                    check_files: bool = True) -> dict:
    """Verify a signed built.json; with check_files, also every listed file's size and sha256 (paths relative
    to the manifest's folder). Returns the payload. Raises SignatureError saying what is wrong."""
    path = Path(path)
    pub = load_public_key(public_key)
    try:
        doc = json.loads(path.read_text())
        payload, sig = doc["payload"], doc["signature"]
        if doc.get("format") != FORMAT or sig.get("algorithm") != "ed25519":
            raise KeyError("format")
        raw = base64.b64decode(sig["value"], validate=True)
    except FileNotFoundError:
        raise SignatureError(f"{path}: signed manifest not found") from None
    except (ValueError, KeyError, TypeError, AttributeError):
        raise SignatureError(f"{path}: not a signed {FORMAT} document") from None
    try:
        pub.verify(raw, canonical(payload))
    except InvalidSignature:
        hint = "" if sig.get("key_id") == key_id(pub) else \
            f" (signed by key {sig.get('key_id')}, verifying with key {key_id(pub)})"
        raise SignatureError(f"{path}: BAD SIGNATURE: the manifest was modified or not signed by this key{hint}") \
            from None
    if check_files:
        verify_files(path.parent, payload)
    return payload


def verify_files(root: Path, payload: dict) -> None:
    for rel, meta in sorted(payload.get("files", {}).items()):
        f = root / rel
        if not f.is_file():
            raise SignatureError(f"{f}: listed in the signed manifest but missing")
        if f.stat().st_size != meta["size_bytes"]:
            raise SignatureError(f"{f}: size {f.stat().st_size} != signed size {meta['size_bytes']} (truncated "
                                 "or modified)")
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            while b := fh.read(1 << 20):
                h.update(b)
        if h.hexdigest() != meta["sha256"]:
            raise SignatureError(f"{f}: sha256 {h.hexdigest()} != signed {meta['sha256']} (file was modified)")
