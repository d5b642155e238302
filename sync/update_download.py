"""Staging of one update on disk: chunks written in place into `<file>.part`, resumable after a crash.

A chunk counts as present only if its bytes on disk hash to the manifest's chunk sha256, so a restart (even
after kill -9 or a power cut) re-checks what is there and fetches only what is missing or damaged.
"""
from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path

from sync.update_manifest import UpdateError


class Staging:
    """Files of one manifest being downloaded into `dir` (same filesystem as the model cache)."""

    def __init__(self, directory: Path, payload: dict) -> None:
        self.dir = Path(directory)
        self.payload = payload
        self.chunk_size: int = payload["chunk_size"]
        self.files: dict[str, dict] = payload["files"]
        self.by_index = {meta["index"]: fn for fn, meta in self.files.items()}
        self.missing: set[tuple[int, int]] = set()

    @property
    def total_chunks(self) -> int:
        return sum(len(m["chunks"]) for m in self.files.values())

    def part(self, fn: str) -> Path:
        return self.dir / f"{fn}.part"

    def check_space(self, reserve_bytes: int) -> None:
        """UpdateError('disk full ...') unless what is still missing fits, leaving reserve_bytes free."""
        need = sum(m["size_bytes"] for fn, m in self.files.items() if not (self.dir / fn).is_file())
        free = shutil.disk_usage(self.dir).free
        if free - need < reserve_bytes:
            raise UpdateError(f"disk full: update needs {need} bytes, {free} free, {reserve_bytes} must stay free")

    def scan(self) -> int:
        """Find the chunks still missing (hash what is on disk). Returns how many verified chunks were kept."""
        self.missing.clear()
        kept = 0
        for fn, meta in self.files.items():
            idx = meta["index"]
            if (self.dir / fn).is_file():  # assembled and verified before a crash
                kept += len(meta["chunks"])
                continue
            p = self.part(fn)
            if not p.is_file() and meta["size_bytes"] == 0:  # nothing to fetch: the publisher's empty chunk
                p.touch()  # message cleared its retained topic instead of storing it (e.g. an empty OpenVINO .bin)
            if not p.is_file():
                self.missing.update((idx, i) for i in range(len(meta["chunks"])))
                continue
            with open(p, "rb") as f:
                for i, want in enumerate(meta["chunks"]):
                    f.seek(i * self.chunk_size)
                    got = f.read(self._len(meta, i))
                    if hashlib.sha256(got).hexdigest() == want:
                        kept += 1
                    else:
                        self.missing.add((idx, i))
        return kept

    def _len(self, meta: dict, i: int) -> int:
        return min(self.chunk_size, meta["size_bytes"] - i * self.chunk_size)

    def expected(self, fidx: int, cidx: int) -> tuple[str, int] | None:
        """(sha256, length) of chunk (fidx, cidx), None if the manifest has no such chunk."""
        fn = self.by_index.get(fidx)
        if fn is None or not 0 <= cidx < len(self.files[fn]["chunks"]):
            return None
        meta = self.files[fn]
        return meta["chunks"][cidx], self._len(meta, cidx)

    def write(self, fidx: int, cidx: int, data: bytes) -> bool:
        """Store a chunk if its sha256 and length match the manifest; False (nothing written) if not."""
        exp = self.expected(fidx, cidx)
        if exp is None or len(data) != exp[1] or hashlib.sha256(data).hexdigest() != exp[0]:
            return False
        fn = self.by_index[fidx]
        try:
            fd = os.open(self.part(fn), os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.pwrite(fd, data, cidx * self.chunk_size)
            finally:
                os.close(fd)
        except OSError as e:
            raise UpdateError(_os_reason(e, f"writing {fn}")) from None
        self.missing.discard((fidx, cidx))
        return True

    def finish(self) -> None:
        """All chunks present: truncate, fsync and rename each `.part` to its final name."""
        for fn, meta in self.files.items():
            final, p = self.dir / fn, self.part(fn)
            if final.is_file():
                continue
            try:
                with open(p, "r+b") as f:
                    f.truncate(meta["size_bytes"])
                    os.fsync(f.fileno())
                p.replace(final)
            except OSError as e:
                raise UpdateError(_os_reason(e, f"assembling {fn}")) from None


def _os_reason(e: OSError, what: str) -> str:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"disk full while {what}: {e.strerror}"
    return f"I/O error while {what}: {e.strerror or e}"
