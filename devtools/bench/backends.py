"""`edge bench backends [--json PATH]`: latency and golden parity per model x backend x precision.

All sessions of one model are loaded in one process and timed in interleaved rounds (each round runs every
session `--per-round` times in turn) after a warm-up, so background load hits all candidates alike. Input: the
first golden sample (a realistic crop / frame). Parity: every golden sample, errors as in edge.backends.parity.
"""
from __future__ import annotations

import json
import logging
import sys
import time

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--models", default="", help="comma-separated model names (default: every built model)")
    p.add_argument("--backends", default="", help="comma-separated backends (default: every usable one)")
    p.add_argument("--precisions", default="", help="comma-separated precisions (default: all built)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=10, help="runs per session before timing")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--per-round", type=int, default=10, help="runs per session per round")
    p.add_argument("--cache-dir", default=None, help="model cache (default: the user cache dir)")


def _pct(xs: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(xs), q))


def bench_model(zoo, name: str, backends: list[str], precisions: set[str], args) -> list[dict]:
    """Rows for one model: every built artefact of `backends` (and `precisions`), timed interleaved."""
    from pathlib import Path

    from edge.backends import parity
    from edge.backends.base import BackendError
    from edge.backends.registry import get_backend

    inputs, golden = zoo.golden(name)
    rows, live = [], []
    for a in zoo.artifacts(name):
        if a.backend not in backends or (precisions and a.precision not in precisions):
            continue
        row = {"model": name, "version": a.version, "backend": a.backend, "precision": a.precision,
               "file": Path(a.path).name, "size_bytes": a.size_bytes, "threads": args.threads}
        rows.append(row)
        try:
            s = get_backend(a.backend).load(Path(a.path), threads=args.threads, precision=a.precision)
            tol = parity.tolerance_for(zoo.manifest(name), a.precision)
            ok, errs, why = parity.check(s, inputs, golden, tol)
        except BackendError as e:
            row["error"] = str(e)
            log.warning("%s %s/%s: %s", name, a.backend, a.precision, e)
            continue
        row["runtime_version"] = s.info.runtime_version
        row["parity"] = {"pass": ok, "tolerance": tol.to_dict(), "errors": errs, **({"why": why} if why else {})}
        row["times"] = []
        live.append((row, s))
    feed = {k: v[:1] for k, v in inputs.items()}
    for _, s in live:
        for _ in range(args.warmup):
            s.run(feed)
    for _ in range(args.rounds):
        for row, s in live:
            for _ in range(args.per_round):
                t = time.perf_counter()
                s.run(feed)
                row["times"].append((time.perf_counter() - t) * 1e3)
    for row, s in live:
        t = row.pop("times")
        row.update(runs=len(t), median_ms=round(_pct(t, 50), 3), p95_ms=round(_pct(t, 95), 3),
                   p99_ms=round(_pct(t, 99), 3))
        s.close()
    return rows


def run(args) -> int:
    from edge.backends.auto import cpu_model
    from edge.backends.registry import available_backends
    from models.zoo import ModelZoo

    zoo = ModelZoo(cache_dir=args.cache_dir)
    avail = {b: v for b, (ok, v) in available_backends().items() if ok}
    backends = [b for b in (args.backends.split(",") if args.backends else avail) if b in avail]
    precisions = set(filter(None, args.precisions.split(",")))
    names = list(filter(None, args.models.split(","))) or sorted({a.name for a in zoo.artifacts()})
    if not names:
        print("no built models: run `edge models build` first", file=sys.stderr)
        return 1
    rows = []
    for name in names:
        log.info("benchmarking %s on %s", name, ", ".join(backends))
        rows += bench_model(zoo, name, backends, precisions, args)
    _print(rows)
    if getattr(args, "json", None):
        doc = {"host": {"cpu": cpu_model(), "runtimes": avail, "threads": args.threads, "warmup": args.warmup,
                        "rounds": args.rounds, "per_round": args.per_round, "time": time.time()}, "results": rows}
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
    return 1 if any("error" in r for r in rows) else 0  # parity FAIL is a finding (INT8 drift), not an error


def _print(rows: list[dict]) -> None:
    hdr = f"{'model':26s} {'backend':12s} {'prec':9s} {'median':>8s} {'p95':>8s} {'p99':>8s}  parity (max/mean err)"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        lead = f"{r['model']:26s} {r['backend']:12s} {r['precision']:9s}"
        if "error" in r:
            print(f"{lead} ERROR {r['error']}")
            continue
        p = r["parity"]
        worst = max(p["errors"].values(), key=lambda e: e["max"])
        print(f"{lead} {r['median_ms']:8.2f} {r['p95_ms']:8.2f} {r['p99_ms']:8.2f}  "
              f"{'pass' if p['pass'] else 'FAIL'} {worst['max']:.2g}/{worst['mean']:.2g}")
    print("latency in ms over interleaved rounds; parity error in units of max(1, max|golden|)")
