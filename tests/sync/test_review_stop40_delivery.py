"""Review of the outbox, the delivery loop, the MQTT client and the reference consumer (stop 40): each test
reproduces a delivery bug found in review, against a real mosquitto."""
from __future__ import annotations

import time

import pytest

from devtools.broker import Broker
from edge.core.events import Event
from sync.client import ClientOptions, MqttClient
from sync.service import SyncService

from sync_helpers import device_settings, start_consumer, wait_until

# mosquitto's per-message payload limit: not advertised in the CONNACK (unlike max_packet_size), refused per PUBLISH
SIZE_LIMIT = "message_size_limit 4096\n"


@pytest.fixture
def limited_broker(tmp_path):
    b = Broker(tmp_path / "limited-broker", extra=SIZE_LIMIT).start()
    yield b
    b.close()


def test_a_puback_packet_too_large_does_not_drop_the_connection(limited_broker):
    """mosquitto 2.0 answers a PUBLISH over its `message_size_limit` with PUBACK 0x95, a code MQTT v5 lists for
    CONNACK and DISCONNECT only. paho 2.2 took it for a malformed packet and closed the connection ("Protocol
    error"), then resent the same message on every reconnect: a reconnect storm that blocked every message behind
    it (logged as a client-id clash), and the delivery never saw the refusal it dead-letters on."""
    acks: list[tuple[int, int]] = []
    c = MqttClient(ClientOptions("127.0.0.1", limited_broker.port, client_id="s001/d001", reconnect_min_s=0.05,
                                 reconnect_max_s=0.2))
    c.on_publish = lambda mid, reason, text: acks.append((mid, reason))
    c.start()
    try:
        assert c.wait_connected(5)
        big = c.publish("retail/v1/s001/d001/events/x", b"{" + b" " * 5000 + b"}")
        small = c.publish("retail/v1/s001/d001/events/x", b"{}")
        assert wait_until(lambda: len(acks) >= 2, 5), (acks, c.last_error)
        assert dict(acks) == {big: 0x95, small: 0x10}
        time.sleep(0.3)
        assert c.connect_count == 1 and c.connected, c.last_error
    finally:
        c.stop()


def test_a_batch_over_the_broker_size_limit_is_split_and_only_the_oversized_record_dead_lettered(limited_broker,
                                                                                                  tmp_path):
    """A batch (up to `batch_bytes`, 64 KiB) over the broker's message size limit was dead-lettered whole on PUBACK
    0x95: every record in it lost (a gap record sent instead), though each fits the broker alone. Now the batch is
    sent again in smaller messages; only a record that alone is too large is dead-lettered."""
    consumer = start_consumer(limited_broker.port, tmp_path / "cloud.db")
    svc = SyncService(*device_settings(limited_broker.port, tmp_path / "outbox.db"))
    svc.start()
    try:
        assert svc.client.wait_connected(5)
        time.sleep(0.2)  # the device's SUBACKs and retained ack: the rows below go out live, in few batches
        for i in range(40):
            svc.outbox.emit(Event("person_entered", {"i": i, "note": "a shopper waited at the kiosk " * 5}))
        svc.outbox.emit(Event("person_entered", {"i": 40, "note": "a shopper waited at the kiosk " * 200}))
        for i in range(41, 50):
            svc.outbox.emit(Event("person_entered", {"i": i}))
        assert wait_until(lambda: sum(svc.outbox.depth().values()) == 0, 15), svc.metrics()
        assert svc.metrics()["dead_lettered"] == 1, svc.outbox.dead_letters()
        assert [r["seq"] for r in svc.outbox.dead_letters()] == [41]
        assert consumer.seqs("d001") == [s for s in range(1, 51) if s != 41]
        assert consumer.watermark("d001") == 50
        assert svc.client.connect_count == 1, svc.metrics()["last_error"]
    finally:
        svc.stop()
        consumer.stop()


