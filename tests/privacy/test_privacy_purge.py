"""Retention and `edge data purge` (edge/app/data_cli.py): session records, dead letters and decision records past
their retention leave the device, from the tables and from the disk; nothing else is touched; delivery carries on
past the removed records; a running device enforces the retention itself and `edge data purge` waits for it."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time

import pytest

from edge.core.events import Event

DAY = 86400.0


def write_config(repo, tmp_path, extra: str = "") -> tuple:
    from edge.app.config import load_config

    text = (repo / "device_configs" / "kiosk.toml").read_text()
    text = text.replace('broker = ""', f'broker = ""\noutbox_path = "{tmp_path / "outbox.sqlite"}"')
    text += "\n[privacy]\nsession_retention_days = 7\nhistory_retention_days = 30\n" + extra
    p = tmp_path / "kiosk.toml"
    p.write_text(text)
    return p, load_config(p)


def populate(cfg, now: float) -> None:
    """Sessions, presence events and an alert, 10 days old and fresh; dead letters 40 and 1 days old; decision
    records 40 days old (in a rotated segment and the active one) and fresh."""
    from edge.app.operations import decision_log_dir
    from edge.core.decisions import DecisionLog
    from sync.outbox import Outbox

    with Outbox(cfg.sync.resolved_outbox_path(cfg.device.id)) as ob:
        rows = []
        for age, tag in ((10, "OLD"), (0, "NEW")):
            for i in range(3):
                rows.append((ob.emit(Event("tryon_session", {"sku": f"MARKER-{tag}-{i}", "duration_s": 12.0})), age))
            rows.append((ob.emit(Event("person_entered", {"track_id": 1, "t_wall": now, "scope": "main"})), age))
            rows.append((ob.emit(Event("alert_opened", {"rule": "kiosk_help"}, stream="alerts")), age))
        for seq, age in rows:
            ob.db.execute("UPDATE reliable SET created = ? WHERE seq = ?", (now - age * DAY, seq))
        for age in (40, 40, 1):
            ob.emit(Event("bad kind!", {"x": age}))  # invalid: dead-lettered
            ob.db.execute("UPDATE dead_letter SET ts = ? WHERE id = (SELECT MAX(id) FROM dead_letter)",
                          (now - age * DAY,))
    folder = decision_log_dir(cfg)
    clock = [now - 40 * DAY]
    dl = DecisionLog(folder, max_bytes=64 * 1024, segments=4, clock=lambda: clock[0]).open()
    for i in range(3):
        dl.record("alert", "old", {"i": i}, wait=True)
    dl.close()
    (folder / "decisions.jsonl").rename(folder / "decisions.1.jsonl")  # a rotated segment, written 40 days ago
    import os
    os.utime(folder / "decisions.1.jsonl", (now - 40 * DAY, now - 40 * DAY))
    dl = DecisionLog(folder, retention_s=3650 * DAY, clock=lambda: clock[0]).open()
    dl.record("alert", "old-active", {}, wait=True)
    clock[0] = now
    dl.record("alert", "new", {}, wait=True)
    dl.close()


def edge_data(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.app.cli", "data", "purge", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def outbox_rows(cfg) -> list[tuple]:
    with sqlite3.connect(cfg.sync.resolved_outbox_path(cfg.device.id)) as c:
        return c.execute("SELECT seq, kind, body FROM reliable ORDER BY seq").fetchall()


def disk_bytes(cfg) -> bytes:
    p = cfg.sync.resolved_outbox_path(cfg.device.id)
    return b"".join(q.read_bytes() for q in (p, p.with_name(p.name + "-wal")) if q.exists())


def test_purge_removes_what_is_past_retention_from_the_tables_and_the_disk(repo, tmp_path):
    from edge.app.operations import decision_log_dir
    from edge.core.decisions import read_decisions

    path, cfg = write_config(repo, tmp_path)
    now = time.time()
    populate(cfg, now)
    assert b"MARKER-OLD-0" in disk_bytes(cfg)
    dry = edge_data("--config", path, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["session_records"] == 3 and len(outbox_rows(cfg)) == 10

    r = edge_data("--config", path, "--json")
    assert r.returncode == 0, r.stderr
    counts = json.loads(r.stdout)
    assert (counts["session_records"], counts["dead_letters"], counts["decision_records"]) == (3, 2, 4), counts
    assert counts["compacted"] and counts["decision_files"] == 1
    rows = outbox_rows(cfg)
    kinds = [k for _, k, _ in rows]
    assert kinds.count("tryon_session") == 3 and all("MARKER-NEW" in b for _, k, b in rows if k == "tryon_session")
    assert kinds.count("person_entered") == 2 and kinds.count("alert_opened") == 2  # not session data: kept
    gaps = [json.loads(b)["data"] for _, k, b in rows if k == "_gap"]
    assert gaps and all(g["reason"] == "retention" for g in gaps) and sum(1 for _ in gaps) == 1  # one run: seqs 1-3
    assert b"MARKER-OLD" not in disk_bytes(cfg)  # gone from the file and the WAL, not only from the table
    with sqlite3.connect(cfg.sync.resolved_outbox_path(cfg.device.id)) as c:
        assert c.execute("SELECT COUNT(*) FROM dead_letter").fetchone()[0] == 1
    recs = list(read_decisions(decision_log_dir(cfg)))
    assert [x["subject"] for x in recs] == ["new", "cli"]
    assert recs[-1]["kind"] == "data_purge" and recs[-1]["data"]["session_records"] == 3
    assert not (decision_log_dir(cfg) / "decisions.1.jsonl").exists()

    again = edge_data("--config", path, "--json")  # idempotent
    assert json.loads(again.stdout)["session_records"] == 0


def test_purge_all_and_older_than(repo, tmp_path):
    from edge.app.operations import decision_log_dir
    from edge.core.decisions import read_decisions

    path, cfg = write_config(repo, tmp_path)
    populate(cfg, time.time())
    r = edge_data("--config", path, "--older-than", "2d", "--json")
    c = json.loads(r.stdout)
    assert (c["session_records"], c["dead_letters"], c["decision_records"]) == (3, 2, 4), c
    r = edge_data("--config", path, "--all")
    assert r.returncode == 0 and "removed 3 session record(s)" in r.stdout, r.stdout + r.stderr
    kinds = [k for _, k, _ in outbox_rows(cfg)]
    assert "tryon_session" not in kinds and kinds.count("alert_opened") == 2
    assert [x["kind"] for x in read_decisions(decision_log_dir(cfg))] == ["data_purge"]
    bad = edge_data("--config", path, "--older-than", "soon")
    assert bad.returncode == 2 and "--older-than 'soon'" in bad.stderr


def test_purge_waits_for_a_running_device(repo, tmp_path):
    from edge.app.data_cli import RunLock, lock_path

    path, cfg = write_config(repo, tmp_path)
    populate(cfg, time.time())
    lock = RunLock(lock_path(cfg))
    assert lock.acquire()
    try:
        r = edge_data("--config", path)
        assert r.returncode == 3 and "edge run is running" in r.stderr, r.stderr
    finally:
        lock.release()
    assert sum(1 for _, k, _ in outbox_rows(cfg) if k == "tryon_session") == 6  # nothing touched
    assert edge_data("--config", path).returncode == 0


def test_running_device_enforces_retention_and_delivery_passes_the_gaps(repo, tmp_path, decision_log):
    """On a device with a broker: sessions stored while it was offline expire (RetentionLoop, the clock 8 days on);
    the cloud consumer records the gaps, the other events arrive and the outbox empties."""
    from devtools.broker import Broker
    from edge.app.data_cli import RetentionLoop
    from edge.core.decisions import read_decisions
    from sync.client import ClientOptions
    from sync.consumer import Consumer
    from sync.service import SyncService

    from privacy_helpers import wait_until

    _, cfg = write_config(repo, tmp_path)
    svc = SyncService(cfg.device, cfg.sync)  # no broker yet: the device is offline
    svc.start()
    for i in range(5):
        svc.outbox.emit(Event("tryon_session", {"sku": f"S-{i}", "duration_s": 3.0}))
        svc.outbox.emit(Event("person_entered", {"track_id": i, "t_wall": time.time(), "scope": "main"}))
    loop = RetentionLoop(svc.outbox, cfg.privacy, clock=lambda: time.time() + 8 * DAY)
    assert loop.run_once() == {"session_records": 5, "dead_letters": 0, "compacted": False}  # no VACUUM: running
    assert b'"S-3"' not in disk_bytes(cfg)  # overwritten in place and the WAL emptied
    svc.stop()
    broker = Broker(tmp_path / "broker").start()
    consumer = Consumer(ClientOptions("127.0.0.1", broker.port, client_id="cloud", reconnect_min_s=0.1),
                        tmp_path / "cloud.sqlite", ack_interval_s=0.05)
    consumer.start()
    cfg.sync.broker, cfg.sync.port = "127.0.0.1", broker.port
    cfg.sync.telemetry_interval_s = 0
    svc = SyncService(cfg.device, cfg.sync)
    svc.start()
    try:
        assert wait_until(lambda: sum(svc.outbox.depth().values()) == 0, 20), svc.outbox.depth()
    finally:
        svc.stop()
        consumer.stop()
        broker.close()
    with sqlite3.connect(tmp_path / "cloud.sqlite") as c:
        kinds = [k for (k,) in c.execute("SELECT kind FROM events")]
        reasons = [r for (r,) in c.execute("SELECT reason FROM gaps")]
    assert kinds.count("person_entered") == 5 and "tryon_session" not in kinds
    assert reasons and set(reasons) == {"retention"}
    decision_log.flush()
    (rec,) = [x for x in read_decisions(decision_log.folder) if x["kind"] == "data_purge"]
    assert rec["subject"] == "retention" and rec["data"]["session_records"] == 5


def test_privacy_config_errors_name_the_key_and_the_fix():
    from edge.app.config import ConfigError, parse_config

    base = {"device": {"id": "k", "store": "s", "kind": "kiosk"}}
    with pytest.raises(ConfigError, match=r"privacy\.snapshot_requesters: empty while.*\(fix: list who may"):
        parse_config({**base, "privacy": {"snapshots": True}}, "k.toml")
    with pytest.raises(ConfigError, match=r"k.toml: privacy.session_retention_days: .*greater than 0"):
        parse_config({**base, "privacy": {"session_retention_days": 0}}, "k.toml")
    with pytest.raises(ConfigError, match=r"privacy.snapshot: Extra inputs.*rename it to 'snapshots'"):
        parse_config({**base, "privacy": {"snapshot": True}}, "k.toml")


def test_a_refused_record_leaves_no_copy_in_the_outbox_files(tmp_path):
    """A record the privacy guard refuses is dead-lettered with its body withheld, and its content is gone from
    the database file and the WAL at once (secure_delete on whatever the SQLite build's default, WAL emptied)."""
    from sync.outbox import RELIABLE, Outbox

    marker = "Q0FNRVJBLUZSQU1FLU1BUktFUi0xMjM0NTY3ODkw" * 4
    path = tmp_path / "outbox.sqlite"
    with Outbox(path) as ob:
        assert ob.db.execute("PRAGMA secure_delete").fetchone()[0] == 1
        for i in range(5):
            ob.emit(Event("zone_entered", {"zone": "a", "n": i}))
        seq = ob.emit(Event("zone_entered", {"zone": "a", "note": marker}))
        ob.dead_letter(RELIABLE, [seq], "privacy guard: image data", redact=True)
        on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("outbox.sqlite"))
        assert marker[:40].encode() not in on_disk


