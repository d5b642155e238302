"""A full disk loses nothing: `Outbox.emit` never raises into the runtime, events and alerts wait in memory in
order until the disk takes them, and then reach a real mosquitto and the reference consumer exactly once.

The disk is filled for real: SQLite's own limit on the database's pages (`PRAGMA max_page_count`) makes every
insert fail with SQLITE_FULL ("database or disk is full"), the error a full file system gives."""
from __future__ import annotations

import json

import pytest

from edge.core.events import Event
from sync import outbox as outbox_mod
from sync.outbox import Outbox
from sync.service import SyncService

from sync_helpers import device_settings, start_consumer, wait_until
from test_sync_faults import assert_all_delivered


def fill_disk(ob: Outbox, spare_pages: int = 2) -> None:
    """Let the database grow by only `spare_pages` more pages."""
    with ob._lock:
        n = ob.db.execute("PRAGMA page_count").fetchone()[0]
        ob.db.execute(f"PRAGMA max_page_count={n + spare_pages}")


def free_disk(ob: Outbox) -> None:
    with ob._lock:
        ob.db.execute("PRAGMA max_page_count=1073741823")


def emit_numbered(ob: Outbox, first: int, last: int) -> list:
    """Emit events first..last (every 10th an alert, each with a telemetry sample); returns emit's results."""
    out = []
    for i in range(first, last + 1):
        stream = "alerts" if i % 10 == 0 else "events"
        out.append(ob.emit(Event("shelf_empty" if stream == "alerts" else "person_entered", {"i": i, "note": "a shopper waited at the kiosk " * 12},
                                 stream=stream)))
        ob.emit(Event("frame_stats", {"i": i}, stream="telemetry"))
    return out


def test_a_full_disk_keeps_events_in_memory_in_order(tmp_path):
    with Outbox(tmp_path / "outbox.db") as ob:
        emit_numbered(ob, 1, 5)
        fill_disk(ob)
        got = emit_numbered(ob, 6, 300)  # never raises
        m = ob.metrics()
        assert None in got and m["waiting_in_memory"] > 200 and m["store_errors"] > 0, m
        assert m["dropped"]["telemetry"] > 0 and m["dropped"]["events"] == 0 and m["dropped"]["alerts"] == 0
        assert ob.retry_spill() == m["waiting_in_memory"]  # still full: nothing moves, nothing is lost
        free_disk(ob)
        assert ob.retry_spill() == 0
        rows = ob.fetch("reliable", 0, 1000)
        assert [json.loads(r[3])["data"]["i"] for r in rows] == list(range(1, 301))  # every one, in order
        assert [r[0] for r in rows] == list(range(1, 301))
        assert ob.metrics()["waiting_in_memory"] == 0


def test_beyond_the_memory_cap_the_oldest_events_go_never_alerts(tmp_path, monkeypatch):
    monkeypatch.setattr(outbox_mod, "SPILL_MAX", 50)
    with Outbox(tmp_path / "outbox.db") as ob:
        fill_disk(ob, 0)
        emit_numbered(ob, 1, 200)
        m = ob.metrics()
        stored = sum(m["depth"][k] for k in ("events", "alerts"))  # before the last free page was used
        assert m["waiting_in_memory"] == 50 and m["dropped"]["alerts"] == 0
        assert stored + 50 + m["dropped"]["events"] == 200 and m["dropped"]["events"] > 100
        free_disk(ob)
        ob.retry_spill()
        kept = [json.loads(r[3])["data"]["i"] for r in ob.fetch("reliable", 0, 1000)]
        assert all(i in kept for i in range(10, 201, 10))  # all 20 alerts
        assert kept == sorted(kept) and len(kept) == stored + 50


@pytest.mark.slow
def test_a_full_disk_on_a_live_device_loses_nothing(broker, tmp_path):
    """Disk full mid-stream on a connected device: emit never raises, the delivery loop stores what waited as
    soon as the disk has room, and the consumer gets every event once, in seq order."""
    db = tmp_path / "cloud.db"
    consumer = start_consumer(broker.port, db)
    svc = SyncService(*device_settings(broker.port, tmp_path / "outbox.db"))
    svc.start()
    try:
        emit_numbered(svc.outbox, 1, 100)
        fill_disk(svc.outbox)
        emit_numbered(svc.outbox, 101, 400)
        assert svc.outbox.metrics()["waiting_in_memory"] > 0
        assert wait_until(lambda: consumer.watermark("d001") >= 100, 20), consumer.stats
        free_disk(svc.outbox)  # the delivery loop retries within a second
        assert wait_until(lambda: svc.outbox.metrics()["waiting_in_memory"] == 0, 10), svc.outbox.metrics()
        assert_all_delivered(consumer, db, "d001", 400)
    finally:
        svc.stop()
        consumer.stop()
