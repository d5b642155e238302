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

from edge.core.files import write_atomic

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
        pub.unlink(missing_ok=True)  # an older key's public half (only the private key was deleted): never kept
    k = serialization.load_pem_private_key(priv.read_bytes(), password=None)
    assert isinstance(k, Ed25519PrivateKey)
    if not pub.is_file():  # new key, or a kill before its public half was written
        write_atomic(pub, k.public_key().public_bytes(serialization.Encoding.PEM,
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
    write_atomic(path, (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())


MAX_DOCUMENT_BYTES = 16 << 20  # a signed manifest is a few KiB; refuse anything absurd before parsing it


def parse_document(raw: bytes | str, public_key: str | Path | bytes | Ed25519PublicKey, *,
                   what: str = "manifest", max_bytes: int = MAX_DOCUMENT_BYTES) -> dict:
    """Verify a signed document held in memory and return its payload (a dict).

    Raises SignatureError (and nothing else) for any input: too large, not UTF-8 JSON, nested too deep for the
    parser, wrong shape or format, bad base64, or a signature that does not verify with public_key."""
    pub = load_public_key(public_key)
    if len(raw) > max_bytes:
        raise SignatureError(f"{what}: {len(raw)} bytes is over the {max_bytes}-byte limit")
    try:
        doc = json.loads(raw)
    except RecursionError:
        raise SignatureError(f"{what}: not a signed {FORMAT} document (nested too deep)") from None
    except (ValueError, TypeError):  # JSONDecodeError, UnicodeDecodeError
        raise SignatureError(f"{what}: not a signed {FORMAT} document (not JSON)") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("payload"), dict) \
            or not isinstance(doc.get("signature"), dict):
        raise SignatureError(f"{what}: not a signed {FORMAT} document")
    payload, sig = doc["payload"], doc["signature"]
    if doc.get("format") != FORMAT or sig.get("algorithm") != "ed25519" or not isinstance(sig.get("value"), str):
        raise SignatureError(f"{what}: not a signed {FORMAT} document")
    try:
        value = base64.b64decode(sig["value"], validate=True)
        message = canonical(payload)
    except (ValueError, TypeError, RecursionError):  # binascii.Error is a ValueError
        raise SignatureError(f"{what}: not a signed {FORMAT} document") from None
    try:
        pub.verify(value, message)
    except InvalidSignature:
        kid = sig.get("key_id")
        hint = "" if kid == key_id(pub) else \
            f" (signed by key {str(kid)[:32]}, verifying with key {key_id(pub)})"
        raise SignatureError(f"{what}: BAD SIGNATURE: the manifest was modified or not signed by this key{hint}") \
            from None
    return payload


def verify_manifest(path: str | Path, public_key: str | Path | bytes | Ed25519PublicKey,
                    check_files: bool = True) -> dict:
    """Verify a signed built.json; with check_files, also every listed file's size and sha256 (paths relative
    to the manifest's folder). Returns the payload. Raises SignatureError saying what is wrong."""
    path = Path(path)
    pub = load_public_key(public_key)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_DOCUMENT_BYTES + 1)
    except FileNotFoundError:
        raise SignatureError(f"{path}: signed manifest not found") from None
    except OSError as e:
        raise SignatureError(f"{path}: cannot read: {e.strerror}") from None
    payload = parse_document(raw, pub, what=str(path))
    if check_files:
        verify_files(path.parent, payload)
    return payload


def file_identity(st: os.stat_result) -> tuple[int, ...]:
    """What changes when a file is replaced (device, inode) or written (size, mtime, ctime)."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def verify_files(root: Path, payload: dict) -> dict[str, tuple[int, ...]]:
    """Every file the payload lists exists under root with its signed size and sha256; SignatureError if not
    (also for a malformed `files` table or a name that would leave root). Returns each file's identity
    (file_identity) from before it was hashed, so a later reader can tell whether it is still the checked file."""
    files = payload.get("files", {}) if isinstance(payload, dict) else None
    if not isinstance(files, dict):
        raise SignatureError("signed manifest: `files` is not a table")
    seen = {}
    for rel, meta in sorted(files.items()):
        if not isinstance(meta, dict) or not isinstance(meta.get("size_bytes"), int) \
                or not isinstance(meta.get("sha256"), str) or not safe_relative(rel):
            raise SignatureError(f"signed manifest: entry {str(rel)[:80]!r} is malformed")
        f = root / rel
        if not f.is_file():
            raise SignatureError(f"{f}: listed in the signed manifest but missing")
        h = hashlib.sha256()
        try:
            with open(f, "rb") as fh:
                st = os.fstat(fh.fileno())  # before reading: a write while hashing changes it
                if st.st_size != meta["size_bytes"]:
                    raise SignatureError(f"{f}: size {st.st_size} != signed size {meta['size_bytes']} (truncated "
                                         "or modified)")
                while b := fh.read(1 << 20):
                    h.update(b)
        except OSError as e:  # listed and present, but unreadable (permissions, an I/O error of the storage)
            raise SignatureError(f"{f}: cannot be read ({e.strerror or e})") from None
        if h.hexdigest() != meta["sha256"]:
            raise SignatureError(f"{f}: sha256 {h.hexdigest()} != signed {meta['sha256']} (file was modified)")
        seen[rel] = file_identity(st)
    return seen


def safe_relative(rel) -> bool:
    """A relative path inside its folder: no absolute path, no `..`, no empty or NUL part."""
    if not isinstance(rel, str) or not rel or "\x00" in rel or rel.startswith(("/", "\\")):
        return False
    return all(part not in ("", ".", "..") for part in rel.replace("\\", "/").split("/"))