@pytest.mark.parametrize("damage", ["truncated body", "not a stream"])
def test_a_corrupt_outbox_row_is_dead_lettered_not_blocking_the_rows_behind_it(broker, tmp_path, damage):
    """A row SQLite returns intact but whose content is damaged (a body cut short: disk or copy damage SQLite has
    no checksum for, a row restored with `.recover`; a stream no topic exists for) blocked delivery for good: its
    body went into the batch raw, the consumer refused the whole batch as bad JSON, and go-backs resent it forever
    (the watermark never passed it, so no row behind it was ever deleted); a bad stream raised in the delivery
    loop at every fill. The row is now dead-lettered (a gap record in its place) and the rest is delivered."""
    path = tmp_path / "outbox.db"
    svc = SyncService(*device_settings(broker.port, path, ack_timeout_s=0.5))
    svc.outbox.open()
    for i in range(10):
        svc.outbox.emit(Event("person_entered", {"i": i}))
    if damage == "truncated body":
        svc.outbox.db.execute("UPDATE reliable SET body = substr(body, 1, length(body) / 2) WHERE seq = 4")
    else:
        svc.outbox.db.execute("UPDATE reliable SET stream = 'bogus' WHERE seq = 4")
    svc.outbox.close()  # the damage is there when the device starts
    consumer = start_consumer(broker.port, tmp_path / "cloud.db")
    svc.start()
    try:
        assert wait_until(lambda: sum(svc.outbox.depth().values()) == 0, 10), svc.metrics()
        assert consumer.seqs("d001") == [1, 2, 3, 5, 6, 7, 8, 9, 10] and consumer.watermark("d001") == 10
        assert consumer.stats["bad"] == 0
        assert [r["seq"] for r in svc.outbox.dead_letters()] == [4]
    finally:
        svc.stop()
        consumer.stop()


def test_a_publish_over_the_broker_maximum_packet_size_is_refused_not_a_reconnect_storm(tmp_path):
    """A publish larger than the MaximumPacketSize the broker announced in its CONNACK (a large command result, a
    state with big fields) made mosquitto close the connection; paho resent it on every reconnect, forever (logged
    as a client-id clash), and nothing else got through. The client now refuses it at once, with the reason."""
    b = Broker(tmp_path / "broker", extra="max_packet_size 4096\n").start()
    acks: list[tuple[int, int]] = []
    c = MqttClient(ClientOptions("127.0.0.1", b.port, client_id="s001/d001", reconnect_min_s=0.05,
                                 reconnect_max_s=0.2))
    c.on_publish = lambda mid, reason, text: acks.append((mid, reason))
    c.start()
    try:
        assert c.wait_connected(5) and c.server_max_packet == 4096
        assert c.publish("retail/v1/s001/d001/cmd_result/x", b"{" + b" " * 5000 + b"}") is None
        assert "4096" in c.last_error and "too large" in c.last_error, c.last_error
        small = c.publish("retail/v1/s001/d001/cmd_result/x", b"{}")
        assert wait_until(lambda: acks, 5) and acks == [(small, 0x10)]
        time.sleep(0.3)
        assert c.connect_count == 1 and c.connected, c.last_error
    finally:
        c.stop()
        b.close()


def test_dead_letters_stay_under_a_tenth_of_the_budget_oldest_first(tmp_path):
    """A broker that refuses every publish (a wrong ACL: PUBACK 0x87) moves every event to the dead-letter table,
    which sat outside the outbox budget for the whole 30-day history retention: a device left like that for weeks
    filled its disk. Dead letters now stay under max_bytes // 10, the oldest deleted first, counted; a reopened
    outbox knows its dead-letter size."""
    from sync.outbox import DEAD_LETTER_SHARE, RELIABLE, Outbox

    budget = 200_000
    cap = budget // DEAD_LETTER_SHARE
    ob = Outbox(tmp_path / "o.db", max_bytes=budget).open()
    try:
        for batch in range(30):  # 30 refused batches of 10 events of ~400 bytes: 120 kB of dead letters
            seqs = [ob.emit(Event("shelf_touch", {"n": batch * 10 + i, "pad": "x" * 380})) for i in range(10)]
            assert ob.dead_letter(RELIABLE, seqs, "PUBACK 0x87 not authorized") == 10
        with ob._lock:
            size, oldest, newest = ob.db.execute("SELECT SUM(length(body)), MIN(id), MAX(id) FROM dead_letter "
                                                 "WHERE kind != '_gap'").fetchone()
        assert size <= cap
        kept = [d for d in ob.dead_letters(1000) if d["kind"] == "shelf_touch"]
        assert ob.metrics()["dead_letters_dropped"] > 0
        assert len(kept) + ob.metrics()["dead_letters_dropped"] >= 300 - 10  # gap rows may be dead-lettered too
        assert max(d["seq"] for d in kept) == max(d["seq"] for d in ob.dead_letters(1))  # the newest stay
    finally:
        ob.close()
    ob = Outbox(tmp_path / "o.db", max_bytes=budget).open()
    try:
        assert 0 < ob._dead_bytes <= cap
    finally:
        ob.close()


