"""Content-addressed step records: a step re-runs only when the hash of its inputs, parameters and code changes
or one of its outputs is missing or modified."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from edge.core.files import sha256_file, write_atomic


def file_digest(path: Path, memo: dict | None = None) -> str:
    """sha256 of a file, memoized on (path, size, mtime_ns) for the duration of one build."""
    st = path.stat()
    k = (str(path), st.st_size, st.st_mtime_ns)
    if memo is not None and k in memo:
        return memo[k]
    h = sha256_file(path)
    if memo is not None:
        memo[k] = h
    return h


def step_key(name: str, params: dict, inputs: list[Path], code: list[Path], memo: dict) -> str:
    doc = {"step": name, "params": params,
           "inputs": [[p.name, file_digest(p, memo)] for p in inputs],
           "code": [[p.name, file_digest(p, memo)] for p in code]}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


def is_current(record: Path, key: str, outputs: list[Path]) -> bool:
    try:
        rec = json.loads(record.read_text())
    except (OSError, ValueError):
        return False
    if rec.get("key") != key:
        return False
    for p in outputs:
        meta = rec.get("outputs", {}).get(_rel(p, record))
        if meta is None or not p.is_file():
            return False
        st = p.stat()
        if (st.st_size, st.st_mtime_ns) != (meta["size_bytes"], meta["mtime_ns"]) and sha256_file(p) != meta["sha256"]:
            return False
    return True


def adopt(record: Path, key: str, legacy_key: str, argv: list[str], outputs: list[Path]) -> bool:
    """A record written before step keys held the command's arguments is current when it has legacy_key (the key
    without them), ran this very command (its `command` ends with argv) and its outputs are as recorded: it is
    rewritten with the new key (no re-run) and True returned; else False."""
    try:
        rec = json.loads(record.read_text())
    except (OSError, ValueError):
        return False
    cmd = rec.get("command") if isinstance(rec, dict) else None
    if not (isinstance(cmd, str) and cmd.endswith(" " + " ".join(argv)) and is_current(record, legacy_key, outputs)):
        return False
    write_atomic(record, json.dumps({**rec, "key": key}, indent=1).encode())
    return True


def _rel(p: Path, record: Path) -> str:
    """Output key: path relative to the folder above the record's `.steps/` (names repeat across folders)."""
    return os.path.relpath(p, record.parent.parent)


def write(record: Path, key: str, outputs: list[Path], seconds: float, command: str | None) -> None:
    """The step's record, written last: its outputs are flushed to disk first, then the record atomically, so after
    a power cut an output is either on disk as recorded or the step runs again (is_current trusts size + mtime)."""
    for p in outputs:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    outs = {_rel(p, record): {"sha256": sha256_file(p), "size_bytes": p.stat().st_size, "mtime_ns": p.stat().st_mtime_ns}
            for p in outputs}
    write_atomic(record, json.dumps({"key": key, "outputs": outs, "seconds": round(seconds, 2), "command": command},
                                    indent=1).encode())
