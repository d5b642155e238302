"""The decision log: a bounded, rotating, crash-safe on-device record of the decisions the runtime takes, with
their inputs (which model/backend/precision and why, circuit transitions, model updates and rollbacks, config
reloads, alerts with their evidence). Never frames or personal data.

Format: append-only JSON lines (`decisions.jsonl`, rotated to `decisions.1.jsonl` ... `decisions.<N-1>.jsonl`),
written by one background thread that fsyncs each batch (group commit), so the pipeline threads never wait for
the disk. Why JSON lines and not SQLite WAL: decisions are rare (a few an hour), the log is only ever appended to
and read back in order, a technician can read it with `tail`/`jq`, the size cap is exact (segment files, no
VACUUM), and a crash can at worst leave one torn last line, which readers skip and the next writer cuts off.
Records carry a `seq` that stays monotonic across restarts.
"""
from __future__ import annotations

import json
import logging
import math
import os
import queue
import re
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pydantic import Field, model_validator

from edge.core.config_base import StrictModel
from edge.core.files import fsync_dir

log = logging.getLogger(__name__)

ACTIVE = "decisions.jsonl"
# kinds written by the runtime (readers accept any kind; `edge log decisions --kind` checks against this list)
KINDS = ("model_selected", "model_fallback", "circuit", "model_update", "model_rollback", "config_reload", "alert",
         "alerts_held", "privacy_refused", "snapshot", "data_purge", "service")
# keys whose values are never stored, whatever their type (frames, masks, crops, faces, free text about people)
PRIVATE_KEYS = frozenset({"image", "frame", "frames", "mask", "crop", "face", "faces", "jpeg", "png", "thumbnail",
                          "embedding", "pixels", "snapshot"})
QUEUE_MAX = 10_000


class DecisionLogConfig(StrictModel):
    """`[decisions]`: where the decision log lives and how big and old it may grow."""

    enabled: bool = True
    path: str = Field("", description="folder of the log; '' = beside the outbox: <outbox folder>/decisions-<device>")
    max_mb: float = Field(4.0, ge=0.01, le=1024, description="all segments together stay under this")
    segments: int = Field(4, ge=2, le=64, description="files the log rotates through")
    retention_days: float = Field(30.0, gt=0, le=3650, description="rotated segments older than this are deleted")
    max_record_bytes: int = Field(16384, ge=512, le=1 << 20, description="a bigger record keeps only its keys")
    daily_summary: bool = Field(True, description="send a summary of each day's decisions as telemetry")

    @model_validator(mode="after")
    def _record_fits(self):
        seg = self.max_mb * 2**20 / self.segments
        if self.max_record_bytes > seg:
            raise ValueError(f"max_record_bytes {self.max_record_bytes} is larger than one segment ({int(seg)} bytes "
                             f"= max_mb / segments): raise max_mb or lower max_record_bytes")
        return self


def _clean(value: Any, path: str, dropped: list[str], depth: int = 0) -> Any:
    """JSON-able copy of value; frames, byte blobs and private keys are replaced and named in `dropped`."""
    if depth > 8:
        dropped.append(path)
        return "<dropped: nested too deep>"
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            k = str(k)
            if k.lower() in PRIVATE_KEYS:
                dropped.append(f"{path}.{k}")
                continue
            out[k] = _clean(v, f"{path}.{k}", dropped, depth + 1)
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_clean(v, f"{path}[{i}]", dropped, depth + 1) for i, v in enumerate(value)]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item) and getattr(value, "ndim", 1) == 0:
        return _clean(item(), path, dropped, depth)
    dropped.append(path)
    return f"<dropped: {type(value).__name__}>"  # arrays (frames), bytes, objects: never stored


