"""Unit tests of topics, payloads, outbox, consumer ingest/watermark, config and the broker-less service."""
from __future__ import annotations

import json
import socket
import time
from types import SimpleNamespace

import pytest

from edge.app.config import parse_config, ConfigError
from edge.core.device import DeviceIdentity
from edge.core.events import Event
from sync import payloads, topics
from sync.client import ClientOptions
from sync.config import SyncConfig
from sync.consumer import Consumer, summary
from sync.outbox import RELIABLE, Outbox
from sync.payloads import PayloadError


# ---------------------------------------------------------------- topics
def test_topic_tree_and_parse_roundtrip():
    t = topics.DeviceTopics("s001", "d001")
    assert t.state == "retail/v1/s001/d001/state"
    assert t.events("person_entered") == "retail/v1/s001/d001/events/person_entered"
    assert t.for_stream("alerts", "x") == t.alerts and t.for_stream("telemetry", "x") == t.telemetry
    assert t.cmd_result("ping") == "retail/v1/s001/d001/cmd_result/ping"
    assert t.command_filters() == ["retail/v1/s001/d001/cmd/+", "retail/v1/fleet/cmd/+", "retail/v1/fleet/s001/cmd/+"]
    for topic, want in [(t.events("k"), ("s001", "d001", "events", "k")), (t.ack, ("s001", "d001", "ack", None)),
                        (t.cmd("ping"), ("s001", "d001", "cmd", "ping")), (t.state, ("s001", "d001", "state", None))]:
        p = topics.parse(topic)
        assert (p.store, p.device, p.channel, p.name) == want and not p.fleet
    f = topics.parse(topics.fleet_cmd("ping", "s001"))
    assert f.fleet and f.store == "s001" and f.name == "ping"
    assert topics.parse(topics.fleet_cmd("ping")).store is None


@pytest.mark.parametrize("bad", ["retail/v1/s001/d001/cmd/ping/result", "retail/v1/s001/d001/events",
                                 "retail/v1/s001/d001/nope", "retail/v2/s001/d001/state", "retail/v1/fleet/x/state",
                                 "retail/v1/s 1/d001/state", "retail/v1/s001/d001/events/+", "retail/v1/s001"])
def test_parse_rejects(bad):
    assert topics.parse(bad) is None


def test_ids_and_names_validated():
    for bad in ["", "a/b", "+", "#", "fleet", "x" * 65]:
        with pytest.raises(ValueError):
            topics.DeviceTopics(bad, "d1")
    with pytest.raises(ValueError):
        topics.DeviceTopics("s1", "d1").events("a/b")
    with pytest.raises(ValueError):
        topics.DeviceTopics("s1", "d1").cmd("#")


# ---------------------------------------------------------------- payloads
def test_decode_limits():
    assert payloads.decode(b'{"a":[1]}', max_bytes=100, max_depth=2) == {"a": [1]}
    with pytest.raises(PayloadError, match="too large"):
        payloads.decode(b"x" * 101, max_bytes=100, max_depth=2)
    with pytest.raises(PayloadError, match="not JSON"):
        payloads.decode(b"\xff\xfe", max_bytes=100, max_depth=2)
    with pytest.raises(PayloadError, match="deeper"):
        payloads.decode(b'{"a":[[1]]}', max_bytes=100, max_depth=2)
    with pytest.raises(PayloadError, match="deeper"):
        payloads.decode(b"[" * 100000 + b"]" * 100000, max_bytes=10**6, max_depth=8)
    assert payloads.depth(1) == 0 and payloads.depth({"a": {"b": []}}) == 3
    # brackets inside strings are text, not nesting; deep text is refused before the recursive parser runs
    tricky = {"a": 'x[[[[{{{{\\"]]"\\', "b": [1]}  # brackets, escaped quotes and backslashes in strings
    assert payloads.decode(json.dumps(tricky).encode(), max_bytes=100, max_depth=2) == tricky
    assert payloads.text_depth(b'[[1,[2]],{"a":"[[["}]') == 3 and payloads.text_depth("[]") == 1
    deep = b"[" * 100000 + b"]" * 100000
    assert payloads.text_depth(deep) == 100000
    with pytest.raises(PayloadError, match="nested deeper than 8$"):  # the pre-scan's reason, not the parser's
        payloads.decode(deep, max_bytes=10**6, max_depth=8)


