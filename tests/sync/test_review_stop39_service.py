"""Review of the device service layer: the service supervisor (edge/app/service.py) when a probe keeps failing,
the periodic telemetry (sync/telemetry.py) over a real Mosquitto (not retained, strict JSON, uptime from the
monotonic clock), the daily decision summary on a device whose clock was never set, and the shadow evaluation's
detection matching (edge/app/shadow.py)."""
from __future__ import annotations

import datetime as dt
import json
import logging
import socket
import threading
import time

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from edge.app.service import ServiceConfig, ServiceSupervisor
from edge.core.events import CLOCK_SET
from sync import topics
from sync.outbox import Outbox
from sync.service import SyncService
from sync.telemetry import DecisionSummaryLoop, TelemetryLoop

from sync_helpers import device_settings, wait_until

T = topics.DeviceTopics("s001", "d001")


class _NotifySink:
    """A bare AF_UNIX datagram socket standing in for systemd's notify socket: records (monotonic time, message)."""

    def __init__(self, folder):
        self.path = str(folder / "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._th = threading.Thread(target=self._run, daemon=True)
        self._th.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            self.messages.append((time.monotonic(), data.decode()))

    def pings(self, since: float = 0.0) -> int:
        return sum(1 for t, m in self.messages if t >= since and "WATCHDOG=1" in m.split("\n"))

    def close(self) -> None:
        self._stop.set()
        self._th.join(2)
        self.sock.close()


class _Count(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)


# ---------------------------------------------------------------------------------------------- service supervisor
def test_a_failing_progress_probe_does_not_spin_the_supervisor(tmp_path):
    """A progress() that raised on every call left the supervisor's next ping time in the past: its thread woke
    every 10 ms and logged a traceback each time (~90 a second, forever without a watchdog), burning a core of a
    2-core device and flooding the journal. A failing probe is now retried on a short backoff and its traceback
    logged once; no ping is sent while the progress is unknown (systemd restarts a service whose probe stays broken)."""
    sink = _NotifySink(tmp_path)
    handler = _Count()
    logging.getLogger("edge.app.service").addHandler(handler)
    calls = [0]

    def broken():
        calls[0] += 1
        raise RuntimeError("progress probe broken")

    sup = ServiceSupervisor(ServiceConfig(stall_s=10), broken, threading.Event(),
                            env={"NOTIFY_SOCKET": sink.path, "WATCHDOG_USEC": "2000000"}).start()
    try:
        sup.ready()
        time.sleep(2.0)
        errors = [r for r in handler.records if r.levelno >= logging.ERROR]
        assert calls[0] <= 8, f"the probe was retried {calls[0]} times in 2 s"
        assert 1 <= len(errors) <= 2, f"{len(errors)} error records in 2 s"
        assert errors[0].exc_info is not None  # the first one carries the traceback
        assert sink.pings() == 0  # progress unknown: no keep-alive
    finally:
        logging.getLogger("edge.app.service").removeHandler(handler)
        sup.close()
        sink.close()


def test_a_transient_probe_failure_costs_no_watchdog_ping_interval(tmp_path):
    """The backoff after a failing probe must stay short: a one-off failure (a dict changed size while iterated)
    must not skip the next ping for a whole WatchdogSec / 2, or two in a row would get a healthy service killed."""
    sink = _NotifySink(tmp_path)
    fail = [True]

    def progress():
        if fail[0]:
            fail[0] = False
            raise RuntimeError("dictionary changed size during iteration")
        return {"main": time.monotonic()}

    sup = ServiceSupervisor(ServiceConfig(stall_s=10), progress, threading.Event(),
                            env={"NOTIFY_SOCKET": sink.path, "WATCHDOG_USEC": "10000000"}).start()  # ping every 5 s
    try:
        t0 = time.monotonic()
        sup.ready()
        assert wait_until(lambda: sink.pings() >= 1, 3), "no ping within 3 s of a one-off probe failure"
        assert time.monotonic() - t0 < 2.0
    finally:
        sup.close()
        sink.close()


# ---------------------------------------------------------------------------------------------- telemetry
def test_health_uptime_ignores_a_wall_clock_step(tmp_path, monkeypatch):
    """uptime_s was time.time() - start: an NTP step (a device that booted with a wrong clock and then reached NTP)
    made it jump by hours, or go negative. It is a duration, so it comes from the monotonic clock."""
    outbox = Outbox(tmp_path / "outbox.db")
    outbox.open()
    try:
        loop = TelemetryLoop(outbox.emit, 60, lambda: {}, str(tmp_path))
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() - 3600.0)  # NTP steps the clock back an hour
        up = loop.sample().data["uptime_s"]
        monkeypatch.setattr(time, "time", real)
        assert 0 <= up < 60, up
    finally:
        outbox.close()