def make_record(seq: int, kind: str, subject: str, reason: str, data: dict | None, ts: float,
                max_bytes: int) -> bytes:
    """One JSON line (with its newline). Values that are not plain data are dropped (named in `dropped`); a record
    over max_bytes keeps only the names of its data keys (`truncated`)."""
    dropped: list[str] = []
    rec = {"seq": seq, "ts": round(ts, 3), "kind": kind, "subject": subject, "reason": reason,
           "data": _clean(dict(data or {}), "data", dropped)}
    if dropped:
        rec["dropped"] = dropped[:20]
        log.warning("decision %s %s: not stored (never frames or personal data): %s", kind, subject, dropped[:5])
    line = json.dumps(rec, separators=(",", ":"), allow_nan=False).encode() + b"\n"
    if len(line) > max_bytes:
        rec["data"] = {"truncated": True, "keys": sorted(rec["data"])[:50], "bytes": len(line)}
        rec["reason"] = reason[:1000]
        line = json.dumps(rec, separators=(",", ":")).encode() + b"\n"
    return line


def parse_line(line: bytes) -> tuple[dict, int, float, str] | None:
    """(record, seq, ts, kind) of one complete line; None for a line that is not a record (corrupt, or edited by
    hand: not an object, seq not a whole number, ts not a finite time, kind not a string)."""
    try:
        rec = json.loads(line)
        seq, ts, kind = int(rec["seq"]), float(rec["ts"]), rec["kind"]
    except (ValueError, KeyError, TypeError, OverflowError):  # OverflowError: a seq of 1e999, a ts of 10**400
        return None
    if not math.isfinite(ts) or not isinstance(kind, str):
        return None
    return rec, seq, ts, kind


