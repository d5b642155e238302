"""Durable outbox (SQLite, WAL): the device's `EventSink`. Rows leave it only when delivered.

Two tables with their own monotonic `seq` (AUTOINCREMENT, never reused):

- ``reliable`` holds `events` and `alerts`; a row is deleted when the cloud consumer's ack watermark
  (highest contiguous seq stored in the cloud) covers it.
- ``telemetry`` rows are deleted on PUBACK.

`emit()` commits before it returns. Durability per stream: streams in `durable_streams` (default: alerts) are
committed with `synchronous=FULL` (the WAL is fsynced before `emit` returns: survives a power cut), the others
with `synchronous=NORMAL` (survives a process crash; a power cut may lose the last commits, never one already
handed to MQTT: `note_sent` fsyncs). Invalid events go to the ``dead_letter`` table instead of raising into the
caller. `emit` never raises for a store error either: when the disk is full, telemetry is dropped and events and
alerts wait in memory, in order (up to SPILL_MAX events; alerts are never dropped), until the disk takes them
(`retry_spill`, and every `emit`); `store_errors` and `waiting_in_memory` in `metrics()` say so.

A database SQLite finds corrupt at `open()` is moved aside (`<name>.corrupt-<time>`, with its -wal; never deleted)
and a new outbox (new epoch) starts, so the device keeps running: an error log names the moved file.

`sent_hi` (in ``meta``) is the highest reliable seq ever handed to MQTT in this epoch, persisted before the
publish: the delivery loop refuses a cloud ack beyond it (a forged ack must never delete unsent rows).

Disk budget (`max_bytes` of stored payload): over budget, the oldest telemetry is dropped first, then the
oldest events; dropped event seqs are replaced by one small gap record per run (kind `_gap`) so the cloud's
watermark can move past them. Alerts are never dropped: with only alerts left the outbox goes over budget and
says so in the metrics (`over_budget`).
"""
from __future__ import annotations

import logging
import sqlite3
import threading
import time
import uuid
from collections import deque
from contextlib import contextmanager
from pathlib import Path

from edge.core.events import STREAMS, Event
from edge.privacy.guard import find_image_data
from sync import payloads
from sync.payloads import GAP_KIND, PayloadError

log = logging.getLogger(__name__)

