"""Second look at operations and monitoring: non-finite and malformed metric data (business metrics, summary,
`edge top`), a device restarting under `edge top`, servers that are not a running device, a model answering NaN
(circuit breaker), a periodic task stopped mid-run, decision-log lines that parse but are not records, and an
outbox that fails under /metrics."""
from __future__ import annotations

import json
import logging
import math
import os
import signal
import socket
import sqlite3
import threading
import time
from argparse import Namespace

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from edge.core import metrics as M
from edge.core import monitoring as mon
from edge.core.events import Event

NOT_FINITE = (float("nan"), float("inf"), float("-inf"))


def strict_json(obj) -> str:
    return json.dumps(obj, allow_nan=False)


# ------------------------------------------------------------------------------------------ metric values
def test_business_metrics_skip_values_that_are_not_finite_numbers():
    """A queue_changed with a NaN length used to set the gauge to NaN, and every later summary (telemetry's
    `monitor`, `edge top`) raised on int(NaN); an infinite dwell made the histogram's sum infinite for good."""
    for i, bad in enumerate(NOT_FINITE):
        q, zone = f"r38-till-{i}", f"r38-zone-{i}"
        mon.observe_event(Event("queue_changed", {"queue": q, "length": 3, "wait_estimate_s": 12.0}))
        mon.observe_event(Event("queue_changed", {"queue": q, "length": bad, "wait_estimate_s": bad}))
        mon.observe_event(Event("zone_left", {"zone": zone, "dwell_s": 4.0}))
        mon.observe_event(Event("zone_left", {"zone": zone, "dwell_s": bad}))
        assert M.SHOPPER_QUEUE_LENGTH.labels(q)._value.get() == 3  # the last good reading stands
        assert M.SHOPPER_QUEUE_WAIT.labels(q)._value.get() == 12.0
        assert M.ZONE_VISITS.labels(zone)._value.get() == 2  # the visit counts, its dwell does not
        assert M.ZONE_DWELL.labels(zone)._sum.get() == 4.0
    summary = mon.summarize(mon.registry_samples())
    strict_json(summary)
    assert summary["business"]["queues"]["r38-till-0"] == {"length": 3, "wait_s": 12.0}


METRICS_WITH_BAD_VALUES = """\
# TYPE edge_stream_frames_processed_total counter
edge_stream_frames_processed_total{stream="main"} NaN
edge_stream_frames_in_total{stream="main"} +Inf
edge_outbox_depth{stream="events"} NaN
edge_sync_queue_depth{queue="inflight"} -Inf
edge_people NaN
edge_shoppers_total{source="x"} +Inf
edge_input_stat{stream="main",stat="blur"} NaN
edge_input_drift{stream="main",stat="blur"} +Inf
edge_input_stat 3
edge_temperature_celsius NaN
edge_alerts_open{severity="high"} 1
edge_process_cpu_percent NaN
edge_model_latency_ms_bucket{model="m",backend="b",precision="p",le="nonsense"} 1
edge_model_latency_ms_bucket{model="m",backend="b",precision="p",le="+Inf"} 2
edge_model_latency_ms_count{model="m",backend="b",precision="p"} 2
edge_model_latency_ms_sum{model="m",backend="b",precision="p"} NaN
edge_events_total{kind="person_entered"} NaN
"""


def test_the_summary_and_edge_top_take_nan_inf_and_missing_labels():
    """A NaN/Inf sample or a sample without its usual label (another exporter, a hand-made scrape) raised
    ValueError/OverflowError/KeyError in summarize(), which crashed `edge top` and dropped telemetry's summary."""
    from edge.app.top import render

    s = mon.summarize(mon.parse_samples(METRICS_WITH_BAD_VALUES))
    strict_json(s)  # telemetry and `edge top --json` need strict JSON
    assert s["system"]["streams"]["main"] == {"processed": None, "in": None}
    assert s["system"]["outbox"]["depth"] == {"events": None} and s["system"]["cpu_pct"] is None
    assert s["business"]["people_now"] == 0 and s["business"]["alerts_open"] == {"": 1}
    assert s["model"]["inputs"]["main"] == {"blur": None, "drift": {"blur": None}, "baseline": True}
    assert s["model"]["models"]["m"]["runs"] == 2
    text = render(s, {"device": "d", "kind": "k", "status": "ok"}, "http://x")
    assert "None" not in text and "main" in text


