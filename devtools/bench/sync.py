"""`edge bench sync [--json PATH]`: end-to-end events/s through the durable outbox at QoS 1 to the reference
consumer, CPU-seconds per 10k events, recovery time after a broker outage with a backlog, and the cost of the
per-stream outbox durability (`--only durability`: emit rate of fsynced alerts vs events, no broker needed).

Starts its own mosquitto (sync/mosquitto/dev.conf) on a free loopback port and the consumer as a separate
process (`edge sync consumer`). The device (outbox + delivery + paho) runs in this process with default
[sync] settings. "End to end" = from the first `emit` until the device holds the cloud's ack for the last event.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

log = logging.getLogger(__name__)

DATA = {"zone": "entrance", "person": 3, "dwell_s": 4.2, "bbox": [120, 80, 64, 180], "conf": 0.91}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events", type=int, default=50_000, help="events of the throughput phase")
    p.add_argument("--outage-s", type=float, default=30.0, help="broker down this long in the outage phase")
    p.add_argument("--outage-rate", type=float, default=500.0, help="events/s emitted during and after the outage")
    p.add_argument("--unbatched-events", type=int, default=10_000, help="also measure batch_max=1 (0 = skip)")
    p.add_argument("--durability-events", type=int, default=3000,
                   help="events per stream setting in the durability phase (0 = skip)")
    p.add_argument("--durability-dir", default="",
                   help="folder for the durability phase's outboxes (default: where device outboxes live; "
                        "never a tmpfs, where fsync costs nothing)")
    p.add_argument("--only", choices=["all", "durability"], default="all")


def run(args) -> int:
    result: dict = {}
    if args.durability_events:
        result["durability"] = _durability(args.durability_events, args.durability_dir)
    if args.only == "durability":
        result["env"] = _environment()
        return _report(result, args.json, need_lossless=False)
    bench = _Bench.setup()
    try:
        result.update(_throughput(bench, args.events))
        if args.unbatched_events:
            result["events_per_s_unbatched"] = _unbatched(bench, args.unbatched_events)
        outage, outage_events = _outage(bench, args.outage_s, args.outage_rate)
        result.update(outage)
        result.update(_accounting(bench.db, {"d-throughput": args.events, "d-unbatched": args.unbatched_events,
                                             "d-outage": outage_events}))
    finally:
        bench.close()
    result["env"] = _environment()
    return _report(result, args.json)


# ---------------------------------------------------------------- setup
class _Bench:
    """A temporary folder, a mosquitto on a free port, the reference consumer process; devices on demand."""

    def __init__(self, work: str, broker, consumer) -> None:
        self.work, self.broker, self.consumer = work, broker, consumer
        self.db = os.path.join(work, "cloud.sqlite")

    @classmethod
    def setup(cls) -> "_Bench":
        from devtools.broker import Broker

        work = tempfile.mkdtemp(prefix="sf-bench-sync-")
        broker = Broker(os.path.join(work, "broker")).start()
        cons = subprocess.Popen([sys.executable, "-m", "edge.app.cli", "--log-level", "WARNING", "sync", "consumer",
                                 "--port", str(broker.port), "--db", os.path.join(work, "cloud.sqlite"),
                                 "--client-id", "bench-cloud", "--stats-s", "0"], stdout=subprocess.DEVNULL)
        bench = cls(work, broker, cons)
        try:
            if not _wait(lambda: "as bench-cloud" in broker.log_text(), 20):
                raise RuntimeError("consumer did not connect")
            time.sleep(0.3)
        except BaseException:
            bench.close()
            raise
        return bench

    def device(self, name: str, **sync):
        """A connected SyncService of device `name` (default [sync] settings unless overridden)."""
        from edge.core.device import DeviceIdentity
        from sync.config import SyncConfig
        from sync.service import SyncService

        config = SyncConfig.model_validate({"broker": "127.0.0.1", "port": self.broker.port, "telemetry_interval_s": 0,
                                            "outbox_path": os.path.join(self.work, f"{name}.sqlite"), **sync})
        svc = SyncService(DeviceIdentity(id=name, store="bench", kind="shelf-camera"), config)
        svc.start()
        if not svc.client.wait_connected(10):
            raise RuntimeError(f"device cannot connect: {svc.client.last_error}")
        return svc

    def cpu(self) -> tuple[float, float, float]:
        """CPU seconds so far of (this process, the consumer, the broker)."""
        return _self_cpu(), _proc_cpu(self.consumer.pid), _proc_cpu(self.broker.pid)

    def close(self) -> None:
        self.consumer.send_signal(signal.SIGINT)
        try:
            self.consumer.wait(10)
        except subprocess.TimeoutExpired:
            self.consumer.kill()
        self.broker.close()
        shutil.rmtree(self.work, ignore_errors=True)


# ---------------------------------------------------------------- scenarios
def _throughput(bench: _Bench, n: int) -> dict:
    """Default settings, batching on: events/s end to end and CPU per 10k events (device, consumer, broker)."""
    from edge.core.events import Event

    svc = bench.device("d-throughput")
    c0 = bench.cpu()
    t0 = time.perf_counter()
    for i in range(n):
        svc.outbox.emit(Event("person_entered", {**DATA, "i": i}, stream="alerts" if i % 100 == 0 else "events"))
    t_emit = time.perf_counter() - t0
    if not _wait(lambda: _acked_all(svc), 300):
        raise RuntimeError(f"throughput phase did not finish: {svc.metrics()}")
    dt = time.perf_counter() - t0
    c1 = bench.cpu()
    parts = {k: round((b - a) / n * 1e4, 3) for k, a, b in zip(("device", "consumer", "broker"), c0, c1)}
    m = svc.metrics()
    out = dict(events_per_s=round(n / dt, 1), cpu_s_per_10k=round(sum(parts.values()), 3),
               cpu_s_per_10k_parts=parts, events=n, emit_only_events_per_s=round(n / t_emit, 1),
               mqtt_messages=m["messages"], avg_events_per_message=round(m["sent"] / max(1, m["messages"]), 1))
    log.info("throughput: %s", out)
    svc.stop()
    return out


def _unbatched(bench: _Bench, n: int) -> float:
    """Reference without batching (batch_max = 1): events/s end to end."""
    from edge.core.events import Event

    svc = bench.device("d-unbatched", batch_max=1)
    t0 = time.perf_counter()
    for i in range(n):
        svc.outbox.emit(Event("person_entered", {**DATA, "i": i}))
    _wait(lambda: _acked_all(svc), 300)
    rate = round(n / (time.perf_counter() - t0), 1)
    svc.stop()
    return rate


def _outage(bench: _Bench, outage_s: float, rate: float) -> tuple[dict, int]:
    """Broker down for outage_s while events keep coming at rate: backlog size and the time to deliver it after
    the broker is back. Returns (results, events emitted in all)."""
    from edge.core.events import Event
    from sync.outbox import RELIABLE

    svc = bench.device("d-outage")
    stop = threading.Event()
    emitted = [0]

    def produce() -> None:
        t = time.monotonic()
        while not stop.is_set():
            d = t + emitted[0] / rate - time.monotonic()
            if d > 0:
                time.sleep(d)
            svc.outbox.emit(Event("person_entered", {**DATA, "i": emitted[0]}))
            emitted[0] += 1

    th = threading.Thread(target=produce, daemon=True)
    th.start()
    time.sleep(2.0)
    bench.broker.stop()
    t_down = time.monotonic()
    time.sleep(outage_s)
    backlog = sum(svc.outbox.depth().values())
    head = svc.outbox.max_seq(RELIABLE)
    bench.broker.start()
    t_up = time.monotonic()
    ok = _wait(lambda: svc.delivery.watermark >= head, 600)
    recovery = time.monotonic() - t_up
    time.sleep(1.0)
    stop.set()
    th.join()
    _wait(lambda: _acked_all(svc), 120)
    out = dict(outage_s=round(t_up - t_down, 2), backlog_events=backlog, outage_rate=rate,
               outage_recovery_s=round(recovery, 2) if ok else None,
               backlog_rate=svc.config.backlog_rate, go_backs=svc.metrics()["go_backs"])
    svc.stop()
    return out, emitted[0]


def _durability(n: int, folder: str, rounds: int = 6) -> dict:
    """Emit rate per outbox durability setting, side by side: alerts committed with fsync (synchronous=FULL, the
    default for alerts), events without (NORMAL, the default for events), and alerts without fsync (what the
    fsync costs). Interleaved rounds of n/rounds emits each; medians over rounds."""
    import statistics

    from edge.core.events import Event
    from sync.outbox import Outbox

    if not folder:
        import platformdirs

        folder = platformdirs.user_data_dir("storefront-edge")
    os.makedirs(folder, exist_ok=True)
    work = tempfile.mkdtemp(prefix="sf-bench-durability-", dir=folder)
    cases = {"alerts_fsync": ("alerts", ("alerts",)), "events_no_fsync": ("events", ("alerts",)),
             "alerts_no_fsync": ("alerts", ())}
    boxes = {k: Outbox(os.path.join(work, f"{k}.sqlite"), durable_streams=d).open() for k, (_, d) in cases.items()}
    rates: dict[str, list[float]] = {k: [] for k in cases}
    per = max(1, n // rounds)
    try:
        for r in range(rounds):
            for k, (stream, _) in cases.items():
                ob = boxes[k]
                t0 = time.perf_counter()
                for i in range(per):
                    ob.emit(Event("shelf_empty", {**DATA, "i": i, "round": r}, stream=stream))
                rates[k].append(per / (time.perf_counter() - t0))
    finally:
        for ob in boxes.values():
            ob.close()
        shutil.rmtree(work, ignore_errors=True)
    out = {k: {"emits_per_s": round(statistics.median(v), 1), "ms_per_emit": round(1e3 / statistics.median(v), 3),
               "min": round(min(v), 1), "max": round(max(v), 1)} for k, v in rates.items()}
    out.update(events_per_setting=per * rounds, rounds=rounds, folder=folder,
               fsync_cost_ms_per_alert=round(out["alerts_fsync"]["ms_per_emit"]
                                             - out["alerts_no_fsync"]["ms_per_emit"], 3))
    log.info("durability: %s", out)
    return out


# ---------------------------------------------------------------- measurement
def _accounting(db: str, expected: dict[str, int]) -> dict:
    """Lost and duplicate events per device, from the consumer's database (expected: device -> events sent)."""
    from sync.consumer import summary

    time.sleep(0.5)
    lost = dups_removed = dups_after = 0
    for dev, want in expected.items():
        if not want:
            continue
        s = summary(db, dev)
        lost += want - s["distinct"]
        dups_removed += s["duplicates_removed"]
        dups_after += s["duplicates_after_dedup"]
    return dict(lost=lost, duplicates_after_dedup=dups_after, duplicates_removed=dups_removed,
                events_total=sum(expected.values()))


def _acked_all(svc) -> bool:
    from sync.outbox import RELIABLE

    return svc.delivery.watermark >= svc.outbox.max_seq(RELIABLE)


def _wait(pred, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.005)
    return pred()


def _proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def _self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


# ---------------------------------------------------------------- report
def _environment() -> dict:
    import paho.mqtt

    mosq = subprocess.run([broker_bin(), "-h"], capture_output=True, text=True).stdout.splitlines()[0]
    return {"cpus": os.cpu_count(), "load1_end": round(os.getloadavg()[0], 2), "python": platform.python_version(),
            "paho_mqtt": paho.mqtt.__version__, "mosquitto": mosq.strip()}


def _report(result: dict, json_path: str | None, need_lossless: bool = True) -> int:
    """Print the results (and write them to json_path); exit status 0 only if no event was lost."""
    print(json.dumps(result, indent=2))
    if json_path:
        with open(json_path, "w") as f:
            json.dump(result, f, indent=2)
    return 0 if result.get("lost") == 0 or not need_lossless else 1


def broker_bin() -> str:
    from devtools.broker import MOSQUITTO

    return MOSQUITTO