def test_event_body_and_batch_roundtrip():
    body = payloads.event_body("person_entered", "events", 1.5, "e1", {"n": 1, "s": "é\ud800"}, max_bytes=1000)
    raw = payloads.batch("d1", "s1", "ep", [(7, body), (8, body)], historical=True)
    b = payloads.parse_batch(raw)
    assert b["v"] == payloads.SCHEMA and b["device"] == "d1" and b["historical"] is True and b["epoch"] == "ep"
    assert [r["seq"] for r in b["events"]] == [7, 8] and b["events"][0]["data"]["n"] == 1
    assert b["events"][0]["event_id"] == "e1" and b["events"][0]["ts"] == 1.5 and b["sent_ts"] > 0
    with pytest.raises(PayloadError):
        payloads.event_body("k", "events", 0, "e", {"x": float("nan")}, max_bytes=1000)
    with pytest.raises(PayloadError, match="too large"):
        payloads.event_body("k", "events", 0, "e", {"x": "y" * 2000}, max_bytes=1000)
    with pytest.raises(PayloadError):
        payloads.parse_batch(b'{"v":1,"device":"d","store":"s","epoch":"e","events":[{"seq":"1"}]}')
    assert payloads.parse_ack(payloads.ack("ep", 42)) == ("ep", 42)
    assert payloads.parse_ack(b'{"epoch":"e","upto":true}') is None and payloads.parse_ack(b"junk") is None


# ---------------------------------------------------------------- outbox
def test_outbox_seq_monotonic_across_reopen_and_ack(tmp_path):
    p = tmp_path / "o.db"
    with Outbox(p) as ob:
        epoch = ob.epoch
        seqs = [ob.emit(Event("k", {"i": i})) for i in range(5)]
        assert seqs == [1, 2, 3, 4, 5]
        assert ob.emit(Event("health", {}, stream="telemetry")) == 1  # its own seq space
        assert ob.ack_upto(5) == 5 and ob.depth()["events"] == 0
    with Outbox(p) as ob:
        assert ob.epoch == epoch
        assert ob.emit(Event("k", {})) == 6  # never reused, even with an empty table
        assert ob.depth() == {"alerts": 0, "events": 1, "telemetry": 1}
        assert ob.next_bd_seq() == 0 and ob.next_bd_seq() == 1
    with Outbox(p) as ob:
        assert ob.next_bd_seq() == 2  # bdSeq persisted
    with Outbox(tmp_path / "other.db") as ob2:
        assert ob2.epoch != epoch


def test_outbox_invalid_events_are_dead_lettered_not_raised(tmp_path):
    with Outbox(tmp_path / "o.db", max_event_bytes=500) as ob:
        assert ob.emit(Event("k", {"x": object()})) is None
        assert ob.emit(Event("bad/kind", {})) is None
        assert ob.emit(Event("_gap", {})) is None
        assert ob.emit(Event("k", {"x": "y" * 1000})) is None
        assert ob.emit(Event("k", {}, stream="nope")) is None
        deep: list = [1]
        for _ in range(20):
            deep = [deep]
        assert ob.emit(Event("k", {"a": deep})) is None
        assert ob.metrics()["dead_lettered"] == 6 and sum(ob.depth().values()) == 0
        assert all(d["reason"].startswith("invalid") for d in ob.dead_letters())


