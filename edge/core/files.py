"""File helpers shared by the runtime and the build chain: content hashes and atomic writes."""
from __future__ import annotations

import errno
import hashlib
import os
import threading
from pathlib import Path


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in `chunk`-byte blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, fsync it, rename it over `path` and fsync the folder (the
    rename survives a power cut; so do the folders it had to create, each fsynced in its parent). A failed write
    (disk full) removes the temporary file and raises; `path` keeps its old content."""
    path = Path(path)
    created, d = [], path.parent  # the folders mkdir makes, deepest first
    while not d.exists() and d != d.parent:
        created.append(d)
        d = d.parent
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # two threads may race
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    for d in created:
        fsync_dir(d.parent)


def fsync_dir(folder: str | Path) -> None:
    """fsync a folder, so the renames and unlinks in it are on disk (a no-op where a folder cannot be opened or
    fsynced: EINVAL on some file systems); an I/O error raises."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as e:
        if e.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)
