"""Review of the wire format and the reference cloud consumer (stop 40): topics, payload parsing of untrusted
input, the ack watermark per store, and the telemetry schedule. Each test reproduces a bug found in review."""
from __future__ import annotations

import json
import os
import threading
import time
from types import SimpleNamespace

import pytest

from edge.core.events import Event
from sync import payloads, topics
from sync.client import ClientOptions
from sync.consumer import Consumer
from sync.service import SyncService
from sync.telemetry import TelemetryLoop

from sync_helpers import device_settings, start_consumer, wait_until


def _msg(topic, payload):
    return SimpleNamespace(topic=topic, payload=payload, properties=None, retain=False)


def _offline_consumer(db) -> Consumer:
    return Consumer(ClientOptions("127.0.0.1", 1), db)


def _close(c: Consumer) -> None:
    c.client.paho.loop_stop()
    c.db.close()


def _body(i: int, event_id: str) -> str:
    return payloads.event_body("person_entered", "events", 0.0, event_id, {"i": i}, max_bytes=1000)


# ---------------------------------------------------------------- same device id in two stores
def test_two_stores_devices_with_the_same_id_and_a_cloned_outbox_are_kept_apart(tmp_path):
    """Two stores each have a `d001` (ids are per store) flashed from one image that carried an outbox, so both
    send under the same epoch. The consumer keyed its dedupe and watermark by (device, epoch) only: the second
    store's events were dropped as duplicates of the first's (lost in the cloud) while its seqs moved the first
    store's watermark. Each store's device must be stored and acked on its own."""
    c = _offline_consumer(tmp_path / "c.db")
    try:
        for store in ("s001", "s002"):
            recs = [(s, _body(s, f"{store}-{s}")) for s in (1, 2, 3)]
            c._on_message(_msg(topics.DeviceTopics(store, "d001").events("person_entered"),
                               payloads.batch("d001", store, "cloned0epoch0000", recs, False)))
        stored = c.db.execute("SELECT store, seq, event_id FROM events ORDER BY store, seq").fetchall()
        assert stored == [(st, s, f"{st}-{s}") for st in ("s001", "s002") for s in (1, 2, 3)]
        assert c.stats["duplicates"] == 0
        assert c.watermark("d001", store="s001") == 3 and c.watermark("d001", store="s002") == 3
        # s001's device goes on to seq 5: s002's watermark stays at what s002 sent
        c._on_message(_msg(topics.DeviceTopics("s001", "d001").events("person_entered"),
                           payloads.batch("d001", "s001", "cloned0epoch0000",
                                          [(4, _body(4, "s001-4")), (5, _body(5, "s001-5"))], False)))
        assert c.watermark("d001", store="s001") == 5 and c.watermark("d001", store="s002") == 3
    finally:
        _close(c)
    c2 = _offline_consumer(tmp_path / "c.db")  # after a restart too
    try:
        assert c2.watermark("d001", store="s001") == 5 and c2.watermark("d001", store="s002") == 3
    finally:
        _close(c2)


def test_a_device_moved_to_another_store_with_its_outbox_gets_its_acks(broker, tmp_path):
    """A kiosk that moves to another store (or whose mistyped store id is corrected) keeps its id and outbox, so
    its epoch. The consumer's mark for (device, epoch) still named the first store and published every ack on
    that store's topic: the device in its new store never got one and never deleted a row again."""
    consumer = start_consumer(broker.port, tmp_path / "cloud.db")
    outbox = tmp_path / "outbox.db"
    svc = None
    try:
        for store in ("s001", "s002"):
            svc = SyncService(*device_settings(broker.port, outbox, store=store))
            svc.start()
            for i in range(5):
                svc.outbox.emit(Event("person_entered", {"i": i, "store": store}))
            assert wait_until(lambda: sum(svc.outbox.depth().values()) == 0, 10), (store, svc.metrics())
            svc.stop()
            svc = None
        assert consumer.watermark("d001", store="s002") == 10
    finally:
        if svc is not None:
            svc.stop()
        consumer.stop()


# ---------------------------------------------------------------- gaps
def test_a_gap_of_ten_million_seqs_moves_the_watermark(tmp_path):
    """A retention or budget gap record covering 10 M seqs or more (a large `max_outbox_mb` after a long outage)
    was silently skipped by the consumer (a leftover cap from when gaps were expanded into seqs): the watermark
    stopped before it for good and the device resent the gap at every go-back."""
    c = _offline_consumer(tmp_path / "c.db")
    try:
        t = topics.DeviceTopics("s1", "d1")
        gap = payloads.dumps({"event_id": "g", "kind": "_gap", "stream": "events", "ts": 0,
                              "data": {"to": 10_000_001, "reason": "retention"}})
        c._on_message(_msg(t.events("x"), payloads.batch("d1", "s1", "ep", [(1, _body(1, "e1")), (2, gap)], False)))
        assert c.stats["bad"] == 0 and c.watermark("d1") == 10_000_001
        assert c.db.execute("SELECT seq_from, seq_to FROM gaps").fetchall() == [(2, 10_000_001)]
    finally:
        _close(c)


