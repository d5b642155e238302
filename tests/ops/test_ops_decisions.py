"""The decision log: crash safety (kill -9 of a real writer process), size cap and rotation, retention, torn tails,
no frames or personal data; read back by `edge log decisions`, by GET /decisions and as the daily telemetry
summary."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from edge.core.decisions import (DecisionLog, ReadStats, decisions_route, parse_since, read_decisions,
                                 segment_paths)

HERE = Path(__file__).parent


def test_survives_kill_9_of_a_real_writer_and_keeps_its_size_cap(tmp_path, repo):
    cap = 32 * 1024
    folder = tmp_path / "log"
    env = {**os.environ, "PYTHONPATH": str(repo)}
    p = subprocess.Popen([sys.executable, str(HERE / "decision_writer.py"), str(folder), str(cap)],
                         stdout=subprocess.PIPE, text=True, env=env)
    durable = []
    try:
        assert p.stdout.readline().startswith("open")
        while len(durable) < 400:  # ~100 KB written: the log rotated several times
            line = p.stdout.readline()
            assert line, "writer died"
            durable.append(int(line))
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
    assert p.returncode == -signal.SIGKILL
    stats = ReadStats()
    recs = list(read_decisions(folder, stats=stats))
    seqs = [r["seq"] for r in recs]
    assert stats.skipped == 0
    assert seqs == list(range(seqs[0], seqs[-1] + 1))  # contiguous: nothing lost in the middle
    assert seqs[-1] >= durable[-1]  # everything it reported durable before the kill is there
    assert seqs[0] > 0  # the oldest were rotated away by the size cap ...
    assert sum(f.stat().st_size for f in segment_paths(folder) if f.exists()) <= cap  # ... which holds
    assert len([f for f in folder.iterdir() if f.name.startswith("decisions")]) <= 4
    assert recs[-1]["data"]["pad"] == "x" * 150 and recs[-1]["reason"].startswith("record ")

    # a crash mid-line (power cut) leaves a torn tail: readers skip it, the next writer cuts it and continues
    with open(folder / "decisions.jsonl", "ab") as f:
        f.write(b'{"seq": 999999, "ts": 1, "kind": "circ')
    stats = ReadStats()
    assert [r["seq"] for r in read_decisions(folder, stats=stats)][-1] == seqs[-1] and stats.skipped == 1
    log = DecisionLog(folder, max_bytes=cap, segments=4).open()
    seq = log.record("config_reload", "dev.toml", {"status": "ok"}, reason="ok", wait=True)
    log.close()
    assert seq == seqs[-1] + 1
    stats = ReadStats()
    last = list(read_decisions(folder, stats=stats))[-1]
    assert stats.skipped == 0 and last["seq"] == seq and last["kind"] == "config_reload"


def test_rotation_retention_and_group_commit(tmp_path):
    clock = [time.time()]
    log = DecisionLog(tmp_path, max_bytes=8192, segments=4, retention_s=86400, clock=lambda: clock[0]).open()
    for i in range(200):
        log.record("alert", "busy", {"i": i})
    assert log.flush(5)
    log.close()
    files = segment_paths(tmp_path)
    assert len(files) == 4 and all(f.stat().st_size <= 2048 for f in files)
    old = files[0]
    os.utime(old, (clock[0] - 2 * 86400, clock[0] - 2 * 86400))  # last written two days ago
    clock[0] += 1
    log = DecisionLog(tmp_path, max_bytes=8192, segments=4, retention_s=86400, clock=lambda: clock[0]).open()
    log.close()
    assert not old.exists() and len(segment_paths(tmp_path)) == 3


def test_never_frames_or_personal_data_and_bounded_records(tmp_path, caplog):
    log = DecisionLog(tmp_path, max_record_bytes=1024).open()
    frame = np.zeros((480, 640, 3), np.uint8)
    log.record("alert", "r1", {"evidence": {"track_ids": [3, 4], "image": "data:image/jpeg;base64,...",
                                            "crop": frame[:10], "score": np.float32(0.5)},
                               "frame": frame, "blob": b"\xff\xd8", "nan": float("nan")})
    log.record("alert", "r2", {"big": "y" * 5000})
    log.flush()
    a, b = list(read_decisions(tmp_path))
    assert a["data"] == {"evidence": {"track_ids": [3, 4], "score": 0.5}, "blob": "<dropped: bytes>", "nan": None}
    assert sorted(a["dropped"]) == ["data.blob", "data.evidence.crop", "data.evidence.image", "data.frame"]
    assert b["data"] == {"truncated": True, "keys": ["big"], "bytes": b["data"]["bytes"]}
    assert all(len(line) <= 1024 for line in (tmp_path / "decisions.jsonl").read_bytes().splitlines())
    assert "never frames or personal data" in caplog.text
    log.close()


def _filled(folder: Path, now: float) -> None:
    clock = [now - 3 * 3600]
    log = DecisionLog(folder, clock=lambda: clock[0]).open()
    log.record("model_selected", "pose_landmarks", {"backend": "tflite", "precision": "int8"}, reason="auto")
    clock[0] = now - 1800
    log.record("circuit", "pipeline/mirror", {"to": "open", "reason": "low_confidence"}, reason="closed -> open")
    clock[0] = now - 60
    log.record("circuit", "pipeline/mirror", {"to": "closed", "reason": "probes_ok"}, reason="half_open -> closed")
    log.record("alert", "busy", {"transition": "opened"}, reason="opened: occupancy >= 1")
    log.close()


def test_cli_reads_filters_and_explains_bad_input(tmp_path, repo):
    now = time.time()
    folder = tmp_path / "d"
    _filled(folder, now)

    def edge(*args):
        return subprocess.run([sys.executable, "-m", "edge.app.cli", "log", "decisions", *args], cwd=repo,
                              capture_output=True, text=True, timeout=60)

    r = edge("--dir", str(folder), "--json", "--kind", "circuit", "--since", "1h")
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["data"]["to"] for x in recs] == ["open", "closed"]
    r = edge("--dir", str(folder), "--limit", "2")
    lines = r.stdout.splitlines()
    assert r.returncode == 0 and len(lines) == 2
    assert "circuit" in lines[0] and "pipeline/mirror" in lines[0] and "half_open -> closed" in lines[0]
    assert "alert" in lines[1] and "opened: occupancy >= 1" in lines[1]
    r = edge("--dir", str(folder), "--since", "yesterday")
    assert r.returncode == 2 and "--since 'yesterday': use a duration ago" in r.stderr
    r = edge("--dir", str(folder), "--kind", "circuits")
    assert r.returncode == 2 and "unknown kind(s) ['circuits']" in r.stderr and "model_selected" in r.stderr
    r = edge("--dir", str(tmp_path / "none"))
    assert r.returncode == 1 and "no decision log in" in r.stderr
    cfg = tmp_path / "dev.toml"  # the folder from a device config's [decisions] path
    cfg.write_text(f'[device]\nid = "k1"\nstore = "s1"\nkind = "kiosk"\n[decisions]\npath = "{folder}"\n')
    r = edge("--config", str(cfg), "--kind", "model_selected")
    assert r.returncode == 0 and "pose_landmarks" in r.stdout and r.stdout.count("\n") == 1


def test_http_route_serves_the_log(tmp_path):
    from edge.core.http_server import LocalHttpServer

    now = time.time()
    _filled(tmp_path, now)
    srv = LocalHttpServer("127.0.0.1", 0, lambda: (True, {}))
    srv.add("/decisions", decisions_route(tmp_path))
    srv.start()
    try:
        base = f"http://127.0.0.1:{srv.port}/decisions"
        body = json.load(urllib.request.urlopen(base + "?kind=circuit,alert&limit=2", timeout=5))
        assert [r["kind"] for r in body["decisions"]] == ["circuit", "alert"] and body["skipped"] == 0
        body = json.load(urllib.request.urlopen(base + "?since=2h", timeout=5))
        assert len(body["decisions"]) == 3
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + "?since=soon", timeout=5)
        assert e.value.code == 400 and "use a duration ago" in json.load(e.value)["error"]
    finally:
        srv.stop()


def test_daily_summary_is_sent_once_per_completed_day(tmp_path):
    from datetime import datetime, timezone

    from sync.telemetry import DecisionSummaryLoop

    day1 = datetime(2026, 5, 1, tzinfo=timezone.utc).timestamp()
    clock = [day1 + 3600]
    log = DecisionLog(tmp_path, clock=lambda: clock[0]).open()
    log.record("circuit", "pipeline/mirror", {"to": "open", "reason": "low_confidence"})
    log.record("circuit", "pipeline/mirror", {"to": "closed", "reason": "probes_ok"})
    log.record("model_update", "pose_landmark_full@1.1.0", {"state": "rolled_back"})
    log.record("model_rollback", "pose_landmark_full@1.1.0", {}, reason="rolled_back (health_check): boom")
    log.record("alert", "busy", {"transition": "opened"})
    clock[0] = day1 + 86400 + 60  # the next day
    log.record("alert", "busy", {"transition": "resolved"})
    log.close()
    sent = []
    now = [day1 + 86400 + 7200]
    loop = DecisionSummaryLoop(sent.append, tmp_path, clock=lambda: now[0])
    (ev,) = loop.run_once()
    d = ev.data
    assert ev.kind == "decision_summary" and ev.stream == "telemetry" and d["day"] == "2026-05-01"
    assert d["records"] == 5 and d["by_kind"] == {"circuit": 2, "model_update": 1, "model_rollback": 1, "alert": 1}
    assert d["circuits"]["pipeline/mirror"] == {"opened": 1, "closed": 1, "reasons": {"low_confidence": 1}}
    assert d["updates"] == {"rolled_back": 1} and "boom" in d["rollbacks"][0]["reason"]
    assert d["alerts"] == {"busy": {"opened": 1}}
    assert loop.run_once() == []  # nothing more is due today
    assert DecisionSummaryLoop(sent.append, tmp_path, clock=lambda: now[0]).run_once() == []  # nor after a restart
    now[0] += 86400
    (ev2,) = DecisionSummaryLoop(sent.append, tmp_path, clock=lambda: now[0]).run_once()
    assert ev2.data["day"] == "2026-05-02" and ev2.data["alerts"] == {"busy": {"resolved": 1}}
    assert len(sent) == 2


def test_parse_since_forms():
    assert parse_since("90s", now=1000.0) == 910.0 and parse_since("2h", now=10_000.0) == 2800.0
    assert parse_since("2026-05-01T00:00:00Z") == parse_since("2026-05-01T02:00:00+02:00") == 1777593600.0
    assert parse_since("1777593600") == 1777593600.0


def test_an_unusable_log_folder_does_not_stop_the_runtime(tmp_path):
    from edge.app.config import parse_config
    from edge.app.operations import Operations
    from edge.core import decisions

    (tmp_path / "file").write_text("not a folder")
    cfg = parse_config({"device": {"id": "k1", "store": "s1", "kind": "kiosk"},
                        "decisions": {"path": str(tmp_path / "file" / "log")}})
    ops = Operations(cfg).open()
    assert ops.log is None and decisions.get_default() is None
    assert "decision_log_error" in ops.health()
    assert decisions.record("circuit", "x") is None  # recording is a no-op, not an error
    ops.close()
