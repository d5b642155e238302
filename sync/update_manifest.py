"""Signed model-update manifests: build (fleet side), verify and check (device side), version ordering.

The manifest is a `models/sign.py` document (same format and Ed25519 signature as `built.json`) whose payload
is a superset of a built.json payload: `artifacts` and `files` (sha256/size) as the zoo reads them, plus
`type`, `expires`, `min_runtime`, `chunk_size`, per-file `chunks` (sha256 of every chunk) and the model
manifest's golden-parity `tolerance` table, so the device self-tests a version with that version's tolerance.
The device stores the signed document verbatim as the version's `built.json`, so `ModelZoo.verify()` works on
installed updates.
"""
from __future__ import annotations

import hashlib
import json
import re
import tempfile
import time
from pathlib import Path

from edge.core.files import sha256_file
from models import manifest as manifests
from models import sign
from sync import topics

TYPE = "storefront-edge/model-update/1"
MAX_CHUNK = 256 << 10  # never one big message (notes/mqtt.md §4): 256 KiB QoS1 chunks at most
DEFAULT_CHUNK = 256 << 10
GOLDEN = "golden.npz"
SUFFIX_BACKEND = {".tflite": ("tflite", "tflite"), ".onnx": ("onnxruntime", "onnx"), ".xml": ("openvino", "openvino")}
_FILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
MAX_MANIFEST_BYTES = 1 << 20  # a manifest of a 2 GiB model with 64 KiB chunks is ~2 MiB: 256 KiB chunks keep it small
MAX_FILES = 64
MAX_FILE_BYTES = 4 << 30
_TEXT = 64  # longest artefact backend / precision / format string


class UpdateError(ValueError):
    """An update is refused; the message is the FAILED reason reported to the fleet (details: extra report).

    retryable: the failure is a transport problem (a stalled download), not a refusal: its verified chunks are
    kept so that a new offer of the same version resumes them. Every other UpdateError removes the staging."""

    def __init__(self, reason: str, details: dict | None = None, *, retryable: bool = False) -> None:
        super().__init__(reason)
        self.details = details or {}
        self.retryable = retryable