# ---------------------------------------------------------------- untrusted payloads
def test_non_finite_numbers_are_stored_as_valid_json(tmp_path):
    """`1e400` is valid JSON that Python reads as infinity (and `NaN` is read too); the consumer stored the data as
    `Infinity` / `NaN`, which is not JSON: SQLite's json_extract (and any strict reader) fails on the row, for the
    whole query. They are stored as null, as the device sends non-finite telemetry."""
    c = _offline_consumer(tmp_path / "c.db")
    try:
        t = topics.DeviceTopics("s1", "d1")
        raw = (b'{"v":1,"device":"d1","store":"s1","epoch":"ep","events":['
               b'{"seq":1,"event_id":"a","kind":"k","data":{"x":1e400,"y":[-1e400,2]}},'
               b'{"seq":2,"event_id":"b","kind":"k","data":{"x":NaN}}]}')
        c._on_message(_msg(t.events("k"), raw))
        c._on_message(_msg(t.telemetry, raw))
        for table in ("events", "telemetry"):
            rows = c.db.execute(f"SELECT json_valid(data), json_extract(data, '$.x') FROM {table} ORDER BY seq")
            assert rows.fetchall() == [(1, None), (1, None)], table
        assert json.loads(c.db.execute("SELECT data FROM events WHERE seq=1").fetchone()[0]) == {"x": None,
                                                                                                  "y": [None, 2]}
        assert c.watermark("d1") == 2
    finally:
        _close(c)


@pytest.mark.parametrize("raw", [
    # a gap reason that is not a string: sqlite3 raised ProgrammingError (a traceback, not counted as bad)
    b'{"v":1,"device":"d1","store":"s1","epoch":"bad","events":[{"seq":1,"event_id":"g","kind":"_gap",'
    b'"data":{"to":3,"reason":{"a":1}}}]}',
    # a lone surrogate (not encodable as UTF-8) in the epoch or an event id: UnicodeEncodeError from sqlite3
    b'{"v":1,"device":"d1","store":"s1","epoch":"\\ud800","events":[{"seq":1,"event_id":"a","kind":"k"}]}',
    b'{"v":1,"device":"d1","store":"s1","epoch":"bad","events":[{"seq":1,"event_id":"\\udfff","kind":"k"}]}',
    # an empty epoch, and `v: true` taken for version 1 (True == 1 in Python)
    b'{"v":1,"device":"d1","store":"s1","epoch":"","events":[{"seq":1,"event_id":"a","kind":"k"}]}',
    b'{"v":true,"device":"d1","store":"s1","epoch":"bad","events":[{"seq":1,"event_id":"a","kind":"k"}]}',
    # a later schema version: a v1 consumer cannot know what it means
    b'{"v":2,"device":"d1","store":"s1","epoch":"bad","events":[{"seq":1,"event_id":"a","kind":"k"}]}',
])
def test_an_unstorable_batch_is_refused_as_bad_and_changes_no_ack(tmp_path, raw, caplog):
    """A batch the database cannot take raised out of the handler (a logged traceback, `bad` not counted) after the
    consumer had already made its epoch the device's current one: the next ack went out for that epoch (which the
    device refuses) instead of the real one. Such a batch is refused as bad before anything changes."""
    c = _offline_consumer(tmp_path / "c.db")
    try:
        t = topics.DeviceTopics("s1", "d1")
        c._on_message(_msg(t.events("k"), payloads.batch("d1", "s1", "good", [(1, _body(1, "e1"))], False)))
        c._on_message(_msg(t.events("k"), raw))
        assert c.stats["bad"] == 1
        assert "Traceback" not in caplog.text and not [r for r in caplog.records if r.exc_info]
        assert c._current[("s1", "d1")] == "good"
        assert c.db.execute("SELECT count(*) FROM events").fetchone()[0] == 1
    finally:
        _close(c)


def test_a_device_refuses_an_ack_of_a_later_schema_version():
    """`v` is bumped when a payload's meaning changes; a v1 device took any ack as a v1 watermark and would delete
    rows by what a v2 `upto` means. An ack of another version is not one for it; an ack without `v` still is."""
    assert payloads.parse_ack(payloads.ack("ep", 7)) == ("ep", 7)
    assert payloads.parse_ack(b'{"epoch":"ep","upto":7}') == ("ep", 7)
    assert payloads.parse_ack(b'{"v":2,"epoch":"ep","upto":7}') is None
    assert payloads.parse_ack(b'{"v":true,"epoch":"ep","upto":7}') is None


# ---------------------------------------------------------------- topics
@pytest.mark.parametrize("bad", ["d001\n", "fleet\n"])
def test_ids_and_names_with_a_trailing_newline_are_refused(bad):
    """The id and name patterns ended in `$`, which in Python also matches before a trailing newline: `d001\\n` was
    a valid id (a topic level with a control character, a provisioned CN, a JSON batch header written raw) and
    `fleet\\n` slipped past the reserved-id check."""
    with pytest.raises(ValueError):
        topics.check_id(bad)
    with pytest.raises(ValueError):
        topics.check_name("ping\n")
    assert topics.parse(f"retail/v1/s001/{bad}/events/x") is None
    assert topics.parse("retail/v1/s001/d001/events/x\n") is None
    assert topics.parse("retail/v1/fleet/cmd/ping\n") is None