def test_a_dead_lettered_session_record_expires_with_the_sessions(tmp_path):
    """A try-on session record the broker refused (now in dead_letter) leaves at the session retention (7 days),
    not the history retention (30 days)."""
    from edge.app.data_cli import RetentionLoop
    from edge.privacy.config import PrivacyConfig
    from sync.outbox import RELIABLE, Outbox

    with Outbox(tmp_path / "outbox.sqlite") as ob:
        seq = ob.emit(Event("tryon_session", {"sku": "MARKER-DL", "duration_s": 12.0}))
        ob.dead_letter(RELIABLE, [seq], "PUBACK 0x87 not authorized")
        counts = RetentionLoop(ob, PrivacyConfig(), clock=lambda: time.time() + 8 * DAY).run_once()
        assert counts["session_records"] == 1
        assert ob.db.execute("SELECT COUNT(*) FROM dead_letter WHERE kind = 'tryon_session'").fetchone()[0] == 0


def test_a_running_decision_log_drops_records_past_its_retention(tmp_path):
    """The running device's retention loop trims the decision log record by record, the active segment included
    (rotation alone may take months at a few records an hour)."""
    from edge.core.decisions import DecisionLog, read_decisions

    clock = [time.time() - 40 * DAY]
    dl = DecisionLog(tmp_path / "dec", retention_s=30 * DAY, clock=lambda: clock[0]).open()
    try:
        for i in range(3):
            dl.record("alert", f"old-{i}", {}, wait=True)
        clock[0] = time.time()
        dl.record("alert", "new", {}, wait=True)
        dl.enforce_retention()
        dl.record("alert", "after", {}, wait=True)  # queued behind the retention pass: it has run once this is in
        assert [r["subject"] for r in read_decisions(tmp_path / "dec")] == ["new", "after"]
    finally:
        dl.close()


