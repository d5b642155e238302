"""The model zoo: committed manifests + built, signed artefacts in the cache. Others code against this API.

golden(name) returns ({input name: array}, {output name: array}) where each array stacks batch-1 samples on
axis 0: sample i is `x[i:i+1]` (shape (1, ...) as the model expects), its reference outputs `y[i:i+1]`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.core.paths import cache_dir
from models import manifest as manifests
from models.golden import load_golden
from models import sign

BUILD_HINT = "run `edge models build`"


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


class ModelZoo:
    def __init__(self, cache_dir: str | Path | None = None, *, public_key: str | Path | None = None,
                 manifest_dir: Path = manifests.MANIFEST_DIR):
        self.cache = _cache_dir(cache_dir)
        self._public_key = public_key
        self._manifest_dir = manifest_dir
        self._manifests = manifests.load_all(manifest_dir)

    def names(self) -> list[str]:
        return sorted(self._manifests)

    def manifest(self, name: str) -> dict:
        try:
            return self._manifests[name]
        except KeyError:
            raise KeyError(f"unknown model {name!r}; known: {self.names()}") from None

    def model_dir(self, name: str) -> Path:
        """The active version's folder: where the update agent's `current` link points (an activated model
        update), else the version the manifest builds."""
        m = self.manifest(name)
        link = self.cache / "models" / name / "current"
        if link.is_symlink() and link.resolve().is_dir():
            return self.cache / "models" / name / os.readlink(link)
        return self.cache / "models" / name / m["version"]

    def _built(self, name: str) -> dict | None:
        p = self.model_dir(name) / "built.json"
        try:
            return json.loads(p.read_text())["payload"]
        except (OSError, ValueError, KeyError):
            return None

    def artifacts(self, name: str | None = None) -> list[Artifact]:
        """Built files present in the cache (from each model's built.json), for one model or all."""
        out = []
        for n in [name] if name else self.names():
            m = self.manifest(n)
            built = self._built(n)
            if not built:
                continue
            d = self.model_dir(n)
            for a in built["artifacts"]:
                p = d / a["file"]
                if p.is_file():
                    out.append(Artifact(n, built.get("version", m["version"]), m["task"], a["backend"],
                                        a["precision"], p, a["sha256"], a["size_bytes"], a["format"]))
        return out

    def default_precision(self, name: str, backend: str) -> str:
        d = self.manifest(name)["defaults"]
        if backend not in d:
            raise KeyError(f"{name}: no default precision for backend {backend!r}; backends: {sorted(d)}")
        return d[backend]["precision"]

    def artifact(self, name: str, backend: str, precision: str = "default") -> Artifact:
        if precision == "default":
            precision = self.default_precision(name, backend)
        for a in self.artifacts(name):
            if a.backend == backend and a.precision == precision:
                return a
        declared = [(a["backend"], a["precision"]) for a in self.manifest(name)["artifacts"]]
        if (backend, precision) not in declared:
            raise ModelNotBuilt(f"model {name!r} has no {backend} × {precision} artefact; the manifest declares "
                                f"{declared}")
        raise ModelNotBuilt(f"model {name!r} ({backend}, {precision}) is not built in {self.cache}: {BUILD_HINT}"
                            f"{' (without --skip-int8)' if precision.startswith('int8') else ''}")

    def golden(self, name: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        p = self.model_dir(name) / "golden.npz"
        if not p.is_file():
            raise ModelNotBuilt(f"golden inputs/outputs of model {name!r} not in {self.cache}: {BUILD_HINT}")
        return load_golden(p)

    def public_key_path(self) -> Path:
        return sign.public_key_path(self.cache, self._public_key)

    def verify(self, name: str) -> None:
        """Signature of built.json and sha256/size of every file it lists; raises sign.SignatureError."""
        p = self.model_dir(name) / "built.json"
        if not p.is_file():
            raise ModelNotBuilt(f"model {name!r} is not built in {self.cache}: {BUILD_HINT}")
        pub = self.public_key_path()
        if not pub.is_file():
            raise sign.SignatureError(f"public key {pub} not found: set {sign.ENV_PUBLIC_KEY} or pass public_key")
        sign.verify_manifest(p, pub)


def _cache_dir(override: str | Path | None) -> Path:
    return cache_dir(override)
