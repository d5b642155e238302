"""Simulated device: emits numbered synthetic events through SyncService (fault tests, benchmark, demo).

    python -m devtools.devsim --broker 127.0.0.1 --port 1883 --store s001 --device d001 --outbox /tmp/o.db \
        --total 1000 --rate 200

Resumable: it counts what its outbox already assigned (the outbox seq), so after a crash (kill -9) a restart
emits only the rest; every event i carries data {"i": i}. Every 10th event is an alert. Exits 0 once all
`--total` events are emitted and acknowledged by the cloud (or --linger-s passed), 3 on timeout.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time

from edge.core.device import DeviceIdentity
from edge.core.events import Event
from sync.config import SyncConfig
from sync.outbox import RELIABLE


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devtools.devsim", description=__doc__.splitlines()[0])
    p.add_argument("--broker", default="127.0.0.1")
    p.add_argument("--port", type=int, default=1883)
    p.add_argument("--store", default="s001")
    p.add_argument("--device", default="d001")
    p.add_argument("--outbox", required=True, help="outbox SQLite path")
    p.add_argument("--total", type=int, default=1000, help="events to emit in all (across restarts)")
    p.add_argument("--rate", type=float, default=200.0, help="events/s (0 = as fast as possible)")
    p.add_argument("--sync", default="{}", help="extra [sync] settings as JSON, e.g. '{\"ack_timeout_s\": 2}'")
    p.add_argument("--timeout-s", type=float, default=120.0, help="give up waiting for acks after this")
    p.add_argument("--log-level", default="WARNING")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s devsim %(levelname)s %(name)s: %(message)s")
    from sync.service import SyncService

    sync = {"broker": args.broker, "port": args.port, "outbox_path": args.outbox, "telemetry_interval_s": 0,
            **json.loads(args.sync)}
    svc = SyncService(DeviceIdentity(id=args.device, store=args.store, kind="shelf-camera"),
                      SyncConfig.model_validate(sync))
    svc.start()
    done = svc.outbox.max_seq(RELIABLE)
    print(json.dumps({"resumed_at": done}), flush=True)
    t0 = time.monotonic()
    for i in range(done + 1, args.total + 1):
        if args.rate > 0:
            delay = t0 + (i - done) / args.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        stream = "alerts" if i % 10 == 0 else "events"
        svc.outbox.emit(Event("shelf_empty" if stream == "alerts" else "person_entered", {"i": i}, stream=stream))
    deadline = time.monotonic() + args.timeout_s
    ok = svc.delivery.wait_idle(max(0.0, deadline - time.monotonic())) if svc.delivery else True
    print(json.dumps({"done": ok, **{k: v for k, v in svc.metrics().items() if k != "commands"}}), flush=True)
    svc.stop()
    return 0 if ok else 3


if __name__ == "__main__":
    sys.exit(main())