# ---------------------------------------------------------------- telemetry schedule
def test_telemetry_keeps_its_interval_when_a_sample_takes_time():
    """The loop waited `interval_s` after each sample, so every period grew by the time the sample took (monitor
    summary, disk stat on a busy SD card): 0.2 s of work on a 0.4 s interval sent 2 records where 3 were due. Samples
    now start on a fixed monotonic schedule."""
    starts: list[float] = []

    def slow_extra() -> dict:
        starts.append(time.monotonic())
        time.sleep(0.2)
        return {}

    got = threading.Event()
    loop = TelemetryLoop(lambda ev: got.set(), 0.4, slow_extra, disk_path=os.getcwd())
    loop.start()
    try:
        assert wait_until(lambda: len(starts) >= 4, 5)
    finally:
        assert loop.stop()
    periods = [b - a for a, b in zip(starts, starts[1:])]
    assert got.is_set() and sum(periods) / len(periods) < 0.5, periods


_UNKEYED = """
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, store TEXT NOT NULL,
    epoch TEXT NOT NULL, seq INTEGER NOT NULL, event_id TEXT, kind TEXT, stream TEXT, ts REAL, sent_ts REAL,
    received_ts REAL, historical INTEGER, data TEXT, UNIQUE (device, epoch, seq));
CREATE TABLE telemetry (id INTEGER PRIMARY KEY AUTOINCREMENT, device TEXT NOT NULL, store TEXT,
    epoch TEXT NOT NULL, seq INTEGER NOT NULL, kind TEXT, ts REAL, received_ts REAL, data TEXT,
    UNIQUE (device, epoch, seq));
CREATE TABLE gaps (device TEXT, epoch TEXT, seq_from INTEGER, seq_to INTEGER, reason TEXT,
    received_ts REAL, PRIMARY KEY (device, epoch, seq_from));
CREATE TABLE marks (device TEXT, epoch TEXT, store TEXT, upto INTEGER NOT NULL,
    received INTEGER NOT NULL DEFAULT 0, duplicates INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (device, epoch));
CREATE UNIQUE INDEX events_event_id ON events (device, event_id);
INSERT INTO events (device, store, epoch, seq, event_id, kind, data) VALUES ('d001', 's001', 'ep', 1, 'a', 'k', '{}'),
    ('d001', 's001', 'ep', 2, 'b', 'k', '{}'), ('d001', 's001', 'ep', 9, 'c', 'k', '{}');
INSERT INTO telemetry (device, store, epoch, seq, kind, data) VALUES ('d001', 's001', 'ep', 1, 'health', '{}');
INSERT INTO gaps VALUES ('d001', 'ep', 3, 5, 'disk_budget', 0);
INSERT INTO marks VALUES ('d001', 'ep', 's001', 5, 4, 0);
"""


def test_a_database_of_an_earlier_consumer_is_rekeyed_by_store_keeping_its_rows_and_watermark(tmp_path):
    """The store joined the keys of events, telemetry, gaps and marks; a database made before keeps every row, its
    watermark and pending seqs, and takes the other store's device of the same id and epoch apart from then on."""
    import sqlite3

    db = tmp_path / "c.db"
    con = sqlite3.connect(db)
    con.executescript(_UNKEYED)
    con.execute("INSERT INTO events (id, device, store, epoch, seq, event_id, kind, data) "
                "VALUES (50, 'd001', 's001', 'ep', 50, 'gone', 'k', '{}')")
    con.execute("DELETE FROM events WHERE id = 50")  # the newest row was removed: its id must not come back
    con.commit()
    con.close()
    c = _offline_consumer(db)
    try:
        assert c.db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone() == (50,)
        assert c.watermark("d001", store="s001") == 5
        assert c.db.execute("SELECT count(*) FROM events").fetchone()[0] == 3
        assert c.db.execute("SELECT store, seq_from, seq_to FROM gaps").fetchall() == [("s001", 3, 5)]
        t = topics.DeviceTopics("s001", "d001")
        c._on_message(_msg(t.events("k"), payloads.batch("d001", "s001", "ep", [(s, _body(s, f"e{s}"))
                                                                                 for s in (6, 7, 8)], False)))
        assert c.watermark("d001", store="s001") == 9  # seq 9 was pending in the old database
        other = topics.DeviceTopics("s002", "d001")
        c._on_message(_msg(other.events("k"), payloads.batch("d001", "s002", "ep", [(10, _body(10, "x10"))], False)))
        c._on_message(_msg(other.telemetry, payloads.batch("d001", "s002", "ep", [(1, _body(1, "t1"))], False)))
        assert c.db.execute("SELECT count(*) FROM events WHERE store='s002'").fetchone()[0] == 1
        assert c.db.execute("SELECT count(*) FROM telemetry").fetchone()[0] == 2
        assert c.stats["bad"] == 0 and c.stats["duplicates"] == 0
    finally:
        _close(c)
