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


class UpdateError(ValueError):
    """An update is refused; the message is the FAILED reason reported to the fleet (details: extra report)."""

    def __init__(self, reason: str, details: dict | None = None) -> None:
        super().__init__(reason)
        self.details = details or {}


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
    """Artefacts of a directory without built.json: by suffix; precision from the name (int8 or fp32)."""
    out = []
    for p in sorted(src.iterdir()):
        if p.suffix in SUFFIX_BACKEND and p.is_file():
            backend, fmt = SUFFIX_BACKEND[p.suffix]
            prec = "int8_full" if "int8_full" in p.stem else "int8" if "int8" in p.stem else "fp32"
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


def sign_payload(payload: dict, key) -> bytes:
    """The signed document (bytes) for payload; key: an Ed25519PrivateKey."""
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "update.json"
        sign.write_signed(p, payload, key)
        return p.read_bytes()


def verify(path: Path, public_key, *, name: str, version: str, runtime: str, now: float | None = None) -> dict:
    """Check a stored manifest: signature (pinned key), type, name/version as offered, expiry, runtime, limits.

    Returns the payload; raises UpdateError with the FAILED reason.
    """
    try:
        p = sign.verify_manifest(path, public_key, check_files=False)
    except sign.SignatureError as e:
        raise UpdateError(f"bad signature: {e}") from None
    if p.get("type") != TYPE:
        raise UpdateError(f"not a model update manifest (type {p.get('type')!r})")
    if p.get("name") != name or p.get("version") != version:
        raise UpdateError(f"manifest is for {p.get('name')}@{p.get('version')}, offer was {name}@{version}")
    now = time.time() if now is None else now
    if not isinstance(p.get("expires"), (int, float)) or now > p["expires"]:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(p.get("expires") or 0))
        raise UpdateError(f"manifest expired at {when} UTC")
    if version_key(runtime) < version_key(str(p.get("min_runtime", "0"))) and runtime != "unknown":
        raise UpdateError(f"needs runtime >= {p['min_runtime']}, this device runs {runtime}")
    cs = p.get("chunk_size")
    if not isinstance(cs, int) or not 1 <= cs <= MAX_CHUNK:
        raise UpdateError(f"chunk size {cs!r} over the {MAX_CHUNK}-byte limit")
    files = p.get("files") or {}
    golden = p.get("selftest", {}).get("golden", GOLDEN)
    if golden not in files:
        raise UpdateError(f"manifest ships no golden outputs ({golden})")
    for fn, meta in files.items():
        if not _FILE.match(fn) or len(meta.get("chunks", [])) != n_chunks(meta["size_bytes"], cs):
            raise UpdateError(f"manifest entry {fn!r} is malformed")
    for a in p.get("artifacts", []):
        if a.get("file") not in files:
            raise UpdateError(f"artefact {a.get('file')!r} is not in the manifest's files")
    if "tolerance" in p:
        _checked_tolerance(p["tolerance"])
    return p