def _scrape(processed: int, runs: int) -> dict:
    return mon.parse_samples(f"""\
# TYPE edge_stream_frames_processed_total counter
edge_stream_frames_processed_total{{stream="main"}} {processed}
# TYPE edge_model_latency_ms histogram
edge_model_latency_ms_bucket{{model="m",backend="b",precision="p",le="10.0"}} {runs}
edge_model_latency_ms_bucket{{model="m",backend="b",precision="p",le="+Inf"}} {runs}
edge_model_latency_ms_count{{model="m",backend="b",precision="p"}} {runs}
edge_model_latency_ms_sum{{model="m",backend="b",precision="p"}} {runs * 5}
""")


def test_live_rates_after_the_device_restarted_count_from_zero():
    """`edge top` keeps the previous scrape; after the device restarted its counters are lower, and the view
    showed negative FPS and run counts (-490 fps, -980 runs) instead of what the new process did."""
    before, after = _scrape(1000, 1000), _scrape(20, 20)
    s = mon.summarize(after, before, 2.0)
    assert s["system"]["streams"]["main"]["fps"] == 10.0
    assert s["model"]["models"]["m"]["runs"] == 20 and s["model"]["models"]["m"]["p50_ms"] is not None
    s = mon.summarize(_scrape(1040, 1030), before, 2.0)  # no restart: the change since the previous scrape
    assert s["system"]["streams"]["main"]["fps"] == 20.0 and s["model"]["models"]["m"]["runs"] == 30


# ------------------------------------------------------------------------------------------ edge top
class RawServer:
    """A TCP server answering each connection with `reply(request_path) -> bytes` (None: accept and say nothing)."""

    def __init__(self, reply):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.reply, self.held = reply, []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            request = conn.recv(65536).decode(errors="replace")
            path = request.split(" ")[1] if request.count(" ") >= 2 else ""
            body = self.reply(path)
            if body is None:
                self.held.append(conn)
                continue
            conn.sendall(body)
            conn.close()

    def close(self):
        self.sock.close()
        for c in self.held:
            c.close()


def top_args(url: str, **kw) -> Namespace:
    return Namespace(**{"url": url, "config": "", "interval": 0.2, "once": True, "json": False, "timeout": 3.0,
                        **kw})


def http(body: str, status: str = "200 OK") -> bytes:
    return f"HTTP/1.0 {status}\r\nContent-Length: {len(body)}\r\n\r\n{body}".encode()


@pytest.mark.parametrize("reply, says", [
    (lambda path: b"SSH-2.0-OpenSSH_9.6\r\n", "BadStatusLine"),  # not an HTTP server
    (lambda path: b"HTTP/1.0 200 OK\r\nContent-Length: 5000\r\n\r\n# TYPE edge_", "IncompleteRead"),  # cut off
    (lambda path: http('edge_people 1\n' if path == "/metrics" else "[1, 2]"), "not the JSON object"),
])
def test_edge_top_names_a_server_that_is_not_a_running_device(reply, says, caplog):
    """A non-HTTP answer or a response cut off by a restarting device raised http.client exceptions that are not
    OSErrors (a traceback, and the live view ended); a /healthz that is not an object crashed render()."""
    from edge.app import top

    srv = RawServer(reply)
    try:
        with caplog.at_level(logging.ERROR, logger="edge.app.top"):
            assert top.run(top_args(srv.url)) == 1
    finally:
        srv.close()
    assert f"cannot read {srv.url}/metrics" in caplog.text and says in caplog.text


def test_edge_top_refuses_an_interval_or_timeout_that_is_not_positive(caplog):
    """--interval -1 raised ValueError from time.sleep once the device was unreachable (0 polled in a busy loop)."""
    from devtools.broker import free_port

    from edge.app import top

    url = f"http://127.0.0.1:{free_port()}"
    with caplog.at_level(logging.ERROR, logger="edge.app.top"):
        assert top.run(top_args(url, once=False, interval=-1.0)) == 2
        assert top.run(top_args(url, interval=0.0)) == 2
        assert top.run(top_args(url, timeout=0.0)) == 2
    assert "--interval -1.0: use a number of seconds above 0" in caplog.text and "--timeout 0.0" in caplog.text


