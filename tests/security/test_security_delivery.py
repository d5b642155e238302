"""A forged retained ack must never empty the outbox (issue 15, case 4), on a real mosquitto: the device refuses
acks beyond the highest seq it sent in its epoch and acks of other epochs, counts them, and loses 0 events."""
from __future__ import annotations

import json
import time

from paho.mqtt.subscribeoptions import SubscribeOptions

from edge.core.events import Event
from sync import payloads, topics
from sync.client import ClientOptions, MqttClient
from sync.consumer import summary
from sync.outbox import RELIABLE
from sync.service import SyncService

from sync_helpers import device_settings, requester, start_consumer, wait_until

N1, N2 = 2000, 1000


class Attacker:
    """Reads the device's epoch from its events on the broker (as anyone with read access could)."""

    def __init__(self, port: int) -> None:
        self.epochs: list[str] = []
        self.c = MqttClient(ClientOptions("127.0.0.1", port, client_id="attacker", clean_start=True,
                                          subscriptions=[("retail/v1/s001/d001/events/+", SubscribeOptions(qos=1))]))
        self.c.on_message = lambda m: self.epochs.append(json.loads(m.payload)["epoch"])

    def __enter__(self) -> "Attacker":
        self.c.start()
        assert self.c.wait_connected(5)
        time.sleep(0.1)
        return self

    def __exit__(self, *exc) -> None:
        self.c.stop()


def forge(port: int, epoch: str, upto: int) -> None:
    with requester(port, []) as r:
        r.send(topics.DeviceTopics("s001", "d001").ack, payload=payloads.ack(epoch, upto), retain=True)
        time.sleep(0.2)


def test_forged_retained_ack_deletes_nothing_and_no_event_is_lost(broker, tmp_path):
    outbox = tmp_path / "outbox.db"
    settings = device_settings(broker.port, outbox, ack_timeout_s=1.0)
    svc = SyncService(*settings)
    svc.start()
    consumer = None
    try:
        assert svc.client.wait_connected(5)
        with Attacker(broker.port) as attacker:
            for i in range(N1):  # no consumer yet: PUBACKed by the broker, never acked
                svc.outbox.emit(Event("person_entered", {"i": i}, stream="alerts" if i % 50 == 0 else "events"))
            assert wait_until(lambda: svc.delivery.metrics()["sent_hi"] == N1 and attacker.epochs, 10)
            epoch = attacker.epochs[0]
        assert epoch == svc.outbox.epoch
        forge(broker.port, epoch, 2 ** 53)  # the attack of the issue: deleted 6,139 undelivered rows
        forge(broker.port, epoch, N1 + 1)  # one beyond what was sent
        forge(broker.port, "0123456789abcdef", 10)  # another epoch
        assert wait_until(lambda: svc.metrics()["acks_refused"] >= 3, 5), svc.metrics()
        assert sum(svc.outbox.depth().values()) == N1 and svc.delivery.watermark == 0  # nothing deleted
        assert "beyond the highest seq sent" in svc.delivery.stats["last_ack_refused"] or \
            "epoch" in svc.delivery.stats["last_ack_refused"]
        forge(broker.port, epoch, 2 ** 53)  # leave the forged ack retained for the restart below
        svc.stop()

        svc = SyncService(*settings)  # restarted: gets the retained forged ack again, refuses it again
        svc.start()
        assert wait_until(lambda: svc.metrics()["acks_refused"] >= 1, 5), svc.metrics()
        assert sum(svc.outbox.depth().values()) == N1
        for i in range(N2):
            svc.outbox.emit(Event("person_entered", {"i": N1 + i}))
        consumer = start_consumer(broker.port, tmp_path / "cloud.db")
        total = N1 + N2
        assert wait_until(lambda: consumer.watermark("d001") >= total, 60), (svc.metrics(), consumer.stats)
        assert wait_until(lambda: sum(svc.outbox.depth().values()) == 0, 10), svc.metrics()
        assert svc.outbox.max_seq(RELIABLE) == total
    finally:
        svc.stop()
        if consumer is not None:
            consumer.stop()
    s = summary(tmp_path / "cloud.db", "d001")
    assert s["distinct"] == total and s["distinct_event_ids"] == total  # 0 events lost
    assert s["duplicates_after_dedup"] == 0


def test_ack_flood_is_counted_not_logged_per_message(broker, tmp_path, caplog):
    """1,000 forged acks: all refused and counted; the log says so a bounded number of times."""
    svc = SyncService(*device_settings(broker.port, tmp_path / "outbox.db"))
    svc.start()
    try:
        assert svc.client.wait_connected(5)
        svc.outbox.emit(Event("person_entered", {}))
        assert wait_until(lambda: svc.delivery.metrics()["sent_hi"] == 1, 5)
        with requester(broker.port, []) as r:
            for i in range(1000):
                r.send(topics.DeviceTopics("s001", "d001").ack, payload=payloads.ack(svc.outbox.epoch, 10 + i))
            assert wait_until(lambda: svc.metrics()["acks_refused"] >= 1000, 10), svc.metrics()
        assert svc.outbox.depth()["events"] == 1
        assert len([r for r in caplog.records if "refused ack" in r.getMessage()]) <= 3
    finally:
        svc.stop()
