"""Second look at the operator tools, run as the real `edge` CLI in subprocesses on real files: `edge log decisions`
and `edge top` piped into `head`, `edge top --url` without its scheme or with a bad port, and `edge data purge
--older-than` with a number that is not a duration (a bare `30`, `nan`, `inf`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from ops_util import REPO

DAY = 86400.0
HEAD = '[device]\nid = "d1"\nstore = "s1"\nkind = "kiosk"\n'


def edge(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.app.cli", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True, timeout=timeout)


def first_line_then_close(*args) -> tuple[str, int, str]:
    """Run `edge ARGS | head -1`: read one line of stdout, close the pipe, return (line, exit status, stderr)."""
    p = subprocess.Popen([sys.executable, "-m", "edge.app.cli", *map(str, args)], cwd=REPO, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        p.stdout.close()
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return line, p.returncode, err


# ------------------------------------------------------------------------------------------ pipes
def test_edge_log_decisions_into_head_ends_quietly(tmp_path):
    """`edge log decisions ... | head` (the way an operator reads a long log) ended in a BrokenPipeError traceback
    (exit 1) once head had its lines and closed the pipe."""
    from edge.core.decisions import DecisionLog

    folder = tmp_path / "dec"
    dl = DecisionLog(folder, max_bytes=4 * 2**20).open()
    for i in range(3000):  # ~400 KB of output: far more than a pipe's buffer
        dl.record("alert", f"rule-{i}", {"i": i}, reason="opened: occupancy >= 1 " + "x" * 60)
    dl.close()
    for extra in ((), ("--json",)):
        line, rc, err = first_line_then_close("log", "decisions", "--dir", folder, *extra)
        assert "rule-0" in line
        assert rc == 0 and "Traceback" not in err and "BrokenPipeError" not in err, err


def test_edge_top_into_head_ends_quietly():
    """`edge top | head` (live view, not a terminal: one block per refresh) ended in a BrokenPipeError traceback
    when head closed the pipe."""
    from devtools.broker import free_port

    line, rc, err = first_line_then_close("top", "--url", f"http://127.0.0.1:{free_port()}", "--interval", "0.05",
                                          "--timeout", "0.5")
    assert line.startswith("cannot read http://127.0.0.1:")
    assert rc == 0 and "Traceback" not in err and "BrokenPipeError" not in err, err


# ------------------------------------------------------------------------------------------ edge top --url
def test_edge_top_takes_an_address_without_its_scheme():
    """`edge top --url 127.0.0.1:8080` (host:port, as `[http]` has them) failed with "unknown url type" and asked
    whether `edge run` was running, for ever in the live view, while the device was answering."""
    from edge.core.http_server import LocalHttpServer

    srv = LocalHttpServer("127.0.0.1", 0, lambda: (True, {"device": "d1", "kind": "kiosk", "status": "ok"}),
                          preview=False).start()
    port = srv.port
    try:
        r = edge("top", "--once", "--json", "--url", f"127.0.0.1:{port}")
    finally:
        srv.stop()
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["url"] == f"http://127.0.0.1:{port}" and out["health"]["device"] == "d1"


@pytest.mark.parametrize("url, says", [
    ("http://127.0.0.1:abc", "port"),
    ("http://127.0.0.1:99999", "port"),
    ("ftp://127.0.0.1:8080", "http://HOST:PORT"),
    ("http://", "http://HOST:PORT"),
])
def test_edge_top_refuses_a_url_it_can_never_read(url, says):
    """A URL that cannot name a device (a port that is not a number or out of range, another scheme, no host) was
    retried for ever by the live view with "is `edge run` running?": bad usage is exit 2 with the form to use."""
    r = edge("top", "--url", url, "--interval", "0.05", timeout=20)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert f"--url {url}" in r.stderr and says in r.stderr, r.stderr
    assert "is `edge run` running" not in r.stdout + r.stderr


@pytest.mark.parametrize("flag, value", [("--interval", "inf"), ("--timeout", "inf"), ("--timeout", "1e12"),
                                         ("--interval", "1e12")])
def test_edge_top_refuses_an_interval_or_timeout_without_end(flag, value):
    """`--timeout inf` (or 1e12) ended `edge top` in an OverflowError traceback from the socket at the first scrape,
    `--interval inf` from time.sleep after the first refresh: exit 2 naming the flag, as for 0 or -1."""
    from devtools.broker import free_port

    r = edge("top", "--url", f"http://127.0.0.1:{free_port()}", flag, value, timeout=20)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert f"{flag} {float(value)}: use a number of seconds above 0" in r.stderr, r.stderr


# ------------------------------------------------------------------------------------------ edge data purge
def _device(tmp_path, now: float):
    """A kiosk config whose outbox, decision log and shelf reference live in tmp_path, with a 40 days old try-on
    session, dead letter and decision record, and a shelf reference saved 40 days ago."""
    from edge.app.config import load_config
    from edge.core.decisions import DecisionLog
    from edge.core.events import Event
    from sync.outbox import Outbox

    shelf = tmp_path / "shelf"
    text = (REPO / "device_configs" / "kiosk.toml").read_text()
    text = text.replace('broker = ""', f'broker = ""\noutbox_path = "{tmp_path / "outbox.sqlite"}"')
    text += f'\n[decisions]\npath = "{tmp_path / "dec"}"\n'
    path = tmp_path / "kiosk.toml"
    path.write_text(text)
    cfg = load_config(path)
    cfg.analytics.planogram.reference_dir = str(shelf)
    with Outbox(cfg.sync.resolved_outbox_path(cfg.device.id)) as ob:
        seq = ob.emit(Event("tryon_session", {"sku": "MARKER", "duration_s": 3.0}))
        ob.db.execute("UPDATE reliable SET created = ? WHERE seq = ?", (now - 40 * DAY, seq))
        ob.emit(Event("bad kind!", {"x": 1}))  # invalid: dead-lettered
        ob.db.execute("UPDATE dead_letter SET ts = ?", (now - 40 * DAY,))
    dl = DecisionLog(tmp_path / "dec", retention_s=3650 * DAY, clock=lambda: now - 40 * DAY).open()
    dl.record("alert", "old", {}, wait=True)
    dl.close()
    return path, cfg


def _left(tmp_path) -> tuple[int, int, int]:
    """(outbox session records + dead letters, decision records, decision-log files) left on disk."""
    import sqlite3

    from edge.core.decisions import read_decisions

    with sqlite3.connect(tmp_path / "outbox.sqlite") as c:
        rows = c.execute("SELECT (SELECT COUNT(*) FROM reliable WHERE kind = 'tryon_session') + "
                         "(SELECT COUNT(*) FROM dead_letter)").fetchone()[0]
    recs = list(read_decisions(tmp_path / "dec"))
    return rows, len(recs), len(os.listdir(tmp_path / "dec"))


@pytest.mark.parametrize("value", ["30", "0", "7.5", "nan", "inf", "-inf", "1e400"])
def test_purge_older_than_a_number_without_its_unit_is_refused(tmp_path, value):
    """`--older-than` is a duration (90s, 15m, 2h, 7d, 1w), but a bare number was taken as epoch seconds: `30`
    (meant: 30 days) or `0` purged nothing older than 1970 and said so with exit 0, the operator believing the
    old data gone; `nan` made every cutoff comparison false, so it removed the whole decision log (as --all) but
    no outbox record; `inf` purged everything. Now: exit 2 naming the unit, nothing touched."""
    path, _ = _device(tmp_path, time.time())
    before = _left(tmp_path)
    assert before == (2, 1, 1)
    r = edge("data", "purge", "--config", path, f"--older-than={value}")  # = : argparse takes -inf as a value
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert f"--older-than {value!r}" in r.stderr and "7d" in r.stderr, r.stderr
    assert _left(tmp_path) == before


def test_purge_older_than_a_duration_or_a_time_still_works(tmp_path):
    """The forms the docs name (7d) and an ISO 8601 time keep working after bare numbers are refused."""
    path, _ = _device(tmp_path, time.time())
    r = edge("data", "purge", "--config", path, "--older-than", "2025-01-01T00:00:00Z", "--json")
    assert r.returncode == 0, r.stderr
    assert (json.loads(r.stdout)["session_records"], json.loads(r.stdout)["decision_records"]) == (0, 0)
    r = edge("data", "purge", "--config", path, "--older-than", " 30d ", "--json")
    c = json.loads(r.stdout)
    assert r.returncode == 0 and (c["session_records"], c["dead_letters"], c["decision_records"]) == (1, 1, 1), c


@pytest.mark.slow
def test_purge_says_when_another_process_keeps_the_deleted_records_on_disk(tmp_path):
    """While another process held a read transaction on the outbox (an `sqlite3` shell, a backup copying it), the
    purge's checkpoints could not write the rewritten file back: it waited a minute, said "removed 1 session
    record(s) ... (compacted)" with exit 0, and the record's content was still in the outbox file. Now it says so
    (exit 1, naming the fix), and a second purge once the reader is gone removes it from the disk."""
    path, cfg = _device(tmp_path, time.time())
    ob = cfg.sync.resolved_outbox_path(cfg.device.id)
    assert b"MARKER" in ob.read_bytes()
    reader = subprocess.Popen([sys.executable, "-c", "import sqlite3, sys, time\n"
                               f"c = sqlite3.connect({str(ob)!r}, isolation_level=None)\n"
                               "c.execute('BEGIN'); c.execute('SELECT COUNT(*) FROM reliable').fetchone()\n"
                               "print('reading', flush=True); time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "reading"
        r = edge("data", "purge", "--config", path, "--older-than", "7d", timeout=300)
    finally:
        reader.kill()
        reader.wait()
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stdout + r.stderr
    assert "removed 1 session record(s)" in r.stdout and "(compacted)" not in r.stdout, r.stdout
    assert f"still in {ob}" in r.stderr and "another process has it open" in r.stderr, r.stderr
    r = edge("data", "purge", "--config", path, "--older-than", "7d")
    assert r.returncode == 0 and "(compacted)" in r.stdout, r.stdout + r.stderr
    assert not any(b"MARKER" in p.read_bytes() for p in tmp_path.glob("outbox.sqlite*") if p.is_file())


# ------------------------------------------------------------------------------------------ model selection record
@pytest.mark.parametrize("entry", [
    {"chosen_at": 3.0},  # no median_ms (newer than the good entry: the one reported)
    {"chosen_at": 3.0, "median_ms": None},
    {"chosen_at": 3.0, "median_ms": [3.4]},
    {"chosen_at": "yesterday", "median_ms": {"onnxruntime": 3.4}},
])
def test_a_cached_auto_choice_with_missing_or_odd_fields_does_not_stop_the_model_opening(tmp_path, entry):
    """`backend = "auto"` reuses a cache entry that names a backend and a precision (edge/backends/auto.py warns and
    selects again only when those are missing), but the decision record of the selection read its `median_ms` and
    `chosen_at` unchecked: an entry without them (hand-edited, or from another version) raised AttributeError /
    TypeError in record_selection and the pose pipeline did not open."""
    from types import SimpleNamespace

    from edge.app.config import load_config
    from edge.app.operations import auto_choice, record_selection

    ref = load_config(REPO / "device_configs" / "kiosk.toml").models.pose_landmarks.model_copy(
        update={"backend": "auto"})
    good = {"model": ref.name, "backend": "onnxruntime", "precision": "fp32", "chosen_at": 2.0,
            "median_ms": {"onnxruntime": 3.4}}
    (tmp_path / "backend_choice.json").write_text(json.dumps(
        {"a": {"model": ref.name, "backend": "onnxruntime", "precision": "fp32", **entry}, "b": good}))
    zoo = SimpleNamespace(cache=tmp_path, model_dir=lambda name: tmp_path / "models" / name / "1.0")
    info = SimpleNamespace(backend="onnxruntime", precision="fp32", path=str(tmp_path / "m.onnx"),
                           runtime_version="1.0")
    choice = auto_choice(zoo, ref.name, info)
    assert choice is not None and choice["median_ms"] in ({"onnxruntime": 3.4}, None)
    record_selection(zoo, "pose_landmarks", ref, SimpleNamespace(info=info), "start")  # raised before

