"""The model zoo: committed manifests + built, signed artefacts in the cache. Others code against this API.

golden(name) returns ({input name: array}, {output name: array}) where each array stacks batch-1 samples on
axis 0: sample i is `x[i:i+1]` (shape (1, ...) as the model expects), its reference outputs `y[i:i+1]`.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.core.paths import cache_dir
from models import manifest as manifests
from models.golden import GoldenError, load_golden
from models import sign

log = logging.getLogger(__name__)

BUILD_HINT = "run `edge models build`"
# <cache>/keys/trusted/*.pub: further keys whose signed built.json is trusted (the update agent puts the fleet key
# there when `[sync] update_public_key` differs from the cache's key, so the versions it installs open)
TRUSTED_DIR = "trusted"
FIX_HINT = "rebuild it with `edge models build`, or roll back the model update that installed this version"
# Files a runtime reads beside an artefact, by format: OpenVINO IR is the .xml plus its .bin weights.
COMPANIONS = {"openvino": (".bin",)}


@dataclass(frozen=True)
class Artifact:
    name: str
    version: str
    task: str
    backend: str
    precision: str  # models.manifest.PRECISIONS: "fp32" | "int8" | "int8_full" (report-only) | "int8_qat" | "bf16"
    path: Path
    sha256: str
    size_bytes: int
    format: str  # "tflite" | "onnx" | "openvino"


class ModelNotBuilt(LookupError):
    """The model (or the requested artefact) is not in the cache; the message says to run `edge models build`."""


class ModelCorrupt(ModelNotBuilt, sign.SignatureError):
    """A built file of a model (built.json, an artefact, golden.npz) is unreadable, or not what its signed built.json
    says. The message names the model, the file and the fix; handlers of ModelNotBuilt or SignatureError catch it."""


_WARNED: set[str] = set()  # damaged built.json messages already logged
_WARNED_LINKS: set[tuple[str, str]] = set()  # ignored `current` links already logged


class ModelZoo:
    def __init__(self, cache_dir: str | Path | None = None, *, public_key: str | Path | None = None,
                 manifest_dir: Path | None = None):
        self.cache = _cache_dir(cache_dir)
        self._public_key = public_key
        self._manifest_dir = manifest_dir or manifests.MANIFEST_DIR  # the committed manifests by default
        self._manifests = manifests.load_all(self._manifest_dir)

    def names(self) -> list[str]:
        return sorted(self._manifests)

    def manifest(self, name: str) -> dict:
        try:
            return self._manifests[name]
        except KeyError:
            raise KeyError(f"unknown model {name!r}; known: {self.names()}") from None

    def model_dir(self, name: str) -> Path:
        """The active version's folder: where the update agent's `current` link points (an activated model
        update), else the version the manifest builds. A link that is not a version folder beside it (an absolute
        path, `..`, a link out of the model's folder) is ignored with a warning."""
        m = self.manifest(name)
        mdir = self.cache / "models" / name
        link = mdir / "current"
        if link.is_symlink():
            target = os.readlink(link)
            if manifests.VERSION_RE.fullmatch(target) and (mdir / target).is_dir() \
                    and (mdir / target).resolve().parent == mdir.resolve():
                return mdir / target
            if (str(link), target) not in _WARNED_LINKS:  # a dangling link too: the activated version is gone
                _WARNED_LINKS.add((str(link), target))
                why = "not a version folder of" if (mdir / target).exists() else "no such folder in"
                log.warning("model %r: ignoring %s -> %s: %s %s; using version %s (point the link at a version "
                            "folder, or remove it)", name, link, target, why, mdir, m["version"])
        return mdir / m["version"]

    def _built(self, name: str) -> dict | None:
        """The payload of the active version's built.json (not signature-checked: check_artifact does that); None
        when there is none; ModelCorrupt naming the file when it is unreadable or malformed."""
        p = self.model_dir(name) / "built.json"
        try:
            raw = p.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise ModelCorrupt(f"model {name!r}: cannot read {p}: {e.strerror}; {FIX_HINT}") from None
        try:
            payload = json.loads(raw)["payload"]
            _check_entries(payload)
        except (ValueError, TypeError, KeyError, RecursionError) as e:  # JSONDecodeError, bad shape
            why = f"{type(e).__name__}: {e}" if not isinstance(e, _Malformed) else str(e)
            raise ModelCorrupt(f"model {name!r}: {p} is damaged ({why[:200]}); {FIX_HINT}") from None
        return payload

    def _listed(self, name: str, built: dict) -> list[Artifact]:
        m = self.manifest(name)
        d = self.model_dir(name)
        return [Artifact(name, built.get("version", m["version"]), m["task"], a["backend"], a["precision"],
                         d / a["file"], a["sha256"], a["size_bytes"], a["format"])
                for a in built["artifacts"] if (d / a["file"]).is_file()]

    def artifacts(self, name: str | None = None) -> list[Artifact]:
        """Built files present in the cache (from each model's built.json), for one model or all. A model whose
        built.json is damaged is left out with a warning (artifact() raises ModelCorrupt for it)."""
        out = []
        for n in [name] if name else self.names():
            try:
                built = self._built(n)
            except ModelCorrupt as e:
                if str(e) not in _WARNED:  # once per process, not at every lookup
                    _WARNED.add(str(e))
                    log.warning("%s", e)
                continue
            if built:
                out.extend(self._listed(n, built))
        return out

    def damaged(self, name: str) -> str | None:
        """Why the model's built.json is unreadable (ModelCorrupt's message: the file and the fix), or None."""
        try:
            self._built(name)
        except ModelCorrupt as e:
            return str(e)
        return None

    def default_precision(self, name: str, backend: str) -> str:
        d = self.manifest(name)["defaults"]
        if backend not in d:
            raise KeyError(f"{name}: no default precision for backend {backend!r}; backends: {sorted(d)}")
        return d[backend]["precision"]

    def artifact(self, name: str, backend: str, precision: str = "default") -> Artifact:
        if precision == "default":
            precision = self.default_precision(name, backend)
        built = self._built(name)
        for a in self._listed(name, built) if built else []:
            if a.backend == backend and a.precision == precision:
                return a
        declared = [(a["backend"], a["precision"]) for a in self.manifest(name)["artifacts"]]
        if (backend, precision) not in declared:
            raise ModelNotBuilt(f"model {name!r} has no {backend} × {precision} artefact; the manifest declares "
                                f"{declared}")
        raise ModelNotBuilt(f"model {name!r} ({backend}, {precision}) is not built in {self.cache}: {BUILD_HINT}"
                            f"{' (without --skip-int8)' if precision.startswith('int8') else ''}")

    def golden(self, name: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Golden inputs/outputs (module doc), checked against built.json like an artefact (check_artifact) when it
        lists them; ModelCorrupt or GoldenError naming the model, the file and the fix."""
        p = self.model_dir(name) / "golden.npz"
        if not p.is_file():
            raise ModelNotBuilt(f"golden inputs/outputs of model {name!r} not in {self.cache}: {BUILD_HINT}")
        if self._built(name) is not None:
            payload = self._trusted(name)
            if p.name in payload.get("files", {}):
                self._check_files(name, payload, [p.name], "golden set", p.parent)
        try:
            return load_golden(p)
        except GoldenError as e:
            raise GoldenError(f"model {name!r}: {e}; {FIX_HINT}") from None

    def check_artifact(self, a: Artifact) -> dict[Path, tuple[int, ...]]:
        """Check `a` before a runtime loads it: the signature of its model's built.json (where this zoo has a public
        key), that built.json still lists it, and the size and sha256 of its file and companions (OpenVINO's .bin)
        against it. ModelCorrupt naming the model, the file and the fix. Returns what check_unchanged needs after the
        load: each checked file's identity (sign.file_identity) by path."""
        payload = self._trusted(a.name)
        d = self.model_dir(a.name)
        what = f"{a.backend}/{a.precision} artefact"
        entry = next((e for e in payload["artifacts"] if e["backend"] == a.backend and e["precision"] == a.precision
                      and d / e["file"] == Path(a.path)), None)
        if entry is None or entry["sha256"] != a.sha256:
            raise ModelCorrupt(f"model {a.name!r}: {a.path} is not the {what} that {d / 'built.json'} lists (it "
                               f"changed since it was read); {FIX_HINT}")
        rels = [entry["file"]] + [Path(entry["file"]).stem + x for x in COMPANIONS.get(a.format, ())]
        files = dict(payload.get("files", {}))
        listed = files.setdefault(entry["file"], {"sha256": entry["sha256"], "size_bytes": entry["size_bytes"]})
        if not isinstance(listed, dict) or listed.get("sha256") != entry["sha256"]:
            raise ModelCorrupt(f"model {a.name!r}: {d / 'built.json'} lists two hashes for {entry['file']}; {FIX_HINT}")
        return self._check_files(a.name, {**payload, "files": files}, rels, what, d)

    @staticmethod
    def check_unchanged(a: Artifact, seen: dict[Path, tuple[int, ...]]) -> None:
        """ModelCorrupt when a file check_artifact checked (seen: what it returned) was replaced or written since,
        e.g. while a runtime was loading it: the runtime may have read bytes that were never checked."""
        for p, ident in seen.items():
            try:
                now = sign.file_identity(os.stat(p))
            except OSError:
                now = None
            if now != ident:
                raise ModelCorrupt(f"model {a.name!r}: {a.backend}/{a.precision} artefact: {p} was replaced or "
                                   "written after its sha256 was checked (while it was being loaded), so the loaded "
                                   "model is unchecked; open the model again once whatever writes it (a rebuild, a "
                                   f"model update) is done; if it keeps happening, {FIX_HINT}")

    def _trusted(self, name: str) -> dict:
        """built.json's payload, signature-checked where this zoo has a public key (the cache's dev key absent: a
        warning; a configured key absent: ModelCorrupt), and signed for this model and version folder."""
        p = self.model_dir(name) / "built.json"
        built = self._built(name)
        if built is None:
            raise ModelNotBuilt(f"model {name!r} is not built in {self.cache}: {BUILD_HINT}")
        pub = self.public_key_path()
        if not pub.is_file() and self._configured_key():
            raise ModelCorrupt(f"model {name!r}: public key {pub} ({self._configured_key()}) not found, so the "
                               f"signature of {p} cannot be checked; put the key there, or fix the path")
        if not pub.is_file():
            if (self.cache, name) not in _UNSIGNED_WARNED:
                _UNSIGNED_WARNED.add((self.cache, name))
                log.warning("model %r: no public key %s: the signature of %s is not checked, only file hashes "
                            "(set %s)", name, pub, p, sign.ENV_PUBLIC_KEY)
            return self._signed_for(name, built, p)
        err: Exception | None = None
        for key in [pub, *sorted((self.cache / "keys" / TRUSTED_DIR).glob("*.pub"))]:
            try:
                payload = sign.verify_manifest(p, key, check_files=False)
                _check_entries(payload)
            except (sign.SignatureError, _Malformed) as e:
                err = err or e  # the zoo's own key's reason is the one to report
                continue
            return self._signed_for(name, payload, p)
        raise ModelCorrupt(f"model {name!r}: {err}; {FIX_HINT}") from None

    def _configured_key(self) -> str:
        """Where this zoo's public key was configured ("" for the cache's dev key, which may be absent in dev
        set-ups): a configured key that is missing is an error, never a reason to skip the signature."""
        if self._public_key:
            return "the zoo's public_key"
        return f"${sign.ENV_PUBLIC_KEY}" if os.environ.get(sign.ENV_PUBLIC_KEY) else ""

    def _signed_for(self, name: str, payload: dict, p: Path) -> dict:
        """payload, when it was made for this model and version folder (its `name` and `version`, where it has
        them); else ModelCorrupt: a validly signed built.json of another model or of another version (a downgrade)
        copied into this folder."""
        folder = p.parent.name
        got = (payload.get("name", name), payload.get("version", folder))
        if got != (name, folder):
            raise ModelCorrupt(f"model {name!r}: {p} was signed for model {got[0]!r} version {got[1]!r}, not for "
                               f"model {name!r} version {folder!r} (a folder copied into the wrong place); "
                               f"{FIX_HINT}")
        return payload

    def _check_files(self, name: str, payload: dict, rels: list[str], what: str,
                     root: Path) -> dict[Path, tuple[int, ...]]:
        """Size and sha256 of the files `rels` under root (the version folder payload came from) against
        payload["files"] (sign.verify_files); their identities by path; ModelCorrupt."""
        files = payload.get("files", {})
        unlisted = [r for r in rels if r not in files]
        if unlisted:
            raise ModelCorrupt(f"model {name!r}: {what}: {unlisted} not listed in the files of "
                               f"{root / 'built.json'}; {FIX_HINT}")
        try:
            seen = sign.verify_files(root, {"files": {r: files[r] for r in rels}})
        except sign.SignatureError as e:
            raise ModelCorrupt(f"model {name!r}: {what}: {e}; {FIX_HINT}") from None
        return {root / r: ident for r, ident in seen.items()}

    def public_key_path(self) -> Path:
        return sign.public_key_path(self.cache, self._public_key)

    def verify(self, name: str) -> None:
        """Signature of built.json with the keys the runtime trusts (as check_artifact: the zoo's public key, then
        `<cache>/keys/trusted/*.pub`) and sha256/size of every file it lists; raises sign.SignatureError."""
        p = self.model_dir(name) / "built.json"
        if not p.is_file():
            raise ModelNotBuilt(f"model {name!r} is not built in {self.cache}: {BUILD_HINT}")
        pub = self.public_key_path()
        if not pub.is_file():
            raise sign.SignatureError(f"public key {pub} not found: set {sign.ENV_PUBLIC_KEY} or pass public_key")
        sign.verify_files(p.parent, self._trusted(name))


def _cache_dir(override: str | Path | None) -> Path:
    return cache_dir(override)


_UNSIGNED_WARNED: set[tuple[Path, str]] = set()
_ARTIFACT_KEYS = {"backend": str, "precision": str, "file": str, "format": str, "sha256": str, "size_bytes": int}


class _Malformed(ValueError):
    pass


def _check_entries(payload: dict) -> None:
    """_Malformed unless payload["artifacts"] is a list of entries with the keys the zoo reads, each `file` a plain
    relative name inside the model's folder (no absolute path, no `..`)."""
    arts = payload.get("artifacts") if isinstance(payload, dict) else None
    if not isinstance(arts, list):
        raise _Malformed("`artifacts` is not a list")
    if not isinstance(payload.get("files", {}), dict):
        raise _Malformed("`files` is not a table")
    for i, a in enumerate(arts):
        bad = [k for k, t in _ARTIFACT_KEYS.items() if not isinstance(a, dict) or not isinstance(a.get(k), t)]
        if bad:
            raise _Malformed(f"artifacts[{i}]: {', '.join(bad)} missing or of the wrong type")
        if not sign.safe_relative(a["file"]):
            raise _Malformed(f"artifacts[{i}]: file {a['file'][:80]!r} is not a plain name inside the model's folder")
