"""`edge bench sync [--json PATH]`: end-to-end events/s through the durable outbox at QoS 1 to the reference
consumer, CPU-seconds per 10k events, and recovery time after a broker outage with a backlog.

Starts its own mosquitto (sync/mosquitto/dev.conf) on a free loopback port and the consumer as a separate
process (`edge sync consumer`). The device (outbox + delivery + paho) runs in this process with default
[sync] settings. "End to end" = from the first `emit` until the device holds the cloud's ack for the last event.
"""
from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events", type=int, default=50_000, help="events of the throughput phase")
    p.add_argument("--outage-s", type=float, default=30.0, help="broker down this long in the outage phase")
    p.add_argument("--outage-rate", type=float, default=500.0, help="events/s emitted during and after the outage")
    p.add_argument("--unbatched-events", type=int, default=10_000, help="also measure batch_max=1 (0 = skip)")


def run(args) -> int:
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

    from edge.app.config import parse_config
    from edge.core.events import Event
    from devtools.broker import Broker
    from sync.consumer import summary
    from sync.outbox import RELIABLE
    from sync.service import SyncService

    log = logging.getLogger("devtools.bench.sync")
    work = tempfile.mkdtemp(prefix="sf-bench-sync-")
    tick = os.sysconf("SC_CLK_TCK")

    def proc_cpu(pid: int) -> float:
        with open(f"/proc/{pid}/stat") as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / tick

    def self_cpu() -> float:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime

    def wait(pred, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            time.sleep(0.005)
        return pred()

    def device(name: str, **sync) -> SyncService:
        cfg = parse_config({"device": {"id": name, "store": "bench", "kind": "shelf-camera"},
                            "sync": {"broker": "127.0.0.1", "port": broker.port, "telemetry_interval_s": 0,
                                     "outbox_path": os.path.join(work, f"{name}.sqlite"), **sync}})
        svc = SyncService(cfg)
        svc.start()
        if not svc.client.wait_connected(10):
            raise RuntimeError(f"device cannot connect: {svc.client.last_error}")
        return svc

    def acked_all(svc: SyncService) -> bool:
        return svc.delivery.watermark >= svc.outbox.max_seq(RELIABLE)

    data = {"zone": "entrance", "person": 3, "dwell_s": 4.2, "bbox": [120, 80, 64, 180], "conf": 0.91}
    broker = Broker(os.path.join(work, "broker")).start()
    db = os.path.join(work, "cloud.sqlite")
    cons = subprocess.Popen([sys.executable, "-m", "edge.app.cli", "--log-level", "WARNING", "sync", "consumer",
                             "--port", str(broker.port), "--db", db, "--client-id", "bench-cloud", "--stats-s", "0"],
                            stdout=subprocess.DEVNULL)
    result: dict = {}
    try:
        if not wait(lambda: "as bench-cloud" in broker.log_text(), 20):
            raise RuntimeError("consumer did not connect")
        time.sleep(0.3)

        # ---------------- phase 1: throughput (default settings, batching on)
        svc = device("d-throughput")
        n = args.events
        c0 = (self_cpu(), proc_cpu(cons.pid), proc_cpu(broker.pid))
        t0 = time.perf_counter()
        for i in range(n):
            svc.outbox.emit(Event("person_entered", {**data, "i": i}, stream="alerts" if i % 100 == 0 else "events"))
        t_emit = time.perf_counter() - t0
        if not wait(lambda: acked_all(svc), 300):
            raise RuntimeError(f"throughput phase did not finish: {svc.metrics()}")
        dt = time.perf_counter() - t0
        c1 = (self_cpu(), proc_cpu(cons.pid), proc_cpu(broker.pid))
        parts = {k: round((b - a) / n * 1e4, 3) for k, a, b in zip(("device", "consumer", "broker"), c0, c1)}
        m = svc.metrics()
        result.update(events_per_s=round(n / dt, 1), cpu_s_per_10k=round(sum(parts.values()), 3),
                      cpu_s_per_10k_parts=parts, events=n, emit_only_events_per_s=round(n / t_emit, 1),
                      mqtt_messages=m["messages"], avg_events_per_message=round(m["sent"] / max(1, m["messages"]), 1))
        log.info("throughput: %s", result)
        svc.stop()

        # ---------------- phase 2: unbatched reference (batch_max = 1)
        if args.unbatched_events:
            svc = device("d-unbatched", batch_max=1)
            n2 = args.unbatched_events
            t0 = time.perf_counter()
            for i in range(n2):
                svc.outbox.emit(Event("person_entered", {**data, "i": i}))
            wait(lambda: acked_all(svc), 300)
            result["events_per_s_unbatched"] = round(n2 / (time.perf_counter() - t0), 1)
            svc.stop()

        # ---------------- phase 3: outage with a backlog
        svc = device("d-outage")
        rate, stop = args.outage_rate, threading.Event()
        emitted = [0]

        def produce() -> None:
            t = time.monotonic()
            while not stop.is_set():
                d = t + emitted[0] / rate - time.monotonic()
                if d > 0:
                    time.sleep(d)
                svc.outbox.emit(Event("person_entered", {**data, "i": emitted[0]}))
                emitted[0] += 1

        th = threading.Thread(target=produce, daemon=True)
        th.start()
        time.sleep(2.0)
        broker.stop()
        t_down = time.monotonic()
        time.sleep(args.outage_s)
        backlog = sum(svc.outbox.depth().values())
        head = svc.outbox.max_seq(RELIABLE)
        broker.start()
        t_up = time.monotonic()
        ok = wait(lambda: svc.delivery.watermark >= head, 600)
        recovery = time.monotonic() - t_up
        time.sleep(1.0)
        stop.set()
        th.join()
        wait(lambda: acked_all(svc), 120)
        result.update(outage_s=round(t_up - t_down, 2), backlog_events=backlog, outage_rate=rate,
                      outage_recovery_s=round(recovery, 2) if ok else None,
                      backlog_rate=svc.cfg.sync.backlog_rate, go_backs=svc.metrics()["go_backs"])
        svc.stop()

        # ---------------- accounting from the consumer's database
        time.sleep(0.5)
        expected = {"d-throughput": args.events, "d-unbatched": args.unbatched_events, "d-outage": emitted[0]}
        lost = dups_removed = dups_after = 0
        for dev, want in expected.items():
            if not want:
                continue
            s = summary(db, dev)
            lost += want - s["distinct"]
            dups_removed += s["duplicates_removed"]
            dups_after += s["duplicates_after_dedup"]
        result.update(lost=lost, duplicates_after_dedup=dups_after, duplicates_removed=dups_removed,
                      events_total=sum(expected.values()))
    finally:
        cons.send_signal(signal.SIGINT)
        try:
            cons.wait(10)
        except subprocess.TimeoutExpired:
            cons.kill()
        broker.close()
        shutil.rmtree(work, ignore_errors=True)

    mosq = subprocess.run([broker_bin(), "-h"], capture_output=True, text=True).stdout.splitlines()[0]
    import paho.mqtt

    result["env"] = {"cpus": os.cpu_count(), "load1_end": round(os.getloadavg()[0], 2), "python": platform.python_version(),
                     "paho_mqtt": paho.mqtt.__version__, "mosquitto": mosq.strip()}
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0 if result.get("lost") == 0 else 1


def broker_bin() -> str:
    from devtools.broker import MOSQUITTO

    return MOSQUITTO
