"""Review of the outbox, the ack-watermark delivery and the reference consumer (stop 38): each test reproduces a
bug found in review, against a real mosquitto where the network is involved."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from edge.core.events import Event
from edge.privacy import guard
from sync import outbox as outbox_mod
from sync import topics
from sync.delivery import Delivery
from sync.outbox import RELIABLE, Outbox
from sync.payloads import GAP_KIND
from sync.service import SyncService

from sync_helpers import device_settings, start_consumer, wait_until
from test_sync_faults import assert_all_delivered
from test_sync_outbox_disk_full import fill_disk, free_disk


def test_rows_lost_beyond_the_go_back_window_are_resent_on_an_idle_device(broker, tmp_path):
    """The broker drops every batch (no consumer session yet: PUBACK 0x10), so the cloud must get all of them from
    go-backs. A go-back resends one window (here 2 x 5 rows); once that window is acked nothing sent is awaiting a
    PUBACK or an ack in the delivery's books, yet 50 rows above the watermark never reached the cloud. Before the
    fix no further go-back came (the device makes no new events) and the watermark stayed at 10 for good."""
    svc = SyncService(*device_settings(broker.port, tmp_path / "outbox.db", ack_timeout_s=0.3, window=2,
                                       batch_max=5))
    svc.start()
    consumer = None
    try:
        assert svc.client.wait_connected(5)
        for i in range(60):
            svc.outbox.emit(Event("person_entered", {"i": i}))
        m = svc.delivery.metrics
        assert wait_until(lambda: m()["sent"] >= 60 and m()["inflight_messages"] == 0, 10), m()
        consumer = start_consumer(broker.port, tmp_path / "cloud.db")
        assert_all_delivered(consumer, tmp_path / "cloud.db", "d001", 60)
        assert wait_until(lambda: sum(svc.outbox.depth().values()) == 0, 10), svc.metrics()
    finally:
        svc.stop()
        if consumer is not None:
            consumer.stop()


def _connected_delivery(ob: Outbox) -> tuple[Delivery, list[list[int]]]:
    """A Delivery of `ob`, connected, whose publishes are recorded (the seqs of each message) instead of sent."""
    published: list[list[int]] = []

    def publish(topic: str, payload: bytes) -> int:
        published.append([r["seq"] for r in json.loads(payload)["events"]])
        return len(published)

    d = Delivery(ob, topics.DeviceTopics("s1", "d1"), publish, ack_wait_s=0)
    d.notify_connected()
    d._drain_notes()
    return d, published


def test_a_record_refused_before_its_publish_has_its_gap_record_sent_at_once(tmp_path, monkeypatch):
    """The privacy guard refuses the newest record while it is sent live: its gap record (same seq) must go out
    with the next fill, not wait for a go-back (which also resends a window of duplicates), or forever when no
    other row is awaiting an ack."""
    monkeypatch.setattr(guard, "_last_record", {})  # the guard's once-a-minute record: other tests' stays as it was
    with Outbox(tmp_path / "o.db") as ob:
        d, published = _connected_delivery(ob)
        ob.emit(Event("person_entered", {"i": 1}))
        ob.emit(Event("person_entered", {"crop": "0,0,10,10"}))  # image data: never published
        d._fill_window()
        assert published[0] == [1] and d.stats["privacy_refused"] == 1
        assert [(r[0], r[2]) for r in ob.fetch(RELIABLE, 1, 10)] == [(2, GAP_KIND)]
        time.sleep(0.05)  # the gap record goes out as backlog (paced): let tokens accrue
        d._fill_window()
        assert published == [[1], [2]], published
        assert d.stats["go_backs"] == 0
        for mid, _ in enumerate(published, 1):
            d.notify_puback(mid, 0)
        d.notify_ack(ob.epoch, 2)
        d._drain_notes()
        assert d.stats["acks_refused"] == 0 and d.watermark == 2 and sum(ob.depth().values()) == 0


def test_an_invalid_event_on_a_full_disk_does_not_raise_into_the_runtime(tmp_path):
    """emit() never raises for a store error: an invalid event (too large) whose dead-letter record the full disk
    does not take is logged and counted as a store error, and the next valid events wait in memory as usual."""
    with Outbox(tmp_path / "o.db") as ob:
        ob.emit(Event("person_entered", {"i": 0}))
        fill_disk(ob, 0)
        assert ob.emit(Event("person_entered", {"note": "a shopper waited at the kiosk " * 3000})) is None
        m = ob.metrics()
        assert m["store_errors"] == 1 and m["dead_lettered"] == 0, m
        assert ob.emit(Event("person_entered", {"i": 1, "note": "a shopper waited at the kiosk " * 1000})) is None
        assert ob.metrics()["waiting_in_memory"] == 1
        free_disk(ob)
        assert ob.retry_spill() == 0 and [r[0] for r in ob.fetch(RELIABLE, 0, 10)] == [1, 2]


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_outbox_is_moved_aside_and_the_device_starts_with_a_new_one(tmp_path, caplog, damage):
    """A corrupt outbox file at start used to stop the device with a bare `sqlite3.DatabaseError` (no path, no fix),
    at every restart. It is moved aside intact (never deleted: its events can be recovered), the error log names
    it, and a new outbox (new epoch, so the cloud does not take its seqs for duplicates) takes events."""
    path = tmp_path / "outbox.db"
    with Outbox(path) as ob:
        old_epoch = ob.epoch
        for i in range(3000):
            ob.emit(Event("person_entered", {"i": i, "note": "a shopper waited at the kiosk"}))
        ob.compact(vacuum=False)
    if damage == "garbage":
        path.write_bytes(b"\x00not an sqlite database\xff" * 300)
    else:  # cut in the middle of the table's pages (a copy or a disk that lost its tail)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    damaged = path.read_bytes()
    with caplog.at_level(logging.ERROR, logger="sync.outbox"), Outbox(path) as ob:
        moved = ob.metrics()["quarantined"]
        assert moved and Path(moved).read_bytes() == damaged and Path(moved).parent == tmp_path
        assert ob.epoch != old_epoch and sum(ob.depth().values()) == 0
        assert ob.emit(Event("person_entered", {"i": 1})) == 1
    assert str(path) in caplog.text and moved in caplog.text and ".recover" in caplog.text
    with Outbox(path) as ob:  # the new one is healthy: nothing moved again
        assert ob.metrics()["quarantined"] is None and ob.depth()["events"] == 1


def test_the_consumer_acks_only_the_device_s_current_epoch(broker, tmp_path):
    """A device whose outbox was replaced (new epoch) must not be sent acks of its old epoch: it refuses them as
    forged or misrouted (`acks_refused`, a warning). The consumer used to publish the ack of every epoch it ever
    saw after each restart or reconnect of its own (all marks dirty), and the retained ack could end on an old one."""
    db = tmp_path / "cloud.db"
    consumer = start_consumer(broker.port, db)
    svc = None
    try:
        for n, name in enumerate(("old.db", "new.db")):  # the same device d001, its outbox replaced
            svc = SyncService(*device_settings(broker.port, tmp_path / name))
            svc.start()
            for i in range(5):
                svc.outbox.emit(Event("person_entered", {"i": i, "outbox": name}))
            assert wait_until(lambda: sum(svc.outbox.depth().values()) == 0, 10), svc.metrics()
            if n == 0:
                svc.stop()
        refused = svc.delivery.stats["acks_refused"]  # the old epoch's retained ack, refused once at the start
        consumer.stop()
        consumer = start_consumer(broker.port, db)  # a restart: every mark is loaded (dirty)
        assert wait_until(lambda: consumer.stats["acks_published"] >= 1, 5)
        broker.stop()  # a reconnect of both; the device gets the retained ack again
        broker.start()
        assert wait_until(lambda: consumer.stats["acks_published"] >= 2 and svc.client.connected, 10), consumer.stats
        time.sleep(0.5)
        assert svc.delivery.stats["acks_refused"] == refused, svc.delivery.stats["last_ack_refused"]
    finally:
        if svc is not None:
            svc.stop()
        consumer.stop()


def test_events_dropped_from_memory_on_a_full_disk_are_logged(tmp_path, monkeypatch, caplog):
    """Beyond SPILL_MAX events waiting in memory the oldest go (they have no seq, so no gap record can tell the
    cloud): that must be said in the log, not only counted. It was silent (the store-error line says events wait)."""
    monkeypatch.setattr(outbox_mod, "SPILL_MAX", 20)
    with caplog.at_level(logging.ERROR, logger="sync.outbox"), Outbox(tmp_path / "o.db") as ob:
        fill_disk(ob, 0)
        for i in range(200):
            ob.emit(Event("person_entered", {"i": i, "note": "a shopper waited at the kiosk " * 40}))
        assert ob.metrics()["dropped"]["events"] > 100
    lines = [r.getMessage() for r in caplog.records if "the oldest events are dropped" in r.getMessage()]
    assert len(lines) == 1, lines  # once a minute, not per event


def test_a_batch_the_broker_refused_for_now_is_sent_again_on_an_idle_device(tmp_path):
    """A PUBACK failure that is not permanent (0x97 quota exceeded) says "will resend", but for events nothing did:
    the rows were in no set that starts a go-back, so an idle device kept them undelivered for good."""
    with Outbox(tmp_path / "o.db") as ob:
        published: list[list[int]] = []

        def publish(topic: str, payload: bytes) -> int:
            published.append([r["seq"] for r in json.loads(payload)["events"]])
            return len(published)

        d = Delivery(ob, topics.DeviceTopics("s1", "d1"), publish, ack_wait_s=0, ack_timeout_s=0.05)
        d.notify_connected()
        d._drain_notes()
        ob.emit(Event("person_entered", {"i": 1}))
        d._fill_window()
        d.notify_puback(1, 0x97, "Quota exceeded")
        d._drain_notes()
        time.sleep(0.1)
        d._check_goback()
        d._fill_window()
        assert published == [[1], [1]] and d.stats["go_backs"] == 1, published


def test_edge_sync_outbox_reports_a_corrupt_or_missing_file_and_changes_nothing(tmp_path):
    """`edge sync outbox PATH` is an inspection: a corrupt file is named with the way to recover it and left where
    it is (only `edge run` moves a corrupt outbox aside); a missing path is an error, not a new empty outbox."""
    import subprocess
    import sys

    bad = tmp_path / "outbox.db"
    bad.write_bytes(b"\x00not an sqlite database\xff" * 300)
    r = subprocess.run([sys.executable, "-m", "edge.app.cli", "sync", "outbox", str(bad)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and str(bad) in r.stderr and ".recover" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outbox.db"]
    missing = tmp_path / "nope.db"
    r = subprocess.run([sys.executable, "-m", "edge.app.cli", "sync", "outbox", str(missing)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and str(missing) in r.stderr and "outbox_path" in r.stderr
    assert not missing.exists()


def test_a_moved_aside_outbox_shows_on_metrics(tmp_path):
    """The moved-aside outbox is visible on /metrics (`edge_outbox_quarantined` 1), not only in one log line."""
    from prometheus_client import CollectorRegistry, generate_latest

    from edge.core.metrics import SyncCollector

    path = tmp_path / "outbox.db"
    path.write_bytes(b"\x00not an sqlite database\xff" * 300)
    svc = SyncService(*device_settings(1, path, broker=""))
    svc.outbox.open()
    try:
        registry = CollectorRegistry()
        registry.register(SyncCollector(svc))
        text = generate_latest(registry).decode()
        assert "edge_outbox_quarantined 1.0" in text, text
    finally:
        svc.outbox.close()
    svc = SyncService(*device_settings(1, path, broker=""))
    svc.outbox.open()
    try:
        registry = CollectorRegistry()
        registry.register(SyncCollector(svc))
        assert "edge_outbox_quarantined 0.0" in generate_latest(registry).decode()
    finally:
        svc.outbox.close()


def test_the_consumer_acks_two_stores_devices_of_the_same_id(broker, tmp_path):
    """Two stores each with a `mirror-01` (the default client id `<store>/<device>` lets them share a broker): the
    consumer kept one "current epoch" per device id, so whichever device's batch came first in an ack tick lost its
    ack until its go-back timeout (here 60 s). Now each (store, device) has its own: both outboxes drain at once."""
    consumer = start_consumer(broker.port, tmp_path / "cloud.db")
    devs = [SyncService(*device_settings(broker.port, tmp_path / f"{store}.db", device="mirror-01", store=store,
                                         ack_timeout_s=60)) for store in ("s1", "s2")]
    try:
        for d in devs:
            d.start()
        assert all(d.client.wait_connected(5) for d in devs)
        for i in range(5):  # both send in the same ack tick, in turn
            for d in devs:
                d.outbox.emit(Event("person_entered", {"i": i}))
            time.sleep(0.3)
        assert wait_until(lambda: all(sum(d.outbox.depth().values()) == 0 for d in devs), 10), \
            [d.metrics() for d in devs]
        assert [d.metrics()["go_backs"] for d in devs] == [0, 0]
    finally:
        for d in devs:
            d.stop()
        consumer.stop()


def test_a_refused_record_puts_back_only_its_own_seq_after_a_finished_backlog(tmp_path, monkeypatch):
    """With no backlog pending, a record refused before its publish puts back only its own seq: merging it with the
    finished backlog's old start (the connect-time watermark) made the backlog every row since then, all of them
    resent whenever they were neither in flight nor PUBACKed (after a go-back: a flood the go-back window avoids)."""
    monkeypatch.setattr(guard, "_last_record", {})
    with Outbox(tmp_path / "o.db") as ob:
        d, published = _connected_delivery(ob)
        for i in range(3):
            ob.emit(Event("person_entered", {"i": i}))
        d._fill_window()
        ob.emit(Event("person_entered", {"crop": "0,0,10,10"}))  # image data: refused, a gap record takes seq 4
        d.backlog_rate, d._tokens = 0.0, 0.0  # the backlog waits: what it holds can be seen
        d._fill_window()
        assert published == [[1, 2, 3]] and (d._hist_next, d._hist_end) == (4, 5)
        d.backlog_rate = 2000.0
        time.sleep(0.05)
        d._fill_window()
        assert published == [[1, 2, 3], [4]]