def test_outbox_budget_drops_telemetry_then_events_never_alerts(tmp_path):
    with Outbox(tmp_path / "o.db", max_bytes=20_000) as ob:
        pad = "x" * 150
        for i in range(40):
            ob.emit(Event("health", {"p": pad}, stream="telemetry"))
        assert ob.depth()["telemetry"] == 40
        for i in range(60):
            ob.emit(Event("k", {"i": i, "p": pad}))
        m = ob.metrics()
        assert m["dropped"]["telemetry"] > 0 and m["bytes"] <= 20_000
        for i in range(150):
            ob.emit(Event("a", {"i": i, "p": pad}, stream="alerts"))
        m = ob.metrics()
        assert m["dropped"]["alerts"] == 0 and ob.depth()["alerts"] == 150  # alerts are never dropped
        assert m["dropped"]["telemetry"] == 40 and m["dropped"]["events"] > 0 and m["over_budget"]
        # dropped events became gap records covering exactly the dropped seqs
        rows = ob.fetch(RELIABLE, 0, 10_000)
        covered = set()
        for seq, stream, kind, body, _ in rows:
            if kind == "_gap":
                covered.update(range(seq, json.loads(body)["data"]["to"] + 1))
            else:
                covered.add(seq)
        assert covered == set(range(1, 211))


def test_outbox_dead_letter_reliable_leaves_gap(tmp_path):
    with Outbox(tmp_path / "o.db") as ob:
        for i in range(3):
            ob.emit(Event("k", {"i": i}))
        ob.dead_letter(RELIABLE, [2], "PUBACK 0x87 Not authorized")
        rows = ob.fetch(RELIABLE, 0, 10)
        assert [(r[0], r[2]) for r in rows] == [(1, "k"), (2, "_gap"), (3, "k")]
        ob.dead_letter(RELIABLE, [2], "again")  # a failing gap record is only moved
        assert [r[0] for r in ob.fetch(RELIABLE, 0, 10)] == [1, 3]
        assert ob.metrics()["dead_lettered"] == 2
        ob.emit(Event("h", {}, stream="telemetry"))
        ob.delete_telemetry([1])
        assert ob.depth()["telemetry"] == 0


def test_outbox_commits_alerts_with_fsync_and_events_without(tmp_path):
    """Durability per stream: an alert's INSERT commits under synchronous=FULL, an event's under NORMAL."""
    with Outbox(tmp_path / "o.db") as ob:
        assert ob.durable_streams == {"alerts"}
        seen: list[str] = []
        ob.db.set_trace_callback(seen.append)
        ob.emit(Event("k", {}))
        ob.emit(Event("a", {}, stream="alerts"))
        ob.db.set_trace_callback(None)
        modes, mode = [], "NORMAL"
        for stmt in seen:
            if stmt.startswith("PRAGMA synchronous="):
                mode = stmt.split("=")[1]
            elif stmt.startswith("INSERT INTO reliable"):
                modes.append(mode)
        assert modes == ["NORMAL", "FULL"] and mode == "NORMAL"
        assert ob.db.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL again after the alert
    with Outbox(tmp_path / "o2.db", durable_streams=["alerts", "events"]) as ob:
        assert ob.durable_streams == {"alerts", "events"}


def test_outbox_sent_hi_is_persisted_and_starts_at_the_acked_rows_for_old_outboxes(tmp_path):
    p = tmp_path / "o.db"
    with Outbox(p) as ob:
        for i in range(10):
            ob.emit(Event("k", {"i": i}))
        assert ob.sent_hi == 0
        ob.note_sent(7)
        ob.note_sent(3)  # never goes down
    with Outbox(p) as ob:
        assert ob.sent_hi == 7
        ob.ack_upto(4)
        ob.db.execute("DELETE FROM meta WHERE key='sent_hi'")  # an outbox written before sent_hi existed
    with Outbox(p) as ob:
        assert ob.sent_hi == 4  # only what the cloud acked (deleted) is trusted as sent


