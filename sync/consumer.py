"""Reference cloud consumer: stores events, alerts, telemetry, states and command results into SQLite,
de-duplicates by (device, epoch, seq) and publishes each device's ack watermark (retained, QoS 1) for the epoch
the device sends now (its latest batch's: a device refuses an ack of any other epoch).

The watermark is the highest seq up to which every seq of the device's epoch is stored (or covered by a
`_gap` record). A record is committed (synchronous=FULL: on disk) before paho PUBACKs its message, and acks are
published after commit.
"""
from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from paho.mqtt.subscribeoptions import SubscribeOptions

from sync import payloads, topics
from sync.client import ClientOptions, MqttClient
from sync.payloads import GAP_KIND, PayloadError

log = logging.getLogger(__name__)

# Keys include the store: ids are per store (two stores may each have a `d001`), and two such devices can share
# an epoch (flashed from one image that carried an outbox) or one device can move store with its outbox.
_KEYED = """
CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, store TEXT NOT NULL,
    epoch TEXT NOT NULL, seq INTEGER NOT NULL, event_id TEXT, kind TEXT, stream TEXT, ts REAL, sent_ts REAL,
    received_ts REAL, historical INTEGER, data TEXT, UNIQUE (store, device, epoch, seq));
CREATE TABLE IF NOT EXISTS telemetry (id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, store TEXT,
    epoch TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT, ts REAL, received_ts REAL, data TEXT,
    UNIQUE (store, device, epoch, seq));
CREATE TABLE IF NOT EXISTS gaps (device TEXT, epoch TEXT, seq_from INTEGER, seq_to INTEGER, reason TEXT,
    received_ts REAL, store TEXT NOT NULL DEFAULT '', PRIMARY KEY (store, device, epoch, seq_from));
CREATE TABLE IF NOT EXISTS marks (device TEXT, epoch TEXT, store TEXT, upto INTEGER NOT NULL,
    received INTEGER NOT NULL DEFAULT 0, duplicates INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (store, device, epoch));
"""
_SCHEMA = _KEYED + """
CREATE TABLE IF NOT EXISTS states (device TEXT, store TEXT, status TEXT, bdseq INTEGER, payload TEXT,
    received_ts REAL, PRIMARY KEY (store, device));
CREATE TABLE IF NOT EXISTS results (id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT, store TEXT, cmd TEXT,
    cmd_id TEXT, status TEXT, payload TEXT, received_ts REAL);
"""


@dataclass
class _Mark:
    store: str
    upto: int = 0
    pending: set[int] = field(default_factory=set)  # seqs stored above upto
    spans: list[tuple[int, int]] = field(default_factory=list)  # gap records above upto, as (first, last): never
    dirty: bool = True                                           # expanded, so a huge gap costs no memory


def _reach(upto: int, seqs: tuple[set[int], ...], spans) -> int:
    """The watermark from `upto` over stored seqs (sets) and gap spans [(first, last)]: the highest seq up to
    which every seq is one or the other."""
    while True:
        if any(upto + 1 in s for s in seqs):
            upto += 1
            continue
        last = max((b for a, b in spans if a <= upto + 1 <= b), default=None)
        if last is None:
            return upto
        upto = last