def test_ctrl_c_ends_the_live_view_while_it_waits_for_a_device_that_does_not_answer():
    """Ctrl-C was handled only in the sleep between good refreshes: pressed while a scrape of a hung device
    waited (or in the sleep after a failed one) it ended `edge top` with a traceback."""
    from edge.app import top

    srv = RawServer(lambda path: None)  # accepts, never answers: the scrape waits for its timeout
    # Python's own Ctrl-C handler: a test run started in the background (`cmd &`) inherits SIGINT ignored, and
    # the signal would then never arrive
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        rc = top.run(top_args(srv.url, once=False, timeout=5.0))
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C escaped `edge top` as a traceback")
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, old)
        srv.close()
    assert rc == 0


# ------------------------------------------------------------------------------------------ circuit breaker
def test_a_model_answering_nan_opens_its_breaker_and_the_transition_stays_strict_json():
    """NaN < threshold is False, so a model whose confidence output was NaN (a broken conversion) counted as
    confident: its breaker never opened and a NaN half-open probe counted as good."""
    from edge.core.breaker import CLOSED, HALF_OPEN, OPEN, BreakerBoard, BreakerConfig
    from edge.core.events import ListSink
    from sync.payloads import dumps

    t = [100.0]
    sink = ListSink()
    board = BreakerBoard(BreakerConfig(window_s=2, min_samples=5, open_s=1, probe_samples=3), sink=sink,
                         clock=lambda: t[0])
    b = board.get("model", "r38_pose_landmarks")
    for i in range(40):
        t[0] += 0.1
        b.record(ok=True, presence=float("nan") if i % 2 else 0.9)  # every other sample broken
    assert b.state == CLOSED  # a share of 0.5 bad samples is under open_fraction 0.8
    for _ in range(30):
        t[0] += 0.1
        b.record(ok=True, presence=float("nan"))
        if b.state != CLOSED:
            break
    assert b.state == OPEN
    opened = b.last_open
    assert opened.reason == "low_confidence" and opened.summary.startswith("presence not a number in ")
    assert opened.inputs["signals"]["presence"]["not_a_number"] > 0
    t[0] += 1.5
    assert b.state == HALF_OPEN
    b.record(ok=True, presence=float("nan"))  # a NaN probe is a failed probe
    assert b.state == OPEN and b.last.reason == "probe_failed"
    assert b.last.inputs["signals"] == {"presence": None}
    for ev in sink.events:  # every transition event is sendable (payloads refuse NaN)
        dumps(ev.data)


# ------------------------------------------------------------------------------------------ periodic tasks
def test_stop_while_a_run_is_in_progress_says_so_and_no_run_starts_after_it(caplog):
    """stop() gave up after join_s without a word, so the runtime went on to release what the run still used
    (the retention loop's outbox and run lock); now it returns False (logged) until the run has returned."""
    from edge.core.periodic import Periodic

    entered, release = threading.Event(), threading.Event()

    class Slow(Periodic):
        thread_name, interval_s, join_s = "r38-slow", 0.01, 0.2
        runs = 0

        def run_once(self):
            Slow.runs += 1
            entered.set()
            release.wait(10)
            raise RuntimeError("a failing run is logged, not fatal")

    p = Slow().start()
    assert entered.wait(5)
    with caplog.at_level(logging.WARNING, logger="edge.core.periodic"):
        assert p.stop() is False
    assert "r38-slow: a run is still in progress" in caplog.text
    release.set()
    deadline = time.monotonic() + 5
    while p.stop() is not True:
        assert time.monotonic() < deadline
    assert Slow.runs == 1