def test_delivery_counts_a_gap_record_as_sent_up_to_its_end(tmp_path):
    """The cloud's watermark passes a `_gap` record up to its `to`: that ack must not be refused."""
    from sync.delivery import Delivery

    with Outbox(tmp_path / "o.db") as ob:
        for i in range(6):
            ob.emit(Event("k", {"i": i}))
        ob.dead_letter(RELIABLE, [4, 5, 6], "PUBACK 0x87 Not authorized")  # one gap record at 4, to 6
        sent: list[str] = []
        d = Delivery(ob, topics.DeviceTopics("s1", "d1"), lambda t, p: sent.append(t) or len(sent), ack_wait_s=0)
        d.notify_connected()
        d._drain_notes()
        time.sleep(0.05)  # the backlog (rows older than the connection) is paced: let tokens accrue
        d._fill_window()
        assert sent and d.metrics()["sent_hi"] == 6 and ob.sent_hi == 6
        d.notify_ack(ob.epoch, 6)
        d._drain_notes()
        assert d.stats["acks_refused"] == 0 and d.watermark == 6 and sum(ob.depth().values()) == 0


# ---------------------------------------------------------------- consumer ingest (no network)
def _msg(topic, payload):
    return SimpleNamespace(topic=topic, payload=payload, properties=None, retain=False)


def test_consumer_dedupes_and_watermark_with_gaps(tmp_path):
    c = Consumer(ClientOptions("127.0.0.1", 1), tmp_path / "c.db")
    t = topics.DeviceTopics("s1", "d1")
    body = lambda k: payloads.event_body(k, "events", 0.0, f"e{k}", {}, max_bytes=1000)  # noqa: E731
    recs = lambda seqs: [(s, body(f"k{s}")) for s in seqs]  # noqa: E731
    c._on_message(_msg(t.events("x"), payloads.batch("d1", "s1", "ep", recs([1, 2, 4]), False)))
    assert c.watermark("d1") == 2
    c._on_message(_msg(t.events("x"), payloads.batch("d1", "s1", "ep", recs([2, 4]), True)))  # duplicates
    gap = payloads.dumps({"event_id": "g", "kind": "_gap", "stream": "events", "ts": 0, "data": {"to": 6}})
    c._on_message(_msg(t.events("_gap"), payloads.batch("d1", "s1", "ep", [(3, gap)], False)))
    assert c.watermark("d1") == 6
    c._on_message(_msg(t.alerts, payloads.batch("d1", "s1", "ep", recs([7]), False)))
    assert c.watermark("d1") == 7 and c.stats["duplicates"] == 2 and c.stats["gaps"] == 1
    c._on_message(_msg(t.events("x"), payloads.batch("d2", "s1", "ep", recs([1]), False)))  # topic mismatch
    c._on_message(_msg(t.events("x"), b"not json"))
    assert c.stats["bad"] == 2
    c.client.paho.loop_stop()
    c.db.close()
    s = summary(tmp_path / "c.db")
    assert s["stored"] == 4 and s["duplicates_removed"] == 2 and s["duplicates_after_dedup"] == 0
    # a restarted consumer recovers its watermark from the database
    c2 = Consumer(ClientOptions("127.0.0.1", 1), tmp_path / "c.db")
    assert c2.watermark("d1") == 7
    c2.db.close()