class Consumer:
    """Subscribes with a persistent session (fixed client id) and keeps the SQLite store and watermarks."""

    def __init__(self, opts: ClientOptions, db_path: str | Path, *, ack_interval_s: float = 0.1) -> None:
        if not opts.client_id:
            opts.client_id = "storefront-cloud-consumer"
        opts.subscriptions = [(f, SubscribeOptions(qos=1)) for f in topics.CONSUMER_FILTERS]
        self.client = MqttClient(opts)
        self.client.on_message = self._on_message
        self.client.on_connected = lambda sp, props: self._mark_all_dirty()
        self.db_path = Path(db_path)
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(self.db_path), isolation_level=None, check_same_thread=False, timeout=30)
        self.db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk (WAL fsynced) before its ack is published, and the device deletes what an ack
        # covers; with NORMAL a power cut on this host could lose commits the device has already deleted
        self.db.execute("PRAGMA synchronous=FULL")
        _migrate(self.db, self.db_path)
        self.db.executescript(_SCHEMA)
        try:  # an event re-sent under a new seq (an alert transition re-emitted after a kill) is stored once
            self.db.execute("CREATE UNIQUE INDEX IF NOT EXISTS events_event_id ON events (device, event_id)")
        except sqlite3.IntegrityError:  # a database of an older consumer already holds such duplicates
            log.warning("%s holds events stored twice under new seqs (an older consumer): they are not deduplicated by "
                        "event id until those rows are removed", self.db_path)
        self._lock = threading.Lock()
        self._ack_lock = threading.Lock()
        self._marks: dict[tuple[str, str, str], _Mark] = {}  # (store, device, epoch)
        # (store, device) -> the epoch its latest batch came in: the only one acked (the device refuses any other
        # epoch's ack); keyed by store too, as two stores may each have a device of the same id
        self._current: dict[tuple[str, str], str] = {}
        self._load_marks()
        self.ack_interval_s = ack_interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats = {"messages": 0, "records": 0, "stored": 0, "duplicates": 0, "gaps": 0, "bad": 0,
                      "historical": 0, "acks_published": 0}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "Consumer":
        self.client.start()
        self._thread = threading.Thread(target=self._ack_loop, name="consumer-acks", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        self._publish_acks()
        self.client.stop()
        with self._lock:
            self.db.close()

    def _load_marks(self) -> None:
        for device, epoch, store, upto in self.db.execute("SELECT device, epoch, store, upto FROM marks "
                                                          "ORDER BY rowid").fetchall():  # newest epoch last
            m = _Mark(store, upto)
            for (seq,) in self.db.execute("SELECT seq FROM events WHERE store=? AND device=? AND epoch=? AND seq>?",
                                          (store, device, epoch, upto)):
                m.pending.add(seq)
            m.spans = [(a, b) for a, b in self.db.execute(
                "SELECT seq_from, seq_to FROM gaps WHERE store=? AND device=? AND epoch=? AND seq_to>?",
                (store, device, epoch, upto))]
            self._advance(m)
            self._marks[(store, device, epoch)] = m
            self._current[(store, device)] = epoch

    # ------------------------------------------------------------------ ingest (paho network thread)
    def _on_message(self, msg) -> None:
        parsed = topics.parse(msg.topic)
        if parsed is None or parsed.fleet:
            return
        self.stats["messages"] += 1
        try:
            if parsed.channel in ("events", "alerts", "telemetry"):
                self._ingest(parsed, msg.payload)
            elif parsed.channel == "state":
                self._store_state(parsed, msg.payload)
            elif parsed.channel == "cmd_result":
                self._store_result(parsed, msg.payload)
        except PayloadError as e:
            self.stats["bad"] += 1
            log.warning("bad payload on %s: %s", msg.topic, e)

    def _ingest(self, parsed: topics.Parsed, raw: bytes) -> None:
        b = payloads.parse_batch(raw)
        if b["device"] != parsed.device or b["store"] != parsed.store:
            raise PayloadError("batch device/store does not match its topic")
        device, store, epoch, now = parsed.device, parsed.store, b["epoch"], time.time()
        recs = b["events"]
        hist = 1 if b.get("historical") else 0
        if parsed.channel == "telemetry":
            with self._lock:
                before = self.db.total_changes
                self.db.executemany(
                    "INSERT OR IGNORE INTO telemetry (device, store, epoch, seq, kind, ts, received_ts, data) "
                    "VALUES (?,?,?,?,?,?,?,?)",
                    [(device, store, epoch, r["seq"], r["kind"], r.get("ts"), now, _data(r)) for r in recs])
                stored = self.db.total_changes - before
            self._count(len(recs), stored, hist)
            return
        with self._lock:
            key = (store, device, epoch)
            m = self._marks.get(key)
            new = m is None
            if new:
                m = self._first_mark(store, device, epoch)
            db = self.db
            db.execute("BEGIN")
            try:
                before = db.total_changes
                rows = [r for r in recs if r["kind"] != GAP_KIND]
                db.executemany(
                    "INSERT OR IGNORE INTO events (device, store, epoch, seq, event_id, kind, stream, ts, sent_ts, "
                    "received_ts, historical, data) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    [(device, store, epoch, r["seq"], r["event_id"], r["kind"], r.get("stream"), r.get("ts"),
                      b.get("sent_ts"), now, hist, _data(r)) for r in rows])
                stored = db.total_changes - before
                gaps = []
                for r in recs:
                    if r["kind"] == GAP_KIND:
                        # kept as a span, never expanded: a gap of any length (checked by parse_batch) costs a row
                        gaps.append((device, epoch, r["seq"], r["data"]["to"], r["data"].get("reason"), now, store))
                if gaps:
                    db.executemany("INSERT OR IGNORE INTO gaps (device, epoch, seq_from, seq_to, reason, received_ts, "
                                   "store) VALUES (?,?,?,?,?,?,?)", gaps)
                added = {r["seq"] for r in rows if r["seq"] > m.upto}
                spans = [(g[2], g[3]) for g in gaps if g[3] > m.upto]
                old = m.upto
                upto = _reach(m.upto, (m.pending, added), m.spans + spans)
                dups = len(rows) - stored
                db.execute("INSERT INTO marks (device, epoch, store, upto, received, duplicates) VALUES (?,?,?,?,?,?) "
                           "ON CONFLICT (store, device, epoch) DO UPDATE SET upto=excluded.upto, "
                           "received=received+excluded.received, duplicates=duplicates+excluded.duplicates",
                           (device, epoch, store, upto, len(rows), dups))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            if new:  # only after the commit: a batch the database refused changes no mark and no ack
                self._marks[key] = m
            if self._current.get((store, device)) != epoch:  # a new outbox on the device (or its first batch)
                self._current[(store, device)] = epoch
                m.dirty = True
            m.pending |= added  # only after the commit: the watermark never runs ahead of the database
            m.spans += spans
            self._advance(m)
            if m.upto != old:
                m.dirty = True
            self.stats["gaps"] += len(gaps)
        self._count(len(rows), stored, hist)

    def _count(self, n: int, stored: int, hist: int) -> None:
        self.stats["records"] += n
        self.stats["stored"] += stored
        self.stats["duplicates"] += n - stored
        if hist:
            self.stats["historical"] += n

    def _first_mark(self, store: str, device: str, epoch: str) -> _Mark:
        """The mark of an epoch first seen from this store. The same device id and epoch from another store is that
        device moved with its outbox (or a copy of its outbox): it deleted what that store's watermark covered and
        will not send it again here, so the new mark starts there (a mark from 0 would wait for those seqs forever).
        Lock held."""
        others = [(m.upto, s) for (s, d, e), m in self._marks.items() if d == device and e == epoch and s != store]
        if not others:
            return _Mark(store)
        upto, was = max(others)
        log.warning("device %s sends epoch %s from store %s, after store %s (up to seq %d): moved with its outbox, or "
                    "a copy of another device's outbox (then give it a new one)", device, epoch, store, was, upto)
        return _Mark(store, upto)

    @staticmethod
    def _advance(m: _Mark) -> None:
        while True:
            if m.upto + 1 in m.pending:
                m.upto += 1
                m.pending.discard(m.upto)
                continue
            last = _reach(m.upto, (), m.spans)  # over a gap span: seqs stored inside it are covered too
            if last == m.upto:
                break
            m.upto = last
            m.pending = {s for s in m.pending if s > last}
            m.spans = [(a, b) for a, b in m.spans if b > last]

    def _store_state(self, parsed: topics.Parsed, raw: bytes) -> None:
        if not raw:  # retained state cleared
            return
        obj = payloads.decode(raw, max_bytes=64 << 10, max_depth=16)
        if not isinstance(obj, dict):
            raise PayloadError("state is not an object")
        bd = obj.get("bdSeq") if isinstance(obj.get("bdSeq"), int) and abs(obj["bdSeq"]) <= payloads.MAX_SEQ else None
        with self._lock:
            row = self.db.execute("SELECT status, bdseq FROM states WHERE store=? AND device=?",
                                  (parsed.store, parsed.device)).fetchone()
            # A stale LWT (older bdSeq than the current birth) must not mark a live device offline.
            if row and obj.get("status") == "offline" and row[0] == "online" and bd is not None and row[1] is not None \
                    and bd < row[1]:
                log.info("stale offline state of %s/%s ignored (bdSeq %s < %s)", parsed.store, parsed.device, bd, row[1])
                return
            self.db.execute("INSERT OR REPLACE INTO states VALUES (?,?,?,?,?,?)",
                            (parsed.device, parsed.store, str(obj.get("status"))[:32], bd,
                             bytes(raw).decode(errors="replace"), time.time()))

    def _store_result(self, parsed: topics.Parsed, raw: bytes) -> None:
        obj = payloads.decode(raw, max_bytes=256 << 10, max_depth=32)
        if not isinstance(obj, dict):
            raise PayloadError("result is not an object")
        with self._lock:
            self.db.execute("INSERT INTO results (device, store, cmd, cmd_id, status, payload, received_ts) "
                            "VALUES (?,?,?,?,?,?,?)", (parsed.device, parsed.store, parsed.name,
                                                      str(obj.get("id"))[:64], str(obj.get("status"))[:32],
                                                      bytes(raw).decode(errors="replace"), time.time()))

    # ------------------------------------------------------------------ acks
    def _mark_all_dirty(self) -> None:
        with self._lock:
            for m in self._marks.values():
                m.dirty = True

    def _ack_loop(self) -> None:
        while not self._stop.wait(self.ack_interval_s):
            self._publish_acks()

    def _publish_acks(self) -> None:
        if not self.client.connected:
            return
        with self._ack_lock:  # one publisher at a time (the ack thread, stop()): a retained ack never goes lower
            with self._lock:
                todo = [(dev, ep, st, m.upto) for (st, dev, ep), m in self._marks.items()
                        if m.dirty and self._current.get((st, dev)) == ep]
                for m in self._marks.values():
                    m.dirty = False
            for dev, ep, store, upto in todo:
                mid = self.client.publish(topics.DeviceTopics(store, dev).ack, payloads.ack(ep, upto), qos=1,
                                          retain=True)
                if mid is None:
                    self._mark_all_dirty()
                else:
                    self.stats["acks_published"] += 1

    # ------------------------------------------------------------------ queries
    def watermark(self, device: str, epoch: str | None = None, store: str | None = None) -> int:
        """The highest watermark of `device` (of one epoch, of one store's device of that id)."""
        with self._lock:
            ups = [m.upto for (s, d, e), m in self._marks.items()
                   if d == device and (epoch is None or e == epoch) and (store is None or s == store)]
        return max(ups) if ups else 0

    def count(self, device: str | None = None) -> int:
        with self._lock:
            if device is None:
                return self.db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            return self.db.execute("SELECT COUNT(*) FROM events WHERE device=?", (device,)).fetchone()[0]

    def seqs(self, device: str) -> list[int]:
        with self._lock:
            return [r[0] for r in self.db.execute("SELECT seq FROM events WHERE device=? ORDER BY seq", (device,))]