def read_segment(path: Path) -> Iterator[tuple[float | None, bytes]]:
    """(ts or None, raw line) of each complete line of one segment (unreadable lines: ts None, kept)."""
    with open(path, "rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                continue  # torn tail: the writer was killed mid-line
            parsed = parse_line(line)
            yield (None if parsed is None else parsed[2]), line


def trim_segment(path: Path, before: float | None, *, dry_run: bool = False) -> tuple[int, bool]:
    """Remove the records older than `before` (None: all) from one segment no one is writing; a rotated segment
    left empty is deleted. Returns (records removed, file deleted)."""
    from edge.core.files import write_atomic

    recs = list(read_segment(path))
    keep = [] if before is None else [line for ts, line in recs if ts is None or ts >= before]
    removed = len(recs) - len(keep)
    if removed == 0 or dry_run:
        return removed, False
    if keep or path.name == ACTIVE:
        write_atomic(path, b"".join(keep))
        return removed, False
    path.unlink()
    return removed, True


def segment_paths(folder: Path) -> list[Path]:
    """The log's files, oldest first (decisions.<N>.jsonl ... decisions.1.jsonl, decisions.jsonl)."""
    rotated = []
    for p in folder.glob("decisions.*.jsonl"):
        m = re.fullmatch(r"decisions\.(\d+)\.jsonl", p.name)
        if m:
            rotated.append((int(m.group(1)), p))
    return [p for _, p in sorted(rotated, reverse=True)] + [folder / ACTIVE]


class ReadStats:
    """What a read skipped: torn or unreadable lines."""

    def __init__(self) -> None:
        self.skipped = 0


def read_decisions(folder: str | Path, *, since: float | None = None, until: float | None = None,
                   kinds: Iterable[str] | None = None, stats: ReadStats | None = None) -> Iterator[dict]:
    """Records oldest first; `since`/`until` are wall times (s), `kinds` filters. Torn or corrupt lines are
    skipped (counted in `stats`). Safe while a writer appends and rotates (records are de-duplicated by seq)."""
    folder = Path(folder)
    kinds = set(kinds) if kinds else None
    last = -1
    for path in segment_paths(folder):
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            continue
        with f:
            for line in f:
                parsed = parse_line(line) if line.endswith(b"\n") else None  # no newline: a torn tail
                if parsed is None:
                    if stats is not None:
                        stats.skipped += 1
                    continue
                rec, seq, ts, kind = parsed
                if seq <= last:
                    continue
                last = seq
                if (since is not None and ts < since) or (until is not None and ts >= until):
                    continue
                if kinds is not None and kind not in kinds:
                    continue
                yield rec


def _last_seq(path: Path) -> int:
    """seq of the last complete record of a file (-1 if none)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 2 * 1024 * 1024))
            lines = f.read().split(b"\n")
    except OSError:
        return -1
    for line in reversed(lines[:-1] if lines else []):
        parsed = parse_line(line)
        if parsed is not None:
            return parsed[1]
    return -1


class DecisionLog:
    """Appends decisions from any thread; a writer thread writes and fsyncs them in order.

    `record()` never blocks on the disk (unless `wait=True`) and never raises on bad data: values that are not
    plain data are dropped and named. The queue is bounded (QUEUE_MAX): beyond it records are dropped and counted
    (`dropped`), so a stuck disk cannot grow memory.
    """

    def __init__(self, folder: str | Path, *, max_bytes: int = 4 * 2**20, segments: int = 4,
                 retention_s: float = 30 * 86400.0, max_record_bytes: int = 16384, clock=time.time):
        self.folder = Path(folder)
        self.segments = segments
        self.segment_bytes = max(1024, max_bytes // segments)
        self.max_bytes = max_bytes
        self.retention_s = retention_s
        self.max_record_bytes = min(max_record_bytes, self.segment_bytes)
        self._clock = clock
        self._q: queue.Queue = queue.Queue(QUEUE_MAX)
        self._seq_lock = threading.Lock()
        self._seq = -1
        self._written = -1  # last seq made durable
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._f = None
        self._size = 0
        self.dropped = 0
        self.errors = 0
        self.last_error = ""

    @classmethod
    def from_config(cls, cfg: DecisionLogConfig, folder: str | Path) -> DecisionLog:
        return cls(folder, max_bytes=int(cfg.max_mb * 2**20), segments=cfg.segments,
                   retention_s=cfg.retention_days * 86400.0, max_record_bytes=cfg.max_record_bytes)

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> DecisionLog:
        """Create the folder, cut a torn last line off, continue the seq, apply retention, start the writer."""
        self.folder.mkdir(parents=True, exist_ok=True)
        active = self.folder / ACTIVE
        self._repair(active)
        self._seq = self._written = max((_last_seq(p) for p in segment_paths(self.folder)), default=-1)
        self._f = open(active, "ab")
        self._size = self._f.tell()
        self._expire()
        self._thread = threading.Thread(target=self._run, name="decision-log", daemon=True)
        self._thread.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued, then stop the writer."""
        if self._thread is None:
            return
        self._q.put(None)
        self._thread.join(timeout)
        self._thread = None
        if self._f is not None:
            self._f.close()
            self._f = None

    def _repair(self, path: Path) -> None:
        """A writer killed mid-line leaves a torn tail: truncate the file to its last complete line."""
        try:
            with open(path, "r+b") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                if size == 0:
                    return
                f.seek(size - 1)
                if f.read(1) == b"\n":
                    return
                pos = size
                while pos > 0:
                    step = min(65536, pos)
                    f.seek(pos - step)
                    chunk = f.read(step)
                    i = chunk.rfind(b"\n")
                    if i >= 0:
                        pos = pos - step + i + 1
                        break
                    pos -= step
                log.warning("decision log %s: cutting a torn last line (%d bytes) left by a crash", path, size - pos)
                f.truncate(pos)
                f.flush()
                os.fsync(f.fileno())
        except FileNotFoundError:
            pass

    # ------------------------------------------------------------------ writing (any thread)
    def record(self, kind: str, subject: str = "", data: dict | None = None, *, reason: str = "",
               wait: bool = False, timeout: float = 5.0) -> int | None:
        """Queue one decision; returns its seq (None if dropped). wait=True returns once it is on disk."""
        from edge.core.metrics import DECISIONS, DECISIONS_DROPPED

        with self._seq_lock:
            self._seq += 1
            seq = self._seq
            line = make_record(seq, kind, subject, reason, data, self._clock(), self.max_record_bytes)
            try:
                self._q.put_nowait((seq, line))
            except queue.Full:
                self._seq -= 1
                self.dropped += 1
                DECISIONS_DROPPED.inc()
                log.error("decision log queue full (disk stuck?): %s %s dropped", kind, subject)
                return None
        DECISIONS.labels(kind).inc()
        if wait:
            self.flush(timeout, upto=seq)
        return seq

    def flush(self, timeout: float = 5.0, upto: int | None = None) -> bool:
        """Wait until every record queued so far (or up to seq `upto`) is on disk."""
        upto = self._seq if upto is None else upto
        with self._cv:
            return self._cv.wait_for(lambda: self._written >= upto, timeout)

    @property
    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in segment_paths(self.folder) if p.exists())

    def _run(self) -> None:
        while True:
            item = self._q.get()
            batch = [item]
            while item is not None:
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
                batch.append(item)
            stop = batch[-1] is None or None in batch
            recs: list = []
            for b in batch:  # in queue order: a retention pass runs between the records queued before and after it
                if b is _RETAIN:
                    if recs:
                        self._write(recs)
                        recs = []
                    self._retain()
                elif b is not None:
                    recs.append(b)
            if recs:
                self._write(recs)
            if stop:
                return

    def _write(self, recs: list[tuple[int, bytes]]) -> None:
        try:
            for _, line in recs:
                if self._size + len(line) > self.segment_bytes and self._size > 0:
                    self._rotate()
                self._f.write(line)
                self._size += len(line)
            self._f.flush()
            os.fdatasync(self._f.fileno())
        except OSError as e:  # disk full, read-only: count, keep running, try again with the next batch
            from edge.core.metrics import DECISIONS_DROPPED

            self.errors += 1
            self.last_error = str(e)
            DECISIONS_DROPPED.inc(len(recs))
            log.error("decision log write failed, %d record(s) lost: %s", len(recs), e)
            try:
                if self._f is None or self._f.closed:
                    self._f = open(self.folder / ACTIVE, "ab")
                    self._size = self._f.tell()
            except OSError:
                pass
        with self._cv:
            self._written = recs[-1][0]
            self._cv.notify_all()

    def _rotate(self) -> None:
        """decisions.jsonl -> decisions.1.jsonl -> ...; the oldest beyond `segments` is deleted."""
        self._f.flush()
        os.fdatasync(self._f.fileno())
        self._f.close()
        for p in segment_paths(self.folder)[:-1]:
            n = int(p.name.split(".")[1])
            if n >= self.segments - 1:
                p.unlink(missing_ok=True)
            else:
                p.rename(self.folder / f"decisions.{n + 1}.jsonl")
        (self.folder / ACTIVE).rename(self.folder / "decisions.1.jsonl")
        self._f = open(self.folder / ACTIVE, "ab")
        self._size = 0
        fsync_dir(self.folder)
        self._expire()

    def enforce_retention(self) -> None:
        """Drop every record older than the retention, now, on the writer thread (the running device's retention
        loop calls this: rotation alone can take months at a few records an hour)."""
        if self._thread is not None:
            self._q.put(_RETAIN)

    def _retain(self) -> None:
        """Writer thread: rotate the active segment when its oldest record is past the retention, then trim rotated
        segments record by record (deleting those left empty)."""
        cutoff = self._clock() - self.retention_s
        try:
            first = next((ts for ts, _ in read_segment(self.folder / ACTIVE) if ts is not None), None)
            if self._size > 0 and first is not None and first < cutoff:
                self._rotate()
            removed = sum(trim_segment(p, cutoff)[0] for p in segment_paths(self.folder)[:-1] if p.exists())
        except OSError as e:
            self.errors += 1
            self.last_error = str(e)
            log.error("decision log retention failed: %s", e)
            return
        if removed:
            log.info("decision log: %d record(s) older than the retention removed", removed)

    def _expire(self) -> None:
        """Delete rotated segments last written longer ago than the retention."""
        cutoff = self._clock() - self.retention_s
        for p in segment_paths(self.folder)[:-1]:
            try:
                if p.stat().st_mtime < cutoff:
                    log.info("decision log: %s is older than the retention, deleted", p.name)
                    p.unlink()
            except FileNotFoundError:
                pass


