"""What the build chain plans: steps (in-process actions or subprocess commands) and the model folder layout."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


class BuildError(RuntimeError):
    """A build step failed; the message names the model, the step, the command and the log tail."""


@dataclass
class Step:
    model: str
    name: str
    outputs: list[Path]
    record: Path
    inputs: list[Path] = field(default_factory=list)
    params: dict = field(default_factory=dict)
    code: list[Path] = field(default_factory=list)
    action: Callable[[], None] | None = None  # in-process
    command: Callable[[], list[str]] | None = None  # subprocess (resolved lazily: venvs are created on demand)
    log_path: Path | None = None


def model_dir(cache: Path, m: dict) -> Path:
    return cache / "models" / m["name"] / m["version"]


def bins(paths) -> list[Path]:
    return [p.with_suffix(".bin") for p in paths if p.suffix == ".xml"]


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, sort_keys=True))
