"""`edge bench privacy [--json PATH]`: what the privacy guard and the anonymised snapshots cost (docs/PRIVACY.md).

1. guard: `check_payload` per stored event record (what Delivery checks before batching), per 100-record batch at
   the MQTT client (the cheap screen only) and per largest heatmap record (a full parse): median / p95 / p99 µs.
2. delivery, side by side in one run: end-to-end events/s through the outbox, paho, a real mosquitto and the
   reference consumer with the guard on and off (off only here: the check is monkeypatched out), alternating
   rounds on the same broker and consumer.
3. snapshot: `Anonymiser.anonymise` + JPEG on the package photos (the device's model choice), ms per snapshot.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import time

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--events", type=int, default=20_000, help="events per delivery round")
    p.add_argument("--rounds", type=int, default=3, help="delivery rounds per setting (guard on / off, alternating)")
    p.add_argument("--snapshot-runs", type=int, default=3, help="snapshots per photo")
    p.add_argument("--skip", choices=["none", "delivery", "snapshot"], default="none")


def _stats(xs: list[float]) -> dict:
    xs = sorted(xs)
    q = lambda f: xs[min(len(xs) - 1, int(f * len(xs)))]  # noqa: E731
    return {"median": round(statistics.median(xs), 2), "p95": round(q(0.95), 2), "p99": round(q(0.99), 2),
            "n": len(xs)}


def _guard() -> dict:
    from devtools.bench.sync import DATA
    from edge.privacy.guard import check_payload
    from sync import payloads

    rec = payloads.event_body("person_entered", "events", time.time(), "0" * 32, {**DATA, "i": 1}, max_bytes=65536)
    rows = [(i, payloads.event_body("person_entered", "events", time.time(), f"{i:032x}", {**DATA, "i": i},
                                    max_bytes=65536)) for i in range(100)]
    batch = payloads.batch("d", "s", "e" * 16, rows, False)
    heat = payloads.event_body("occupancy_heatmap", "events", time.time(), "1" * 32,
                               {"rows": 64, "cols": 64, "frames": 9000, "heatmap": True,
                                "counts": [[(r + c) % 9 for c in range(64)] for r in range(64)]}, max_bytes=1 << 20)
    out = {}
    for name, payload, thorough, n in (("record_us", rec, True, 20000), ("batch100_us", batch, False, 2000),
                                       ("heatmap64_record_us", heat, True, 500)):
        ts = []
        for _ in range(n):
            t0 = time.perf_counter()
            assert check_payload(payload, thorough=thorough) is None
            ts.append((time.perf_counter() - t0) * 1e6)
        out[name] = _stats(ts)
    out["record_bytes"], out["batch100_bytes"], out["heatmap_bytes"] = len(rec), len(batch), len(heat)
    return out


def _delivery(n: int, rounds: int) -> dict:
    import sync.delivery as delivery
    from devtools.bench.sync import DATA, _acked_all, _Bench, _wait
    from edge.core.events import Event

    real = delivery.check_payload
    bench = _Bench.setup()
    rates: dict[str, list[float]] = {"guard_on": [], "guard_off": []}
    try:
        for r in range(rounds):
            for setting in ("guard_on", "guard_off") if r % 2 == 0 else ("guard_off", "guard_on"):
                on = setting == "guard_on"
                delivery.check_payload = real if on else (lambda raw, thorough=True: None)
                svc = bench.device(f"d-{setting}-{r}")
                if not on:
                    svc.client.opts.payload_guard = None
                t0 = time.perf_counter()
                for i in range(n):
                    svc.outbox.emit(Event("person_entered", {**DATA, "i": i},
                                          stream="alerts" if i % 100 == 0 else "events"))
                if not _wait(lambda: _acked_all(svc), 300):
                    raise RuntimeError(f"round did not finish: {svc.metrics()}")
                rates[setting].append(round(n / (time.perf_counter() - t0), 1))
                svc.stop()
                log.info("%s round %d: %.0f events/s", setting, r, rates[setting][-1])
    finally:
        delivery.check_payload = real
        bench.close()
    med = {k: statistics.median(v) for k, v in rates.items()}
    return {"events_per_round": n, "rounds": rounds, "events_per_s": rates,
            "median_events_per_s": med, "guard_cost_pct": round(100 * (1 - med["guard_on"] / med["guard_off"]), 1)}


def _snapshot(runs: int) -> dict:
    import cv2

    from calibration.photos import staged_path
    from edge.app.config import ModelsSection
    from edge.privacy.anonymise import Anonymiser
    from models.zoo import ModelZoo

    a = Anonymiser.open(ModelZoo(), ModelsSection(), max_width=640)
    out: dict = {"backends": {s.info.path.split("/")[-1]: s.info.backend
                              for s in (a.faces.session, *a.pose.sessions)}}
    try:
        for name in ("bus.jpg", "zidane.jpg", "grace_hopper.jpg", "astronaut.png"):
            img = cv2.imread(str(staged_path(name)))
            a.snapshot(img)  # warm-up
            ts = []
            for _ in range(runs):
                t0 = time.perf_counter()
                res = a.snapshot(img)
                ts.append((time.perf_counter() - t0) * 1e3)
            out[name] = {"ms": _stats(ts), "size": f"{img.shape[1]}x{img.shape[0]}", "jpeg_bytes": res["bytes"],
                         "faces": res["faces_blurred"], "heads": res["heads_blurred"],
                         "extra_passes": res["extra_passes"]}
    finally:
        a.close()
    return out


def run(args) -> int:
    from devtools.bench.sync import _environment

    result = {"guard": _guard()}
    if args.skip != "delivery":
        result["delivery"] = _delivery(args.events, args.rounds)
    if args.skip != "snapshot":
        result["snapshot"] = _snapshot(args.snapshot_runs)
    result["env"] = _environment()
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0