_RETAIN = object()  # queued by enforce_retention: the writer applies the retention between batches


# ---------------------------------------------------------------------- the process's log (like logging's root)
_default: DecisionLog | None = None


def set_default(dl: DecisionLog | None) -> None:
    """Make `dl` the log that module-level `record()` writes to (the runtime sets it; None: recording off)."""
    global _default
    _default = dl


def get_default() -> DecisionLog | None:
    return _default


def record(kind: str, subject: str = "", data: dict | None = None, *, reason: str = "") -> int | None:
    """Record into the process's decision log; a no-op (None) when none is open (tools, tests, build code)."""
    dl = _default
    if dl is None:
        return None
    try:
        return dl.record(kind, subject, data, reason=reason)
    except Exception:  # noqa: BLE001 - recording a decision must never break the decision itself
        log.exception("could not record decision %s %s", kind, subject)
        return None


# ---------------------------------------------------------------------- reading helpers (CLI, HTTP)
_REL = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(value: str, now: float | None = None) -> float:
    """Wall time (s) from '90s' / '15m' / '2h' / '7d' / '1w' (ago), ISO 8601 (naive = UTC) or epoch seconds;
    ValueError naming the accepted forms."""
    v = value.strip()
    now = time.time() if now is None else now
    m = _REL.match(v)
    if m:
        return now - float(m.group(1)) * _UNIT[m.group(2)]
    try:
        return float(v)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {value!r}: use a duration ago (90s, 15m, 2h, 7d, 1w), an ISO 8601 time "
                         "(2026-05-01T09:00:00+02:00) or epoch seconds") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def parse_kinds(value: str | Iterable[str] | None) -> list[str] | None:
    """Comma-separated kinds checked against KINDS; ValueError listing them."""
    if not value:
        return None
    parts = [k.strip() for k in (value.split(",") if isinstance(value, str) else value) if k.strip()]
    bad = [k for k in parts if k not in KINDS]
    if bad:
        raise ValueError(f"unknown kind(s) {bad}: use one or more of {', '.join(KINDS)}")
    return parts