RELIABLE, TELEMETRY = "reliable", "telemetry"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS reliable (seq INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL,
    kind TEXT NOT NULL, body TEXT NOT NULL, size INTEGER NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS telemetry (seq INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL,
    kind TEXT NOT NULL, body TEXT NOT NULL, size INTEGER NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letter (id INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT, seq INTEGER,
    stream TEXT, kind TEXT, body TEXT, reason TEXT NOT NULL, ts REAL NOT NULL, created REAL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# a dead-lettered session record's age for its retention: when the record was made (`created`; rows dead-lettered
# before that column existed: when they were dead-lettered)
DEAD_CREATED = "COALESCE(created, ts)"
SPILL_MAX = 10_000  # events kept in memory while the disk is full (alerts beyond it too: never dropped)
ROW_OVERHEAD = 64  # bytes counted per row on top of the payload (keys, index, page slack)
DEAD_LETTER_SHARE = 10  # dead-lettered bodies are kept under max_bytes // this (the oldest go first)
REDACTED = '{"withheld":"privacy guard: image data"}'  # dead-letter body of a record the privacy guard refused
_CORRUPT = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB (primary result codes): the file is moved aside at open


def _dead_bytes(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT COALESCE(SUM(length(body)), 0) FROM dead_letter").fetchone()[0])


def _past_retention(kinds: list[str] | tuple[str, ...], before: float) -> tuple[str, str, tuple]:
    """(condition on `reliable`, condition on `dead_letter`, their parameters): the session records of `kinds` past
    their retention, undelivered ones stored before `before`, dead-lettered ones made before it (DEAD_CREATED)."""
    marks = ",".join("?" * len(kinds))
    return f"kind IN ({marks}) AND created < ?", f"kind IN ({marks}) AND {DEAD_CREATED} < ?", (*kinds, before)


class Outbox:
    """SQLite outbox. Thread-safe (one connection, one lock); `emit` may be called from any thread."""

    def __init__(self, path: str | Path, *, max_bytes: int = 256 << 20, max_event_bytes: int = 64 << 10,
                 max_depth: int = payloads.MAX_DEPTH, durable_streams: tuple[str, ...] | list[str] = ("alerts",),
                 quarantine_corrupt: bool = True) -> None:
        self.path = Path(path)
        self.quarantine_corrupt = quarantine_corrupt  # False (inspection tools): a corrupt file raises, is not moved
        self.durable_streams = frozenset(durable_streams)
        self.sent_hi = 0
        self.quarantined: str | None = None  # where a corrupt database found at open was moved
        self.max_bytes = max_bytes
        self.max_event_bytes = max_event_bytes
        self.max_depth = max_depth
        self.changed = threading.Event()  # set on every emit; the delivery loop waits on it
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self.epoch = ""
        self._rows = dict.fromkeys(STREAMS, 0)
        self._bytes = {RELIABLE: 0, TELEMETRY: 0}
        self._dead_bytes = 0  # body characters in dead_letter (kept under max_bytes // DEAD_LETTER_SHARE)
        self.counters = {"emitted": dict.fromkeys(STREAMS, 0), "dropped": dict.fromkeys(STREAMS, 0),
                         "dead_lettered": 0, "dead_letters_dropped": 0, "acked": 0, "over_budget": False,
                         "store_errors": 0}
        self._spill: deque[tuple] = deque()  # rows the disk did not take (full): stored in order when it does
        self._store_error_logged = -1e9  # monotonic time of the last store-error log line
        self._spill_drop_logged = -1e9  # monotonic time of the last log line about events dropped from memory

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> "Outbox":
        """Open (or create) the database. A file SQLite finds corrupt (not a database, malformed) is moved aside
        (unless `quarantine_corrupt` is False: then it raises), never deleted, and a new outbox (new epoch) takes its place, so the device keeps running: logged as an
        error naming the moved file, and `quarantined` in `metrics()`."""
        if self._db is not None:
            return self
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError as e:
            if not self.quarantine_corrupt or (getattr(e, "sqlite_errorcode", 0) & 0xFF) not in _CORRUPT:
                raise
            self.quarantined = self._quarantine(e)
            self._db = self._connect()
        log.info("outbox %s open: epoch %s, %s rows", self.path, self.epoch, self._rows)
        return self

    def _connect(self) -> sqlite3.Connection:
        """Connect, create the schema, read epoch, sent_hi and the row counts; closed again if any step fails."""
        db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            # deleted rows (acked events, refused records) are overwritten, not left in free pages (builds differ)
            db.execute("PRAGMA secure_delete=ON")
            db.executescript(_SCHEMA)
            if "created" not in {r[1] for r in db.execute("PRAGMA table_info(dead_letter)")}:  # older outbox
                db.execute("ALTER TABLE dead_letter ADD COLUMN created REAL")
            row = db.execute("SELECT value FROM meta WHERE key='epoch'").fetchone()
            if row is None:  # a new outbox starts a new seq space; the cloud keys dedupe by (device, epoch, seq)
                db.execute("INSERT INTO meta VALUES ('epoch', ?)", (uuid.uuid4().hex[:16],))
                row = db.execute("SELECT value FROM meta WHERE key='epoch'").fetchone()
            self.epoch = row[0]
            row = db.execute("SELECT value FROM meta WHERE key='sent_hi'").fetchone()
            if row is None:  # an outbox from before sent_hi: trust only what the cloud already acked (rows deleted)
                lo = db.execute("SELECT MIN(seq) FROM reliable").fetchone()[0]
                hi = db.execute("SELECT seq FROM sqlite_sequence WHERE name='reliable'").fetchone()
                self.sent_hi = (lo - 1) if lo is not None else (hi[0] if hi else 0)
                db.execute("INSERT OR REPLACE INTO meta VALUES ('sent_hi', ?)", (str(self.sent_hi),))
            else:
                self.sent_hi = int(row[0])
            self._rows = dict.fromkeys(STREAMS, 0)
            self._bytes = {RELIABLE: 0, TELEMETRY: 0}
            for tbl in (RELIABLE, TELEMETRY):
                for stream, n, size in db.execute(f"SELECT stream, COUNT(*), COALESCE(SUM(size),0) FROM {tbl} "
                                                  "GROUP BY stream"):
                    self._rows[stream] = self._rows.get(stream, 0) + n
                    self._bytes[tbl] += size
            self._dead_bytes = _dead_bytes(db)
        except BaseException:
            db.close()
            raise
        return db

    def _quarantine(self, err: sqlite3.DatabaseError) -> str:
        """Move the corrupt database (and its -wal / -shm) to `<name>.corrupt-<time>`; returns the new path."""
        moved = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        n = 1
        while moved.exists():
            n += 1
            moved = moved.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{n}")
        for suffix in ("", "-wal", "-shm"):
            src = Path(f"{self.path}{suffix}")
            if src.exists():
                src.rename(f"{moved}{suffix}")
        log.error("outbox %s is corrupt (%s): moved to %s and a new, empty outbox (new epoch) started; events "
                  "that were waiting in it are NOT sent: recover them with `sqlite3 %s .recover`", self.path, err,
                  moved, moved)
        return str(moved)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> "Outbox":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("outbox is not open (call open())")
        return self._db

    # ------------------------------------------------------------------ producer side
    def emit(self, event: Event) -> int | None:
        """Store an event durably; returns its seq, or None if it was invalid (then it is dead-lettered)."""
        stream = event.stream
        try:
            if stream not in STREAMS:
                raise PayloadError(f"unknown stream {stream!r}")
            if event.kind.startswith("_"):
                raise PayloadError(f"event kind {event.kind!r}: a leading '_' is reserved")
            body = payloads.event_body(event.kind, stream, event.ts, event.event_id, event.data,
                                       max_bytes=self.max_event_bytes, max_depth=self.max_depth)
        except (PayloadError, ValueError, TypeError, AttributeError) as e:
            self._dead_letter_invalid(event, str(e))
            return None
        row = (stream, event.kind, body, len(body) + ROW_OVERHEAD, time.time())
        with self._lock:
            self.counters["emitted"][stream] += 1
            if self._spill and stream != "telemetry":  # the disk was full: keep the order, stored ones first
                self._spill.append(row)
                self._cap_spill()
                seq = self._drain_spill()
            else:
                try:
                    seq = self._insert(row)
                except sqlite3.Error as e:
                    self._store_failed(row, e)
                    seq = None
        if seq is not None:
            self.changed.set()
        return seq

    def _insert(self, row: tuple) -> int:
        """Insert one (stream, kind, body, size, created) row; returns its seq. Lock held; raises sqlite3.Error."""
        stream, size = row[0], row[3]
        tbl = TELEMETRY if stream == "telemetry" else RELIABLE
        with self._fsynced(stream in self.durable_streams):
            cur = self.db.execute(f"INSERT INTO {tbl} (stream, kind, body, size, created) VALUES (?,?,?,?,?)", row)
        self._rows[stream] += 1
        self._bytes[tbl] += size
        if self._bytes[RELIABLE] + self._bytes[TELEMETRY] > self.max_bytes:
            try:  # the row is stored: a failure here is the budget's, not the row's
                self._enforce_budget()
            except sqlite3.Error as e:
                log.error("outbox %s: disk budget not enforced (%s)", self.path, e)
        return cur.lastrowid

    def _store_failed(self, row: tuple, err: sqlite3.Error) -> None:
        """A row could not be stored (disk full, I/O error): telemetry is dropped, events and alerts wait in memory
        (`_spill`, oldest events dropped beyond SPILL_MAX, alerts never) until the disk takes them. Lock held."""
        self._store_error(err)
        if row[0] == "telemetry":
            self.counters["dropped"]["telemetry"] += 1
            return
        self._spill.append(row)
        self._cap_spill()

    def _store_error(self, err: sqlite3.Error) -> None:
        """Count a failed store; log it at most once a minute. Lock held."""
        self.counters["store_errors"] += 1
        if time.monotonic() - self._store_error_logged > 60:
            self._store_error_logged = time.monotonic()
            log.error("outbox %s: cannot store an event (%s); events and alerts wait in memory until the disk takes "
                      "them (%d now), telemetry is dropped (free disk space under %s)", self.path, err,
                      len(self._spill), self.path.parent)

    def _cap_spill(self) -> None:
        """Beyond SPILL_MAX rows in memory the oldest event goes (counted as dropped); alerts never. Lock held."""
        dropped = 0
        while len(self._spill) > SPILL_MAX:
            drop = next((r for r in self._spill if r[0] != "alerts"), None)
            if drop is None:
                break
            self._spill.remove(drop)
            self.counters["dropped"][drop[0]] += 1
            dropped += 1
        if dropped and time.monotonic() - self._spill_drop_logged > 60:  # never silently; at most once a minute
            self._spill_drop_logged = time.monotonic()
            log.error("outbox %s: the disk is still full and %d events wait in memory (the most kept): the oldest "
                      "events are dropped, alerts are kept (dropped so far: %s); free disk space under %s",
                      self.path, len(self._spill), dict(self.counters["dropped"]), self.path.parent)

    def _drain_spill(self) -> int | None:
        """Store the rows waiting in memory, in order, while the disk takes them; returns the last seq stored (None
        if nothing was). Lock held."""
        seq = None
        while self._spill:
            try:
                seq = self._insert(self._spill[0])
            except sqlite3.Error as e:
                self._store_error(e)
                break
            self._spill.popleft()
        if not self._spill:
            log.info("outbox %s: the events that waited in memory are stored", self.path)
        return seq

    def retry_spill(self) -> int:
        """Try again to store the events waiting in memory (the delivery loop calls this); returns how many wait."""
        with self._lock:
            if self._spill and self._db is not None and self._drain_spill() is not None:
                self.changed.set()
            return len(self._spill)

    def _dead_letter_invalid(self, event: Event, reason: str) -> None:
        log.warning("event %r dead-lettered: %s", getattr(event, "kind", None), reason)
        data = getattr(event, "data", None)
        body = REDACTED if find_image_data(data) else repr(data)[: self.max_event_bytes]  # never keep a frame
        with self._lock:
            try:
                now = time.time()
                self.db.execute("INSERT INTO dead_letter (tbl, seq, stream, kind, body, reason, ts, created) "
                                "VALUES (?,?,?,?,?,?,?,?)", (None, None, str(getattr(event, "stream", "")),
                                                             str(getattr(event, "kind", "")), body,
                                                             "invalid: " + reason, now, now))
                self._cap_dead_letters(len(body))
            except sqlite3.Error as e:  # disk full: emit must not raise; the invalid event is only logged above
                self._store_error(e)
                return
            self.counters["dead_lettered"] += 1

    # ------------------------------------------------------------------ disk budget
    def _enforce_budget(self) -> None:
        """Bring stored bytes under 90 % of the budget: telemetry first, then events, alerts never. Lock held."""
        target = int(self.max_bytes * 0.9)
        db = self.db

        def total() -> int:
            return self._bytes[RELIABLE] + self._bytes[TELEMETRY]

        with self._transaction():
            while total() > target:
                rows = db.execute("SELECT seq, size FROM telemetry ORDER BY seq LIMIT 1000").fetchall()
                if not rows:
                    break
                upto, freed, n = self._pick(rows, total() - target)
                db.execute("DELETE FROM telemetry WHERE seq <= ?", (upto,))
                self._bytes[TELEMETRY] -= freed
                self._rows["telemetry"] -= n
                self.counters["dropped"]["telemetry"] += n
            while total() > target:
                rows = db.execute("SELECT seq, size FROM reliable WHERE stream='events' AND kind != ? "
                                  "ORDER BY seq LIMIT 1000", (GAP_KIND,)).fetchall()
                if not rows:
                    break
                upto, freed, n = self._pick(rows, total() - target)
                dropped = [s for s, _ in rows[:n]]
                db.executemany("DELETE FROM reliable WHERE seq = ?", [(s,) for s in dropped])
                self._bytes[RELIABLE] -= freed
                self._rows["events"] -= n
                self.counters["dropped"]["events"] += n
                self._insert_gaps(dropped, "disk_budget")
        over = total() > self.max_bytes
        if over and not self.counters["over_budget"]:
            log.error("outbox over its %d-byte budget with alerts only: alerts are never dropped", self.max_bytes)
        self.counters["over_budget"] = over
        log.warning("outbox budget enforced: dropped so far %s", self.counters["dropped"])

    @staticmethod
    def _pick(rows: list[tuple[int, int]], need: int) -> tuple[int, int, int]:
        freed = n = 0
        for seq, size in rows:
            freed += size
            n += 1
            if freed >= need:
                return seq, freed, n
        return rows[-1][0], freed, n

    def _insert_gaps(self, seqs: list[int], reason: str) -> None:
        """Replace removed reliable seqs by one `_gap` record per run of consecutive seqs. Lock and txn held."""
        runs: list[list[int]] = []
        for s in sorted(seqs):
            if runs and s == runs[-1][1] + 1:
                runs[-1][1] = s
            else:
                runs.append([s, s])
        now = time.time()
        for first, last in runs:
            body = payloads.dumps({"event_id": f"gap-{self.epoch}-{first}", "kind": GAP_KIND, "stream": "events",
                                   "ts": now, "data": {"to": last, "reason": reason}})
            size = len(body) + ROW_OVERHEAD
            self.db.execute("INSERT INTO reliable (seq, stream, kind, body, size, created) VALUES (?,?,?,?,?,?)",
                            (first, "events", GAP_KIND, body, size, now))
            self._bytes[RELIABLE] += size
            self._rows["events"] += 1

    # ------------------------------------------------------------------ delivery side
    def fetch(self, tbl: str, after: int, limit: int, before: int | None = None) -> list[tuple]:
        """Rows (seq, stream, kind, body, created) of `tbl` with after < seq (< before), in seq order."""
        with self._lock:
            if before is None:
                return self.db.execute(f"SELECT seq, stream, kind, body, created FROM {tbl} WHERE seq > ? "
                                       "ORDER BY seq LIMIT ?", (after, limit)).fetchall()
            return self.db.execute(f"SELECT seq, stream, kind, body, created FROM {tbl} WHERE seq > ? AND seq < ? "
                                   "ORDER BY seq LIMIT ?", (after, before, limit)).fetchall()

    def max_seq(self, tbl: str = RELIABLE) -> int:
        """Highest seq ever assigned in `tbl` (0 if none), even if the row is gone."""
        with self._lock:
            row = self.db.execute("SELECT seq FROM sqlite_sequence WHERE name = ?", (tbl,)).fetchone()
            return row[0] if row else 0

    def note_sent(self, seq: int) -> None:
        """Persist that reliable rows up to seq are being handed to MQTT (called before the publish). Committed with
        synchronous=FULL: the WAL fsync makes every row up to seq durable too, so a power cut cannot roll back a seq
        the cloud already has and hand it out again to a new event (which the cloud would drop as a duplicate)."""
        if seq <= self.sent_hi:
            return
        with self._lock:
            with self._fsynced():
                self.db.execute("INSERT OR REPLACE INTO meta VALUES ('sent_hi', ?)", (str(seq),))
            self.sent_hi = seq

    def min_seq(self, tbl: str = RELIABLE) -> int | None:
        with self._lock:
            return self.db.execute(f"SELECT MIN(seq) FROM {tbl}").fetchone()[0]

    def ack_upto(self, upto: int) -> int:
        """Delete reliable rows with seq <= upto (the cloud stored them). Returns rows deleted."""
        with self._lock:
            db = self.db
            with self._transaction():
                stats = db.execute("SELECT stream, COUNT(*), COALESCE(SUM(size),0) FROM reliable WHERE seq <= ? "
                                   "GROUP BY stream", (upto,)).fetchall()
                db.execute("DELETE FROM reliable WHERE seq <= ?", (upto,))
            n = 0
            for stream, cnt, size in stats:
                self._rows[stream] -= cnt
                self._bytes[RELIABLE] -= size
                n += cnt
            self.counters["acked"] += n
            return n

    def delete_telemetry(self, seqs: list[int]) -> None:
        """Delete telemetry rows (PUBACKed)."""
        if not seqs:
            return
        with self._lock:
            db = self.db
            with self._transaction():
                n = size = 0
                for s in seqs:
                    row = db.execute("SELECT size FROM telemetry WHERE seq = ?", (s,)).fetchone()
                    if row:
                        db.execute("DELETE FROM telemetry WHERE seq = ?", (s,))
                        n += 1
                        size += row[0]
            self._rows["telemetry"] -= n
            self._bytes[TELEMETRY] -= size
            self.counters["acked"] += n

    def dead_letter(self, tbl: str, seqs: list[int], reason: str, *, redact: bool = False) -> int:
        """Move rows to the dead-letter table (permanent broker refusal, too large...). Reliable seqs get a gap
        record in their place so the cloud watermark can pass them; a failing gap record is just moved.
        redact: keep only the reason, not the body (the privacy guard refused it: image data)."""
        with self._lock:
            db = self.db
            moved: list[int] = []
            count = added = 0
            with self._transaction():
                for s in seqs:
                    row = db.execute(f"SELECT seq, stream, kind, body, size, created FROM {tbl} WHERE seq = ?",
                                     (s,)).fetchone()
                    if row is None:
                        continue
                    db.execute("INSERT INTO dead_letter (tbl, seq, stream, kind, body, reason, ts, created) "
                               "VALUES (?,?,?,?,?,?,?,?)",
                               (tbl, row[0], row[1], row[2], REDACTED if redact else row[3], reason, time.time(),
                                row[5]))
                    db.execute(f"DELETE FROM {tbl} WHERE seq = ?", (s,))
                    self._rows[row[1]] -= 1
                    self._bytes[tbl] -= row[4]
                    added += len(REDACTED if redact else row[3])
                    count += 1
                    if tbl == RELIABLE and row[2] != GAP_KIND:
                        moved.append(s)
                self.counters["dead_lettered"] += count
                if moved:
                    self._insert_gaps(moved, "dead_letter")
                self._cap_dead_letters(added)
        if redact and count:  # the refused body must not stay in the WAL's older page copies either
            self.compact(vacuum=False)
        log.error("dead-lettered %d %s rows: %s", count, tbl, reason)
        return count

    def _cap_dead_letters(self, added: int) -> None:
        """Keep dead-lettered bodies under max_bytes // DEAD_LETTER_SHARE (they are outside the budget of what waits
        to be sent: a broker refusing every publish, e.g. a wrong ACL, would otherwise fill the disk with them for
        the whole history retention): the oldest go, down to 90 % of it. Lock held."""
        self._dead_bytes += added
        cap = self.max_bytes // DEAD_LETTER_SHARE
        if self._dead_bytes <= cap:
            return
        need, freed, last, n = self._dead_bytes - int(cap * 0.9), 0, None, 0
        for i, size in self.db.execute("SELECT id, length(body) FROM dead_letter ORDER BY id"):
            freed, last, n = freed + (size or 0), i, n + 1
            if freed >= need:
                break
        if last is not None:
            self.db.execute("DELETE FROM dead_letter WHERE id <= ?", (last,))
        self._dead_bytes -= freed
        self.counters["dead_letters_dropped"] += n
        log.warning("outbox: dead letters over %d bytes (a tenth of the budget): the %d oldest deleted (%d so far); "
                    "see `edge sync outbox PATH` for why the broker refuses them", cap, n,
                    self.counters["dead_letters_dropped"])

    # ------------------------------------------------------------------ retention (docs/PRIVACY.md)
    def expire(self, kinds: list[str] | tuple[str, ...], before: float) -> int:
        """Delete undelivered and dead-lettered events of `kinds` stored before `before` (wall time): shopper session
        data kept past its retention; returns how many. A gap record (reason `retention`) stands for the undelivered
        ones so the cloud watermark can pass."""
        if not kinds:
            return 0
        undelivered, dead_letters, args = _past_retention(kinds, before)
        with self._lock:
            db = self.db
            with self._transaction():
                rows = db.execute(f"SELECT seq, stream, size FROM reliable WHERE {undelivered} ORDER BY seq",
                                  args).fetchall()
                db.executemany("DELETE FROM reliable WHERE seq = ?", [(r[0],) for r in rows])
                # a session record the broker refused sits in dead_letter: same retention, from when it was made
                dead = db.execute(f"DELETE FROM dead_letter WHERE {dead_letters}", args).rowcount
                for _, stream, size in rows:
                    self._rows[stream] -= 1
                    self._bytes[RELIABLE] -= size
                if rows:
                    self._insert_gaps([r[0] for r in rows], "retention")
                if dead:
                    self._dead_bytes = _dead_bytes(db)
        if rows or dead:
            log.info("outbox: %d undelivered and %d dead-lettered %s record(s) past their retention deleted",
                     len(rows), dead, list(kinds))
        if rows:
            self.changed.set()
        return len(rows) + dead

    def expiring(self, kinds: list[str] | tuple[str, ...], session_before: float, history_before: float
                 ) -> tuple[int, int]:
        """What `expire(kinds, session_before)` then `purge_dead_letters(history_before)` would delete, deleting
        nothing: (session records, undelivered or dead-lettered; other dead letters)."""
        undelivered, sess, args = _past_retention(kinds, session_before) if kinds else ("0", "0", ())
        with self._lock:
            db = self.db
            n_s = db.execute(f"SELECT COUNT(*) FROM reliable WHERE {undelivered}", args).fetchone()[0]
            n_s += db.execute(f"SELECT COUNT(*) FROM dead_letter WHERE {sess}", args).fetchone()[0]
            n_d = db.execute(f"SELECT COUNT(*) FROM dead_letter WHERE ts < ? AND NOT ({sess})",
                             (history_before, *args)).fetchone()[0]
        return n_s, n_d

    def purge_dead_letters(self, before: float | None = None) -> int:
        """Delete dead-lettered records stored before `before` (None: all of them)."""
        with self._lock:
            if before is None:
                cur = self.db.execute("DELETE FROM dead_letter")
            else:
                cur = self.db.execute("DELETE FROM dead_letter WHERE ts < ?", (before,))
            self._dead_bytes = _dead_bytes(self.db)
            return cur.rowcount

    @contextmanager
    def _transaction(self):
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (unless SQLite already did: disk full). Lock held."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
            self.db.execute("COMMIT")
        except BaseException:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK")
            raise

    @contextmanager
    def _fsynced(self, on: bool = True):
        """Commits inside are made with synchronous=FULL (the WAL fsynced: they survive a power cut). Lock held."""
        if on:
            self.db.execute("PRAGMA synchronous=FULL")
        try:
            yield
        finally:
            if on:
                self.db.execute("PRAGMA synchronous=NORMAL")

    def compact(self, vacuum: bool = True) -> bool:
        """Empty the WAL into the database file (old page images go) and, with `vacuum`, rewrite the file without
        free pages: records deleted earlier (delivered, expired, purged) are then gone from the disk too. The
        running device checkpoints only (a VACUUM rewrites the whole file). Returns whether the last checkpoint
        completed (False: another process's read transaction kept the WAL, old pages included)."""
        with self._lock:
            busy = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            if vacuum:
                self.db.execute("VACUUM")
                busy = self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        return busy == 0

    def dead_letters(self, limit: int = 100) -> list[dict]:
        with self._lock:
            cur = self.db.execute("SELECT id, tbl, seq, stream, kind, reason, ts FROM dead_letter ORDER BY id DESC LIMIT ?",
                                  (limit,))
            cols = [c[0] for c in cur.description]
            return [dict(zip(cols, r)) for r in cur.fetchall()]

    # ------------------------------------------------------------------ meta
    def next_bd_seq(self) -> int:
        """Increment and persist the birth/death session counter (bdSeq); returns the new value."""
        with self._lock:
            row = self.db.execute("SELECT value FROM meta WHERE key='bdseq'").fetchone()
            value = (int(row[0]) + 1) if row else 0
            self.db.execute("INSERT OR REPLACE INTO meta VALUES ('bdseq', ?)", (str(value),))
            return value

    def depth(self) -> dict[str, int]:
        return dict(self._rows)

    def oldest_created(self) -> float | None:
        """Wall time the oldest undelivered event or alert was stored (None: none waits). O(1): lowest seq."""
        with self._lock:
            row = self.db.execute("SELECT created FROM reliable ORDER BY seq LIMIT 1").fetchone()
        return None if row is None else float(row[0])

    def stored_bytes(self) -> int:
        return self._bytes[RELIABLE] + self._bytes[TELEMETRY]

    def metrics(self) -> dict:
        return {"depth": self.depth(), "bytes": self.stored_bytes(), "max_bytes": self.max_bytes,
                "emitted": dict(self.counters["emitted"]), "dropped": dict(self.counters["dropped"]),
                "acked": self.counters["acked"], "dead_lettered": self.counters["dead_lettered"],
                "dead_letters_dropped": self.counters["dead_letters_dropped"],
                "over_budget": self.counters["over_budget"], "epoch": self.epoch, "sent_hi": self.sent_hi,
                "store_errors": self.counters["store_errors"], "waiting_in_memory": len(self._spill),
                "quarantined": self.quarantined}