def test_telemetry_reaches_the_broker_not_retained_as_strict_json(broker, tmp_path):
    """Health records go out on `telemetry` at QoS 1, never retained (a retained health record would be served to
    every later subscriber as if current), as strict JSON even with a NaN gauge in the extras."""
    got: list[tuple[bool, int, bytes]] = []
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="cloud-telemetry", protocol=mqtt.MQTTv5)
    sub.on_message = lambda c, u, m: got.append((bool(m.retain), m.qos, bytes(m.payload)))
    sub.connect("127.0.0.1", broker.port)
    sub.subscribe(T.telemetry, qos=1)
    sub.loop_start()
    svc = SyncService(*device_settings(broker.port, tmp_path / "o.db", telemetry_interval_s=0.3))
    svc.start()
    try:
        svc.telemetry._extra = lambda: {"temp_c": float("nan"), "load": [1.0, float("inf")]}
        assert wait_until(lambda: len(got) >= 2, 15), got
    finally:
        svc.stop()
        sub.loop_stop()
        sub.disconnect()
    for retain, qos, raw in got:
        assert not retain and qos == 1
        batch = json.loads(raw, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
        for rec in batch["events"]:
            assert rec["kind"] == "health" and rec["data"]["temp_c"] is None and rec["data"]["load"] == [1.0, None]
            assert rec["data"]["uptime_s"] >= 0 and abs(rec["ts"] - time.time()) < 60  # ts: wall time
    # a retained copy would be handed to a new subscriber: there is none
    late: list[bool] = []
    sub2 = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="cloud-late", protocol=mqtt.MQTTv5)
    sub2.on_message = lambda c, u, m: late.append(bool(m.retain))
    sub2.connect("127.0.0.1", broker.port)
    sub2.subscribe(T.telemetry, qos=1)
    sub2.loop_start()
    time.sleep(0.5)
    sub2.loop_stop()
    sub2.disconnect()
    assert late == []


def test_decision_summary_waits_for_a_set_clock(tmp_path):
    """A device without an RTC starts at 1970 until NTP answers. The summary loop then sent a summary for
    1969-12-31 and recorded it as the last day sent, so once the clock was set it caught up a week of days the
    device never ran, instead of sending only yesterday as a first start does. Nothing is sent (nor recorded) while
    the clock is unset."""
    from edge.core.decisions import DecisionLog, DecisionLogConfig

    dlog = DecisionLog.from_config(DecisionLogConfig(), tmp_path).open()
    dlog.close()
    now = [1000.0]  # an unset clock
    sent = []
    loop = DecisionSummaryLoop(sent.append, tmp_path, clock=lambda: now[0])
    assert loop.run_once() == [] and sent == []
    assert not (tmp_path / DecisionSummaryLoop.STATE).exists()
    now[0] = max(time.time(), CLOCK_SET + 86400 * 30)  # NTP answered
    out = loop.run_once()
    yesterday = dt.datetime.fromtimestamp(now[0], dt.timezone.utc).date() - dt.timedelta(days=1)
    assert [e.data["day"] for e in out] == [yesterday.isoformat()]



def test_decision_summary_after_a_clock_that_ran_ahead_goes_on_from_yesterday(tmp_path):
    """The clock ran a year ahead (set wrong by hand, a bad RTC) and the loop recorded that future day as the last
    one sent; once the clock is corrected it sent nothing until that date came round (a year without summaries).
    It goes on from yesterday."""
    from edge.core.decisions import DecisionLog, DecisionLogConfig

    DecisionLog.from_config(DecisionLogConfig(), tmp_path).open().close()
    now = [max(time.time(), CLOCK_SET + 86400 * 30)]
    sent = []
    loop = DecisionSummaryLoop(sent.append, tmp_path, clock=lambda: now[0] + 365 * 86400)
    assert len(loop.run_once()) == 1  # the year-ahead "yesterday"
    loop = DecisionSummaryLoop(sent.append, tmp_path, clock=lambda: now[0])  # corrected, then restarted
    yesterday = dt.datetime.fromtimestamp(now[0], dt.timezone.utc).date() - dt.timedelta(days=1)
    assert [e.data["day"] for e in loop.run_once()] == [yesterday.isoformat()]
    assert loop.run_once() == []  # and only once

# ---------------------------------------------------------------------------------------------- shadow evaluation
def test_shadow_detection_matching_is_one_to_one():
    """Two people side by side found by the active detector, one box over both from the update: each active box
    overlapped the merged box at IoU >= 0.5, so both counted as found (recall 1.0) and an update that merges
    neighbours passed the min_recall gate. A candidate box now matches at most one active box."""
    from edge.app.shadow import _match
    from edge.people.nanodet import iou
    from sync.update_shadow import ShadowConfig, ShadowStats, judge

    active = np.array([[0, 0, 10, 20], [6, 0, 16, 20]], np.float64)  # IoU 0.25: both survive NMS
    merged = np.array([[3, 0, 13, 20]], np.float64)  # IoU 0.54 with each
    assert float(iou(active[0], merged).max()) >= 0.5 and float(iou(active[1], merged).max()) >= 0.5
    m = _match(active, merged, iou)
    assert m == {"active": 2, "candidate": 1, "matched_active": 1, "matched_candidate": 1}, m
    stats = ShadowStats()
    for _ in range(60):
        stats.compared += 1
        for k, v in m.items():
            stats.dets[k] += v
    rep = judge(stats, ShadowConfig(frames=50))
    assert not rep["passed"] and rep["recall"] == 0.5, rep
    # the best pairs are kept: an exact match is not given away to a weaker overlap
    cand = np.array([[0, 0, 10, 20], [6, 0, 16, 20]], np.float64)
    assert _match(active, cand, iou)["matched_active"] == 2
    assert _match(active, np.zeros((0, 4)), iou)["matched_active"] == 0