def test_consumer_keeps_huge_gaps_as_spans_not_expanded_seqs(tmp_path):
    """Gap records each covering ~10 M seqs (a device's own topic may send them) while an earlier seq is missing:
    the consumer keeps them as spans, not as millions of pending ints, and the watermark jumps over them once the
    missing seq arrives (and after a restart)."""
    c = Consumer(ClientOptions("127.0.0.1", 1), tmp_path / "c.db")
    t = topics.DeviceTopics("s1", "d1")
    body = lambda k: payloads.event_body(k, "events", 0.0, f"e{k}", {}, max_bytes=1000)  # noqa: E731

    def gap(first: int, last: int) -> bytes:
        g = payloads.dumps({"event_id": f"g{first}", "kind": "_gap", "stream": "events", "ts": 0,
                            "data": {"to": last}})
        return payloads.batch("d1", "s1", "ep", [(first, g)], False)

    for k in range(20):  # seq 1 missing: 20 gaps of 9,999,999 seqs wait above the watermark
        c._on_message(_msg(t.events("_gap"), gap(max(2, k * 10_000_000 + 1), (k + 1) * 10_000_000)))
    m = c._marks[("s1", "d1", "ep")]
    assert c.watermark("d1") == 0 and len(m.pending) == 0 and len(m.spans) == 20
    c._on_message(_msg(t.events("x"), payloads.batch("d1", "s1", "ep", [(1, body("k1"))], False)))
    assert c.watermark("d1") == 200_000_000 and m.spans == [] and m.pending == set()
    c.client.paho.loop_stop()
    c.db.close()
    c2 = Consumer(ClientOptions("127.0.0.1", 1), tmp_path / "c.db")
    assert c2.watermark("d1") == 200_000_000
    c2.db.close()


def test_consumer_keeps_an_event_resent_under_a_new_seq_once(tmp_path):
    """An alert transition re-emitted after a kill carries its event_id under a new outbox seq: stored once, the
    watermark still moves over both seqs."""
    c = Consumer(ClientOptions("127.0.0.1", 1), tmp_path / "c.db")
    t = topics.DeviceTopics("s1", "d1")
    ev = payloads.event_body("alert_opened", "alerts", 0.0, "a" * 32, {}, max_bytes=1000)
    c._on_message(_msg(t.alerts, payloads.batch("d1", "s1", "ep", [(1, ev)], False)))
    c._on_message(_msg(t.alerts, payloads.batch("d1", "s1", "ep", [(2, ev)], False)))  # the same event, seq 2
    assert c.watermark("d1") == 2 and c.stats["duplicates"] == 1
    assert c.db.execute("SELECT count(*) FROM events WHERE event_id = ?", ("a" * 32,)).fetchone()[0] == 1
    c.client.paho.loop_stop()
    c.db.close()


# ---------------------------------------------------------------- config and service without broker
def test_sync_config_defaults_and_strictness(monkeypatch):
    cfg = parse_config({"device": {"id": "d1", "store": "s1", "kind": "kiosk"}})
    assert cfg.sync.broker == "" and cfg.sync.window == 20 and cfg.sync.max_outbox_mb == 256
    monkeypatch.delenv("STOREFRONT_EDGE_DATA", raising=False)  # (the tests set their own data dir)
    assert str(cfg.sync.resolved_outbox_path("d1")).endswith("storefront-edge/outbox-d1.sqlite")
    with pytest.raises(ConfigError, match="brokr"):
        parse_config({"device": {"id": "d1", "store": "s1", "kind": "kiosk"}, "sync": {"brokr": "x"}})
    with pytest.raises(ConfigError, match="ca_file"):
        parse_config({"device": {"id": "d1", "store": "s1", "kind": "kiosk"}, "sync": {"tls": True}})


def test_service_without_broker_keeps_events_local(tmp_path, monkeypatch):
    from sync.service import SyncService

    def no_network(*a, **k):
        raise AssertionError("network used without a broker")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    svc = SyncService(DeviceIdentity(id="d1", store="s1", kind="kiosk"),
                      SyncConfig(outbox_path=str(tmp_path / "o.db")))
    svc.start()
    svc.outbox.emit(Event("person_entered", {"n": 1}))
    svc.outbox.emit(Event("shelf_empty", {}, stream="alerts"))
    svc.set_state(models={"pose": "1.0"})
    m = svc.metrics()
    assert m["depth"] == {"alerts": 1, "events": 1, "telemetry": 0} and m["connected"] is False
    svc.stop()
    with Outbox(tmp_path / "o.db") as ob:
        assert ob.depth()["events"] == 1