def format_record(rec: dict) -> str:
    """One line for people: time (UTC), seq, kind, subject, reason."""
    try:
        ts = datetime.fromtimestamp(rec["ts"], timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, ValueError, OSError):  # a time out of the calendar's range (a hand-edited record)
        ts = f"ts={rec['ts']}"
    return f"{ts}  #{rec['seq']!s:<6} {rec['kind']:<15} {rec.get('subject', '')!s:<24} {rec.get('reason', '')}"


def decisions_route(folder: str | Path, default_limit: int = 200):
    """GET /decisions?since=2h&kind=circuit,alert&limit=50 -> {"decisions": [newest last], "skipped": n}."""
    from urllib.parse import parse_qs, urlsplit

    from edge.core.http_server import send

    def route(h) -> None:
        q = parse_qs(urlsplit(h.path).query)
        try:
            since = parse_since(q["since"][0]) if q.get("since") else None
            kinds = parse_kinds(q["kind"][0]) if q.get("kind") else None
            limit = int(q["limit"][0]) if q.get("limit") else default_limit
            if not 1 <= limit <= 10_000:
                raise ValueError("limit must be 1..10000")
        except ValueError as e:
            send(h, 400, json.dumps({"error": str(e)}).encode(), "application/json")
            return
        stats = ReadStats()
        from collections import deque

        recs = deque(read_decisions(folder, since=since, kinds=kinds, stats=stats), maxlen=limit)
        send(h, 200, json.dumps({"decisions": list(recs), "skipped": stats.skipped}).encode(), "application/json")

    return route
