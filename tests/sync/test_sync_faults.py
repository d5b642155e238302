"""Fault tests against a real mosquitto: broker kill -9, device kill -9, consumer offline, broker stopped.

Each asserts that every emitted event reached the consumer's store exactly once (0 lost, duplicates removed).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from edge.core.events import Event
from sync.consumer import summary
from sync.service import SyncService

from sync_helpers import device_settings, start_consumer, wait_until

pytestmark = pytest.mark.slow


class Producer(threading.Thread):
    """Emits `total` numbered events at `rate`/s (every 10th an alert)."""

    def __init__(self, outbox, total: int, rate: float) -> None:
        super().__init__(daemon=True)
        self.outbox, self.total, self.rate, self.emitted = outbox, total, rate, 0

    def run(self) -> None:
        t0 = time.monotonic()
        for i in range(1, self.total + 1):
            d = t0 + i / self.rate - time.monotonic()
            if d > 0:
                time.sleep(d)
            stream = "alerts" if i % 10 == 0 else "events"
            self.outbox.emit(Event("shelf_empty" if stream == "alerts" else "person_entered", {"i": i}, stream=stream))
            self.emitted = i


def assert_all_delivered(consumer, db, device: str, total: int) -> dict:
    assert wait_until(lambda: consumer.watermark(device) >= total, 30), (consumer.watermark(device), consumer.stats)
    seqs = consumer.seqs(device)
    assert seqs == list(range(1, total + 1)), f"lost: {sorted(set(range(1, total + 1)) - set(seqs))[:20]}"
    s = summary(db, device)
    assert s["stored"] == total and s["distinct_event_ids"] == total
    assert s["duplicates_after_dedup"] == 0
    assert s["received"] == total + s["duplicates_removed"]
    return s


def test_broker_kill9_mid_stream_and_restart(broker, tmp_path):
    db = tmp_path / "cloud.db"
    consumer = start_consumer(broker.port, db)
    svc = SyncService(*device_settings(broker.port, tmp_path / "outbox.db"))
    svc.start()
    prod = Producer(svc.outbox, 3000, 1000)
    prod.start()
    try:
        assert wait_until(lambda: consumer.stats["stored"] >= 800, 10)
        broker.kill()  # SIGKILL: the broker loses what it accepted since its last autosave
        time.sleep(0.5)
        broker.start()
        prod.join(10)
        assert prod.emitted == 3000
        s = assert_all_delivered(consumer, db, "d001", 3000)
        assert wait_until(lambda: sum(svc.outbox.depth().values()) == 0, 10), svc.metrics()
        print("broker kill -9:", s, svc.metrics()["go_backs"])
    finally:
        svc.stop()
        consumer.stop()


def _devsim(broker, outbox, total, rate):
    cmd = [sys.executable, "-m", "devtools.devsim", "--port", str(broker.port), "--outbox", str(outbox),
           "--total", str(total), "--rate", str(rate), "--timeout-s", "30",
           "--sync", json.dumps({"ack_timeout_s": 1.5, "reconnect_min_s": 0.1, "reconnect_max_s": 0.5})]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=os.getcwd())


def test_device_kill9_mid_stream_and_restart(broker, tmp_path):
    db = tmp_path / "cloud.db"
    consumer = start_consumer(broker.port, db)
    outbox = tmp_path / "outbox.db"
    try:
        dev = _devsim(broker, outbox, 2000, 1000)
        assert wait_until(lambda: consumer.stats["stored"] >= 500, 20), consumer.stats
        dev.send_signal(signal.SIGKILL)
        dev.wait(5)
        dev.stdout.close()
        dev = _devsim(broker, outbox, 2000, 1000)
        out, _ = dev.communicate(timeout=60)
        assert dev.returncode == 0, out
        first = json.loads(out.splitlines()[0])
        assert 500 <= first["resumed_at"] < 2000  # it really died mid-stream and resumed from its outbox
        s = assert_all_delivered(consumer, db, "d001", 2000)
        print("device kill -9:", s)
    finally:
        consumer.stop()


def test_consumer_offline_during_broker_outage(broker, tmp_path):
    db = tmp_path / "cloud.db"
    consumer = start_consumer(broker.port, db)  # its persistent session now exists at the broker
    svc = SyncService(*device_settings(broker.port, tmp_path / "outbox.db"))
    svc.start()
    prod = Producer(svc.outbox, 2000, 800)
    prod.start()
    try:
        assert wait_until(lambda: consumer.stats["stored"] >= 300, 10)
        consumer.stop()  # the cloud goes away...
        time.sleep(0.3)
        broker.stop()  # ...then the broker (SIGTERM: saves sessions)
        time.sleep(1.0)
        broker.start()
        prod.join(10)
        time.sleep(1.0)  # the device flushes its backlog into the consumer's offline session
        assert svc.metrics()["depth"]["events"] > 0  # nothing is deleted without the cloud's ack
        consumer = start_consumer(broker.port, db)
        s = assert_all_delivered(consumer, db, "d001", 2000)
        assert wait_until(lambda: sum(svc.outbox.depth().values()) == 0, 10), svc.metrics()
        print("consumer offline + outage:", s)
    finally:
        svc.stop()
        consumer.stop()


def test_broker_stopped_n_seconds_backlog_is_paced_and_historical(broker, tmp_path):
    db = tmp_path / "cloud.db"
    consumer = start_consumer(broker.port, db)
    rate_limit = 1000.0
    svc = SyncService(*device_settings(broker.port, tmp_path / "outbox.db", backlog_rate=rate_limit))
    svc.start()
    prod = Producer(svc.outbox, 3000, 1000)
    prod.start()
    try:
        assert wait_until(lambda: consumer.stats["stored"] >= 300, 10)
        broker.stop()
        down = 2.0
        time.sleep(down)
        backlog = svc.metrics()["depth"]
        assert backlog["events"] + backlog["alerts"] >= 1000  # ~2 s of events waited in the outbox
        broker.start()
        prod.join(10)
        s = assert_all_delivered(consumer, db, "d001", 3000)
        assert s["historical"] >= 1000
        # The backlog flush is paced: historical records arrived no faster than backlog_rate (+ one burst).
        import sqlite3
        with sqlite3.connect(db) as c:
            n, t0, t1 = c.execute("SELECT COUNT(*), MIN(received_ts), MAX(received_ts) FROM events "
                                  "WHERE historical=1").fetchone()
        assert (t1 - t0) >= (n - rate_limit * 0.25 - 100) / rate_limit * 0.9, (n, t1 - t0)
        print("broker stopped", down, "s:", s, "historical flush", n, "in", round(t1 - t0, 2), "s")
    finally:
        svc.stop()
        consumer.stop()


def test_a_long_consumer_outage_resends_a_window_per_go_back_not_the_backlog(broker, tmp_path):
    """The consumer is away (its persistent session queues what the broker PUBACKs): each go-back for the stalled
    watermark resends one window (window x batch_max rows) from it, not the whole backlog again, and once the
    consumer is back every event arrives exactly once."""
    db = tmp_path / "cloud.db"
    consumer = start_consumer(broker.port, db)  # its persistent session now exists at the broker
    consumer.stop()
    svc = SyncService(*device_settings(broker.port, tmp_path / "outbox.db", ack_timeout_s=0.3, window=5,
                                       batch_max=20))
    svc.start()
    try:
        prod = Producer(svc.outbox, 3000, 5000)
        prod.start()
        prod.join(10)
        time.sleep(8.0)  # go-backs at about 0.3, 0.9, 2.1, 4.5 and 9.3 s of stall (doubling, capped at 16x)
        st = svc.delivery.stats
        assert st["go_backs"] >= 3, st
        assert st["historical"] <= st["go_backs"] * 5 * 20, st  # 100 rows per go-back (3000 each before)
        consumer = start_consumer(broker.port, db)
        assert_all_delivered(consumer, db, "d001", 3000)
    finally:
        svc.stop()
        consumer.stop()
