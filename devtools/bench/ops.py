"""`edge bench ops [--json PATH]`: what the operations machinery costs on the hot path.

Side by side in one run: the pose landmark model (real session, the configured backend/precision) called raw and
through a `GuardedSession` (breaker bookkeeping + presence extraction), interleaved call by call; a mirror
breaker's `record()` per sample; the decision log's `record()` as the caller sees it (queued, never waits for the
disk) and a durable record (`wait=True`: written + fdatasync by the writer thread).

Keys: `landmarks_raw_ms_{p50,p95,p99}`, `landmarks_guarded_ms_{p50,p95,p99}`, `guard_overhead_ms_p50`,
`breaker_record_us_{p50,p99}`, `decision_record_us_{p50,p99}`, `decision_durable_ms_{p50,p95,p99}`, plus the
model's backend/precision and `load_avg`.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--calls", type=int, default=300, help="landmark calls per variant")
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--precision", default="int8")
    p.add_argument("--records", type=int, default=2000, help="queued decision records")
    p.add_argument("--durable", type=int, default=200, help="durable (fsynced) decision records")
    p.add_argument("--dir", default="", help="folder for the decision log (default: a temporary one on the "
                                             "cache's disk, where the device keeps its data)")


def _pct(xs, qs=(50, 95, 99)) -> dict[int, float]:
    a = np.asarray(xs, np.float64)
    return {q: round(float(np.percentile(a, q)), 4) for q in qs}


def run(args) -> int:
    from edge.app.config import ModelRef
    from edge.app.operations import landmark_confidence
    from edge.backends.auto import open_model
    from edge.core.breaker import BreakerConfig, BreakerBoard, GuardedSession
    from edge.core.decisions import DecisionLog
    from edge.core.paths import cache_dir
    from models.zoo import ModelZoo

    load_before = os.getloadavg()
    zoo = ModelZoo()
    ref = ModelRef(name="pose_landmark_full", backend=args.backend, precision=args.precision)
    raw = open_model(zoo, ref)
    board = BreakerBoard(BreakerConfig())
    guarded = GuardedSession(raw, board.get("model", "bench_landmarks"), [], confidence=landmark_confidence)
    inputs, _ = zoo.golden(ref.name)
    feed = {k: v[:1] for k, v in inputs.items()}
    for _ in range(10):
        raw.run(feed)
        guarded.run(feed)
    t_raw, t_guard = [], []
    for i in range(args.calls):  # interleaved, alternating which goes first
        for name in (("raw", "guard") if i % 2 == 0 else ("guard", "raw")):
            s = raw if name == "raw" else guarded
            t0 = time.perf_counter()
            s.run(feed)
            (t_raw if name == "raw" else t_guard).append((time.perf_counter() - t0) * 1e3)

    b = board.get("pipeline", "bench_mirror", budget_ms=250)
    t_rec = []
    for i in range(20000):
        t0 = time.perf_counter()
        b.record(presence=0.9, visibility=0.8) if i % 2 else b.record(latency_ms=40.0)
        t_rec.append((time.perf_counter() - t0) * 1e6)

    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="bench-decisions-", dir=cache_dir()))
    dl = DecisionLog(folder / "log").open()
    data = {"breaker": "pose_landmarks", "inputs": {"samples": 40, "fraction": 0.9, "signals": {"presence": 0.3}}}
    t_q = []
    for i in range(args.records):
        t0 = time.perf_counter()
        dl.record("circuit", "model/pose_landmarks", data, reason="closed -> open: bench")
        t_q.append((time.perf_counter() - t0) * 1e6)
    dl.flush(30)
    t_d = []
    for i in range(args.durable):
        t0 = time.perf_counter()
        dl.record("circuit", "model/pose_landmarks", data, reason="durable", wait=True)
        t_d.append((time.perf_counter() - t0) * 1e3)
    dl.close()
    if not args.dir:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)

    pr, pg, prec, pq, pd = _pct(t_raw), _pct(t_guard), _pct(t_rec, (50, 99)), _pct(t_q, (50, 99)), _pct(t_d)
    out = {"model": ref.name, "backend": raw.info.backend, "precision": raw.info.precision, "calls": args.calls,
           **{f"landmarks_raw_ms_p{q}": v for q, v in pr.items()},
           **{f"landmarks_guarded_ms_p{q}": v for q, v in pg.items()},
           "guard_overhead_ms_p50": round(pg[50] - pr[50], 4),
           **{f"breaker_record_us_p{q}": v for q, v in prec.items()},
           **{f"decision_record_us_p{q}": v for q, v in pq.items()},
           **{f"decision_durable_ms_p{q}": v for q, v in pd.items()},
           "load_avg": {"before": load_before, "after": os.getloadavg()}}
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0
