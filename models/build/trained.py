"""Trained artefacts committed to the repository (`models/trained/<model>/`): what `edge models train` made.

Each folder holds the deployable files, a NOTICE (upstream licence) and PROVENANCE.json: the recipe, seed, data
hashes, training curve, per-runtime accuracy, the command that reproduces them, and the sha256 of every file.
The build chain installs a `producer = "trained"` artefact only when its file is present, its hash matches the
provenance and the provenance was made from the manifest's current source; otherwise the artefact is left out with
a message naming the fix, and the model keeps its FP32 / post-training artefacts.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from edge.core.files import sha256_file

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
TRAINED_ROOT = ROOT / "models" / "trained"
MAX_COMMITTED_BYTES = 5 * 1024 * 1024  # repository rule: a committed artefact is at most 5 MB


class TrainedError(RuntimeError):
    """A committed trained artefact is missing, altered, or was made from another source model."""


@dataclass(frozen=True)
class TrainedFile:
    path: Path
    sha256: str
    size_bytes: int


def folder(model: str, root: Path | None = None) -> Path:
    return (root or TRAINED_ROOT) / model


def provenance(model: str, root: Path | None = None) -> dict:
    p = folder(model, root) / "PROVENANCE.json"
    if not p.is_file():
        raise TrainedError(f"{p} is missing: no trained artefacts for {model} (make them with `edge models train "
                           f"--model {model} --install`)")
    try:
        return json.loads(p.read_text())
    except ValueError as e:
        raise TrainedError(f"{p} is not valid JSON ({e}); restore it from git or retrain") from None


def verified_file(model: str, file: str, source_sha256: str | None, root: Path | None = None) -> TrainedFile:
    """The committed file, after checking it against PROVENANCE.json (hash, size) and the source it was made from."""
    prov = provenance(model, root)
    entry = prov.get("files", {}).get(file)
    if entry is None:
        raise TrainedError(f"{folder(model, root)}/PROVENANCE.json lists no {file}; retrain with "
                           f"`edge models train --model {model} --install`")
    if source_sha256 is not None and prov.get("source_sha256") not in (None, source_sha256):
        raise TrainedError(f"{file} was trained from source {prov.get('source_sha256', '?')[:12]}, the manifest's "
                           f"source is now {source_sha256[:12]}: retrain (`edge models train --model {model} "
                           "--install`)")
    p = folder(model, root) / file
    if not p.is_file():
        raise TrainedError(f"{p} is missing (PROVENANCE.json lists it); restore it from git or retrain")
    got = sha256_file(p)
    if got != entry["sha256"]:
        raise TrainedError(f"{p}: sha256 {got[:12]} does not match PROVENANCE.json ({entry['sha256'][:12]}): the "
                           "file was altered; restore it from git or retrain")
    return TrainedFile(p, got, p.stat().st_size)


def companion_files(file: str) -> list[str]:
    """The files an artefact consists of (an OpenVINO IR is .xml + .bin)."""
    return [file, file[:-4] + ".bin"] if file.endswith(".xml") else [file]