def summary(db_path: str | Path, device: str | None = None) -> dict:
    """Counts from a consumer database (read-only use; works while the consumer runs)."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        where, args = ("WHERE device=?", (device,)) if device else ("", ())
        n, distinct_seq, distinct_id, hist = db.execute(
            f"SELECT COUNT(*), COUNT(DISTINCT store || '/' || device || '/' || epoch || '/' || seq), "
            f"COUNT(DISTINCT event_id), "
            f"COALESCE(SUM(historical),0) FROM events {where}", args).fetchone()
        received, dups = db.execute(f"SELECT COALESCE(SUM(received),0), COALESCE(SUM(duplicates),0) FROM marks {where}",
                                    args).fetchone()
        return {"stored": n, "distinct": distinct_seq, "distinct_event_ids": distinct_id, "historical": hist,
                "received": received, "duplicates_removed": dups, "duplicates_after_dedup": n - distinct_id}
    finally:
        db.close()


def _data(rec: dict) -> str:
    """A record's `data` as strict JSON: a non-finite number (`1e400` is valid JSON that reads as infinity; `NaN`
    is read too) is stored as null, as the device sends it, not as `Infinity` that json_extract cannot read."""
    data = rec.get("data")
    try:
        return json.dumps(data, allow_nan=False)
    except ValueError:
        from sync.telemetry import finite

        return json.dumps(finite(data)[0], allow_nan=False)


def _migrate(db: sqlite3.Connection, path: Path) -> None:
    """Rebuild the tables of a database made before the store was part of their keys (same rows, gaps get the store
    of their mark)."""
    row = db.execute("SELECT sql FROM sqlite_master WHERE type='table' AND name='marks'").fetchone()
    if row is None or "PRIMARY KEY (store, device, epoch)" in row[0]:
        return
    log.warning("%s: keying events, telemetry, gaps and marks by store too (once)", path)
    tables = ("events", "telemetry", "gaps", "marks")
    db.execute("BEGIN IMMEDIATE")
    try:
        for t in tables:
            db.execute(f"ALTER TABLE {t} RENAME TO {t}_unkeyed")
        db.execute("DROP INDEX IF EXISTS events_event_id")
        for stmt in _KEYED.split(";"):
            if stmt.strip():
                db.execute(stmt)
        # in rowid order: _load_marks takes the newest epoch last
        db.execute("INSERT INTO events SELECT * FROM events_unkeyed ORDER BY rowid")
        db.execute("INSERT INTO telemetry SELECT * FROM telemetry_unkeyed ORDER BY rowid")
        db.execute("INSERT INTO marks SELECT * FROM marks_unkeyed ORDER BY rowid")
        db.execute("INSERT INTO gaps SELECT g.device, g.epoch, g.seq_from, g.seq_to, g.reason, g.received_ts, "
                   "COALESCE((SELECT m.store FROM marks_unkeyed m WHERE m.device = g.device AND m.epoch = g.epoch), '') "
                   "FROM gaps_unkeyed g ORDER BY g.rowid")
        for t in ("events", "telemetry"):  # ids keep counting from the old counter: `edge sync tail -f` reads id > last
            hi = db.execute("SELECT MAX(seq) FROM sqlite_sequence WHERE name IN (?, ?)", (t, f"{t}_unkeyed")).fetchone()[0]
            db.execute("DELETE FROM sqlite_sequence WHERE name = ?", (t,))
            if hi is not None:
                db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (t, hi))
        for t in tables:
            db.execute(f"DROP TABLE {t}_unkeyed")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