def _recording_delivery(ob, max_packet: int, **kw):
    """A connected Delivery of `ob` whose publishes are recorded (topic, payload) and refused as a client would
    refuse a packet over `max_packet` (None)."""
    import json as _json

    from sync import topics
    from sync.client import packet_size
    from sync.delivery import Delivery

    sent: list[tuple[str, bytes]] = []

    def publish(topic: str, payload: bytes):
        if packet_size(topic, payload) > max_packet:
            return None
        sent.append((topic, payload))
        return len(sent)

    d = Delivery(ob, topics.DeviceTopics("s" * 40, "d" * 60), publish, ack_wait_s=0, **kw)
    d.notify_connected(max_packet)
    d._drain_notes()
    return d, sent, lambda: [r["seq"] for _, p in sent for r in _json.loads(p)["events"]]


def test_batches_are_cut_to_the_broker_maximum_packet_as_they_are_written(tmp_path):
    """Batches were cut by `len(body) + 10` per record and a 1 KiB margin, but the wire adds `{"seq":N,` per record
    and a head of up to ~300 bytes: with max packet 32 KiB, batch_max 300 and 9-digit seqs a batch came out over the
    limit, the client refused it, and the delivery put it back to try later, forever: the backlog stopped there."""
    from sync.outbox import Outbox

    with Outbox(tmp_path / "o.db") as ob:
        with ob._lock:  # seqs as a device has after a long life
            ob.db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('reliable', 123456789)")
        d, sent, seqs = _recording_delivery(ob, 32 << 10, batch_max=300, window=50)
        for i in range(600):  # live events (sent unpaced)
            ob.emit(Event("zone_left", {"zone": "till", "track_id": i, "dwell_s": 1.5, "note": "a note, " * 8}))
        for _ in range(5):
            d._fill_window()
        assert sorted(seqs()) == list(range(123456790, 123456790 + 600))
        from sync.client import packet_size
        assert max(packet_size(t, p) for t, p in sent) <= 32 << 10
        assert max(packet_size(t, p) for t, p in sent) > 30 << 10  # and still filled near the limit


def test_a_burst_of_too_large_refusals_halves_the_batch_size_once(tmp_path):
    """20 batches of ~64 KB in flight are all refused with 0x95 by a broker whose message_size_limit is 32 KiB: each
    refusal halved the size limit again, down to 256 bytes, one record per message for the rest of the process.
    The refusals of messages sent under the same limit carry one piece of news: half of that size."""
    from sync.outbox import Outbox

    with Outbox(tmp_path / "o.db") as ob:
        d, sent, _ = _recording_delivery(ob, 256 << 20)
        for i in range(2000):
            ob.emit(Event("zone_left", {"zone": "till", "track_id": i, "note": "a long note, " * 40}))
        d._fill_window()
        sizes = [len(p) for _, p in sent[:20]]
        assert len(sent) >= 20 and min(sizes) > 60_000
        for mid in range(1, 21):
            d._on_puback(mid, 0x95, "Packet too large", [])
        assert 30_000 < d.size_cap <= max(sizes) // 2
        # a batch of small records refused at the floor: one record per message from then on, so a record refused
        # alone is dead-lettered and the resends end (before: the cap stayed at 256 and the batch went round forever)
        import time as _time

        from sync.outbox import RELIABLE
        d.size_cap = 300
        d._inflight[999] = (RELIABLE, [1, 2], _time.monotonic(), 290)
        d._on_puback(999, 0x95, "Packet too large", [])
        assert d.size_cap == 1


def test_a_command_result_over_the_broker_maximum_packet_is_answered_with_an_error(tmp_path):
    """A result larger than the broker's MaximumPacketSize (a big status dump) was refused by the client and dropped:
    the requester waited out its timeout with no word why. The device answers with an error result naming the size."""
    from sync import topics as t
    from sync.request import device_reply_filter

    from sync_helpers import requester

    b = Broker(tmp_path / "broker", extra="max_packet_size 4096\n").start()
    svc = SyncService(*device_settings(b.port, tmp_path / "outbox.db"))
    svc.add_command("dump", lambda args: {"lines": ["status line %d of the device" % i for i in range(400)]})
    svc.start()
    try:
        assert svc.client.wait_connected(5), svc.client.last_error
        time.sleep(0.2)
        with requester(b.port, [device_reply_filter("s001", "d001", "dump"),
                                device_reply_filter("s001", "d001", "ping")]) as r:
            cid = r.send(t.DeviceTopics("s001", "d001").cmd("dump"), {})
            [got] = r.wait([cid], 5)[cid]
            assert got["status"] == "error" and got["id"] == cid, got
            assert "larger than the broker's maximum packet size (4096 bytes)" in got["reason"], got
            pid = r.send(t.DeviceTopics("s001", "d001").cmd("ping"), {})
            assert r.wait([pid], 5)[pid][0]["status"] == "ok"  # the connection and small results carry on
        assert svc.client.connect_count == 1
    finally:
        svc.stop()
        b.close()