def version_key(v: str) -> tuple:
    """Sort key: numeric runs compare as numbers, letter runs as text ("0.10.21-r2" > "0.10.21-r1" > "0.9")."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.findall(r"\d+|[A-Za-z]+", v))


def newer(a: str, b: str | None) -> bool:
    """True if version a is strictly newer than b (anything is newer than None)."""
    return b is None or version_key(a) > version_key(b)


def chunk_hashes(path: Path, chunk_size: int) -> list[str]:
    out = []
    with open(path, "rb") as f:
        while b := f.read(chunk_size):
            out.append(hashlib.sha256(b).hexdigest())
    return out or [hashlib.sha256(b"").hexdigest()]


def n_chunks(size: int, chunk_size: int) -> int:
    return max(1, -(-size // chunk_size))


def _artifacts_from_dir(src: Path) -> list[dict]:
    """Artefacts of a directory without built.json: by suffix; precision from the name (fp32 unless it says)."""
    out = []
    for p in sorted(src.iterdir()):
        if p.suffix in SUFFIX_BACKEND and p.is_file():
            backend, fmt = SUFFIX_BACKEND[p.suffix]
            prec = next((q for q in ("int8_full", "int8_qat", "bf16", "int8") if q in p.stem), "fp32")
            out.append({"backend": backend, "format": fmt, "precision": prec, "file": p.name})
    return out


def manifest_tolerance(name: str, manifest_dir: Path = manifests.MANIFEST_DIR) -> dict:
    """The `tolerance` table of the committed manifest of model `name` ({} without a manifest or table)."""
    path = Path(manifest_dir) / f"{name}.toml"
    if not path.is_file():
        return {}
    try:
        return manifests.load(path).get("tolerance", {})
    except manifests.ManifestError as e:
        raise UpdateError(f"model manifest: {e}") from None


def build_payload(name: str, version: str, src: Path, *, chunk_size: int = DEFAULT_CHUNK,
                  expires_s: float = 30 * 86400, min_runtime: str = "0", selftest: dict | None = None,
                  include_report_only: bool = False, tolerance: dict | None = None) -> dict:
    """Manifest payload for the artefacts in src (its built.json if present, else by suffix) plus golden.npz.

    tolerance: the golden-parity tolerance table (models/manifest.py `[tolerance]`); None: that of the committed
    manifest of `name`, if any. OpenVINO `.xml` artefacts bring their `.bin`. Raises UpdateError on a missing
    file or bad argument.
    """
    topics.check_name(name, "model name")
    topics.check_version(version)
    if not 1024 <= chunk_size <= MAX_CHUNK:
        raise UpdateError(f"chunk size {chunk_size} out of range 1 KiB..{MAX_CHUNK}")
    src = Path(src)
    tolerance = manifest_tolerance(name) if tolerance is None else _checked_tolerance(tolerance)
    built = src / "built.json"
    if built.is_file():
        arts = [dict(a) for a in json.loads(built.read_text())["payload"]["artifacts"]
                if include_report_only or not a.get("report_only")]
    else:
        arts = _artifacts_from_dir(src)
    if not arts:
        raise UpdateError(f"{src}: no model artefacts (.tflite, .onnx, .xml) to publish")
    names = []
    for a in arts:
        names.append(a["file"])
        if a["file"].endswith(".xml"):
            names.append(a["file"][:-4] + ".bin")
    names.append(GOLDEN)
    files, sizes = {}, {}
    for i, fn in enumerate(dict.fromkeys(names)):
        p = src / fn
        if not p.is_file() or not _FILE.match(fn):
            raise UpdateError(f"{p}: missing (every artefact, OpenVINO .bin and golden.npz must be there)")
        size = p.stat().st_size
        files[fn] = {"sha256": sha256_file(p), "size_bytes": size, "index": i,
                     "chunks": chunk_hashes(p, chunk_size)}
        sizes[fn] = size
    for a in arts:
        a["sha256"], a["size_bytes"] = files[a["file"]]["sha256"], files[a["file"]]["size_bytes"]
    now = time.time()
    payload = {"type": TYPE, "name": name, "version": version, "created": now, "expires": now + expires_s,
               "min_runtime": min_runtime, "chunk_size": chunk_size, "artifacts": arts, "files": files,
               "total_bytes": sum(sizes.values()), "selftest": {"golden": GOLDEN, **(selftest or {})}}
    if tolerance:
        payload["tolerance"] = tolerance
    return payload


def _checked_tolerance(table) -> dict:
    """table if it is a valid `[tolerance]` table (models/manifest.py), else UpdateError naming the key."""
    try:
        return manifests.check_tolerance(table, "update manifest")
    except manifests.ManifestError as e:
        raise UpdateError(str(e)) from None
    except (TypeError, ValueError, AttributeError, KeyError) as e:  # a table of the wrong shape
        raise UpdateError(f"update manifest: tolerance is malformed ({type(e).__name__})") from None


def sign_payload(payload: dict, key) -> bytes:
    """The signed document (bytes) for payload; key: an Ed25519PrivateKey."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "update.json"
        sign.write_signed(p, payload, key)
        return p.read_bytes()