# ------------------------------------------------------------------------------------------ decision log
def test_lines_that_parse_but_are_not_records_are_skipped_everywhere(tmp_path, capsys):
    """A complete line with a seq of 1e999 made int() raise OverflowError: `edge log decisions`, GET /decisions
    and DecisionLog.open() (so `edge run` itself) failed; a ts of 10**400 broke the retention's trim; an unhashable
    kind broke --kind; a ts beyond the calendar broke the printed line."""
    from edge.app import log_cli
    from edge.core.decisions import ACTIVE, DecisionLog, ReadStats, read_decisions, trim_segment

    good = [{"seq": i, "ts": 1_700_000_000 + i, "kind": "service", "subject": "s", "reason": "r", "data": {}}
            for i in range(3)]
    bad = ['{"seq":1e999,"ts":1,"kind":"service"}', '{"seq":7,"ts":' + "1" * 400 + ',"kind":"service"}',
           '{"seq":8,"ts":NaN,"kind":"service"}', '{"seq":9,"ts":1,"kind":["service"]}', '[1,2,3]', '"text"']
    far = {"seq": 3, "ts": 1e300, "kind": "service", "subject": {"nested": 1}, "reason": "far future", "data": {}}
    lines = [json.dumps(good[0]), *bad[:3], json.dumps(good[1]), *bad[3:], json.dumps(good[2]), json.dumps(far)]
    rotated = tmp_path / "decisions.1.jsonl"
    rotated.write_text("\n".join(lines) + "\n")
    (tmp_path / ACTIVE).write_text('{"seq":4,"ts":1700000010,"kind":"serv')  # torn by a kill -9

    stats = ReadStats()
    assert [r["seq"] for r in read_decisions(tmp_path, stats=stats)] == [0, 1, 2, 3]
    assert stats.skipped == len(bad) + 1
    assert [r["seq"] for r in read_decisions(tmp_path, kinds=["service"])] == [0, 1, 2, 3]
    assert log_cli.run(Namespace(dir=str(tmp_path), config=None, since=None, kind=None, limit=0, json=False)) == 0
    out = capsys.readouterr()
    assert "far future" in out.out and "ts=1e+300" in out.out and f"skipped {len(bad) + 1}" in out.err

    dl = DecisionLog(tmp_path).open()  # cuts the torn line, continues after the last good seq
    try:
        assert dl.record("service", "after", {}, wait=True) == 4
    finally:
        dl.close()
    removed, deleted = trim_segment(rotated, 1_700_000_002)  # unreadable lines are kept, old records go
    assert (removed, deleted) == (2, False)
    assert [r["seq"] for r in read_decisions(tmp_path)] == [2, 3, 4]


# ------------------------------------------------------------------------------------------ /metrics
def test_an_outbox_that_fails_under_a_scrape_leaves_the_rest_of_metrics(tmp_path, caplog):
    """The oldest-row query ran inside the scrape: when it raised (a failing disk, a broken database) /metrics
    answered 500 and every metric of the device was lost, not just that one."""
    from edge.core.device import DeviceIdentity
    from sync.config import SyncConfig
    from sync.service import SyncService

    cfg = SyncConfig.model_validate({"broker": "", "telemetry_interval_s": 0, "model_updates": False,
                                     "outbox_path": str(tmp_path / "outbox.sqlite")})
    svc = SyncService(DeviceIdentity(id="d-r38", store="s-ops", kind="kiosk"), cfg)
    svc.start()
    registry = CollectorRegistry()
    registry.register(M.SyncCollector(svc))
    try:
        assert b"edge_outbox_oldest_age_seconds 0.0" in generate_latest(registry)
        other = sqlite3.connect(tmp_path / "outbox.sqlite")
        other.execute("DROP TABLE reliable")  # what the device's connection now finds: no such table
        other.close()
        with caplog.at_level(logging.ERROR, logger="edge.core.metrics"):
            text = generate_latest(registry).decode()
            generate_latest(registry)
        assert "edge_outbox_depth" in text and "edge_mqtt_connected 0.0" in text
        assert "edge_outbox_oldest_age_seconds" not in text
        assert caplog.text.count("cannot read the oldest outbox row") == 1  # once, not every scrape
    finally:
        svc.stop()


def test_the_real_exposition_has_one_help_and_type_per_family_and_escapes_labels():
    """Label values from the field (zone names, rules) carry quotes, backslashes and newlines; the text format
    must escape them and keep one HELP/TYPE per family, so a strict parser reads every sample back."""
    from prometheus_client.parser import text_string_to_metric_families

    zone = 'back "room"\\ne\nw'
    mon.observe_event(Event("zone_left", {"zone": zone, "dwell_s": 3.0}))
    text = generate_latest().decode()
    for kind in ("# HELP ", "# TYPE "):
        names = [line.split()[2] for line in text.splitlines() if line.startswith(kind)]
        assert len(names) == len(set(names))
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert any(s.labels.get("zone") == zone for s in fams["edge_zone_visits"].samples)
    assert all(math.isfinite(s.value) for s in fams["edge_zone_dwell_seconds"].samples)