def test_a_session_record_dead_lettered_late_expires_from_when_it_was_made(tmp_path):
    """Its age counts from when the record was made, not from when the broker refused it: a session stored 6.9 days
    ago and dead-lettered today goes at day 7 (before, it stayed about 14 days). The dry-run count agrees."""
    import sqlite3

    from edge.app.data_cli import RetentionLoop
    from edge.privacy.config import PrivacyConfig
    from sync.outbox import RELIABLE, Outbox

    path = tmp_path / "outbox.sqlite"
    with Outbox(path) as ob:
        seq = ob.emit(Event("tryon_session", {"sku": "MARKER-LATE", "duration_s": 12.0}))
    with sqlite3.connect(path) as db:  # the record was made 6.9 days ago (the device was offline since)
        db.execute("UPDATE reliable SET created = ? WHERE seq = ?", (time.time() - 6.9 * DAY, seq))
    with Outbox(path) as ob:
        ob.dead_letter(RELIABLE, [seq], "PUBACK 0x87 not authorized")  # refused today, at reconnection
        assert ob.expiring(["tryon_session"], time.time() - 7 * DAY + 0.2 * DAY, time.time() - 30 * DAY) == (1, 0)
        counts = RetentionLoop(ob, PrivacyConfig(), clock=lambda: time.time() + 0.2 * DAY).run_once()
        assert counts["session_records"] == 1
        assert ob.db.execute("SELECT COUNT(*) FROM dead_letter").fetchone()[0] == 0


def test_an_outbox_from_before_the_dead_letter_created_column_opens_and_expires(tmp_path):
    """An outbox written by an older version (dead_letter without `created`) gets the column; its old dead letters
    expire by when they were dead-lettered."""
    import sqlite3

    from sync.outbox import Outbox

    path = tmp_path / "outbox.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE dead_letter (id INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT, seq INTEGER, "
                   "stream TEXT, kind TEXT, body TEXT, reason TEXT NOT NULL, ts REAL NOT NULL)")
        db.execute("INSERT INTO dead_letter (tbl, seq, stream, kind, body, reason, ts) VALUES "
                   "('reliable', 1, 'events', 'tryon_session', '{}', 'refused', ?)", (time.time() - 8 * DAY,))
    with Outbox(path) as ob:
        assert ob.expire(["tryon_session"], time.time() - 7 * DAY) == 1