def verify(path: Path, public_key, *, name: str, version: str, runtime: str, now: float | None = None) -> dict:
    """`verify_raw` of a stored manifest file (read with the same size limit)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
    except OSError as e:
        raise UpdateError(f"manifest unreadable: {e.strerror or e}") from None
    return verify_raw(raw, public_key, name=name, version=version, runtime=runtime, now=now)


def verify_raw(raw: bytes, public_key, *, name: str, version: str, runtime: str, now: float | None = None) -> dict:
    """Check a manifest as received, before anything is written: size, signature (pinned key), type,
    name/version as offered, expiry, runtime, and the shape of every field the device uses.

    Returns the payload; raises UpdateError with the FAILED reason, and nothing else, for any input."""
    if not isinstance(raw, (bytes, bytearray)):
        raise UpdateError("manifest is not bytes")
    if len(raw) > MAX_MANIFEST_BYTES:
        raise UpdateError(f"manifest of {len(raw)} bytes is over {MAX_MANIFEST_BYTES}")
    try:
        p = sign.parse_document(bytes(raw), public_key, what="manifest", max_bytes=MAX_MANIFEST_BYTES)
    except sign.SignatureError as e:
        raise UpdateError(f"bad signature: {e}") from None
    if p.get("type") != TYPE:
        raise UpdateError(f"not a model update manifest (type {_short(p.get('type'))})")
    if p.get("name") != name or p.get("version") != version:
        raise UpdateError(f"manifest is for {_short(p.get('name'))}@{_short(p.get('version'))}, "
                          f"offer was {name}@{version}")
    now = time.time() if now is None else now
    exp = p.get("expires")
    if not _number(exp) or not now <= exp:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(exp if _number(exp) and abs(exp) < 1e11 else 0))
        raise UpdateError(f"manifest expired at {when} UTC")
    min_rt = p.get("min_runtime", "0")
    if not isinstance(min_rt, str) or len(min_rt) > 64:
        raise UpdateError("manifest field 'min_runtime' is malformed")
    if version_key(runtime) < version_key(min_rt) and runtime != "unknown":
        raise UpdateError(f"needs runtime >= {min_rt}, this device runs {runtime}")
    cs = p.get("chunk_size")
    if not _int(cs) or not 1 <= cs <= MAX_CHUNK:
        raise UpdateError(f"chunk size {_short(cs)} over the {MAX_CHUNK}-byte limit")
    _check_files(p, cs)
    _check_artifacts(p)
    st = p.get("selftest", {})
    if not isinstance(st, dict):
        raise UpdateError("manifest field 'selftest' is malformed")
    golden = st.get("golden", GOLDEN)
    if not isinstance(golden, str) or golden not in p["files"]:
        raise UpdateError(f"manifest ships no golden outputs ({_short(golden)})")
    if st.get("latency_ms") is not None and not _number(st["latency_ms"]):
        raise UpdateError("manifest field 'selftest.latency_ms' is malformed")
    over = st.get("tolerance", {})
    if not isinstance(over, dict) or not all(
            isinstance(t, dict) and all(k in ("max_err", "mean_err") and _number(v) for k, v in t.items())
            for t in over.values()):
        raise UpdateError("manifest field 'selftest.tolerance' is malformed")
    if "tolerance" in p:
        _checked_tolerance(p["tolerance"])
    return p


def _check_files(p: dict, cs: int) -> None:
    files = p.get("files")
    if not isinstance(files, dict) or not 1 <= len(files) <= MAX_FILES:
        raise UpdateError(f"manifest field 'files' is malformed (1..{MAX_FILES} entries)")
    indices = set()
    for fn, meta in files.items():
        ok = (isinstance(fn, str) and _FILE.match(fn) and isinstance(meta, dict)
              and _int(meta.get("size_bytes")) and 0 <= meta["size_bytes"] <= MAX_FILE_BYTES
              and _int(meta.get("index")) and 0 <= meta["index"] < MAX_FILES and meta["index"] not in indices
              and isinstance(meta.get("sha256"), str) and _SHA256.match(meta["sha256"])
              and isinstance(meta.get("chunks"), list)
              and len(meta["chunks"]) == n_chunks(meta["size_bytes"], cs)
              and all(isinstance(h, str) and _SHA256.match(h) for h in meta["chunks"]))
        if not ok:
            raise UpdateError(f"manifest entry {_short(fn)} is malformed")
        indices.add(meta["index"])
    total = p.get("total_bytes")
    if total is not None and (not _int(total) or total != sum(m["size_bytes"] for m in files.values())):
        raise UpdateError("manifest field 'total_bytes' does not match its files")


def _check_artifacts(p: dict) -> None:
    arts = p.get("artifacts", [])
    if not isinstance(arts, list) or len(arts) > MAX_FILES:
        raise UpdateError("manifest field 'artifacts' is malformed")
    for a in arts:
        if not isinstance(a, dict) or not isinstance(a.get("file"), str) or a["file"] not in p["files"]:
            raise UpdateError(f"artefact {_short(a.get('file') if isinstance(a, dict) else a)} is not in the "
                              "manifest's files")
        if not all(isinstance(a.get(k), str) and 0 < len(a[k]) <= _TEXT for k in ("backend", "precision")) \
                or not isinstance(a.get("report_only", False), bool):
            raise UpdateError(f"artefact {_short(a['file'])} is malformed")


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def _short(v) -> str:
    """repr of an untrusted value for a reason text, at most 80 characters."""
    r = repr(v)
    return r if len(r) <= 80 else r[:77] + "..."
