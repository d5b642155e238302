"""`edge bench streams [--json PATH]`: how many 5 FPS cameras one device serves.

K identical streams (the scripted store scene, played in real time, each with its own tracker + analytics) run
on one StreamSet over the shared person detector, for K = 1, 2, 4, ... The largest K whose every stream holds
≥ 4.75 FPS with capture-to-analytics latency p95 ≤ 200 ms is `streams_at_5fps`. Motion gating on and off are
measured side by side in the same run. Keys: `streams_at_5fps`, `streams_at_5fps_no_gating`, `detector`,
`runs` (per K and mode: per-stream FPS min, latency p50/p95 max, share of frames whose detection was gated),
`batching` (whether batched inference was used).
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 6, 8, 10], help="stream counts to try")
    p.add_argument("--seconds", type=float, default=15.0, help="measured seconds per K (after 3 s warm-up)")
    p.add_argument("--tiles", type=int, nargs=2, default=[1, 1], help="detector tiles (columns rows)")
    p.add_argument("--fps", type=float, default=5.0)


def _video() -> Path:
    from devtools import scenario
    from edge.core.paths import cache_dir

    path = cache_dir() / "scenario" / "store-v1.avi"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        scenario.write_video(scenario.build(cycles=1), path.with_suffix(".part.avi"))
        path.with_suffix(".part.avi").replace(path)
    return path


def _run_k(k: int, gating: bool, args, detect, sink, video: Path) -> dict:
    import numpy as np

    from edge.app.config import parse_config
    from edge.app.streams import StreamSet

    cams = [{"id": f"cam{i}", "fps": args.fps, "motion_gating": gating,
             "source": {"type": "video", "uri": str(video), "loop": True, "realtime": True},
             "analytics": {"zones": [{"name": "floor", "polygon": [[0, 200], [640, 200], [640, 480], [0, 480]]}],
                           "lines": [{"name": "door", "start": [330, 475], "end": [330, 300]}]}}
            for i in range(k)]
    cfg = parse_config({"device": {"id": "bench", "store": "lab", "kind": "shelf-camera"},
                        "models": {"person_detector": {"name": "nanodet_m_416"}}, "cameras": cams}, "<bench>")
    ss = StreamSet.from_config(cfg, detect, sink).start()
    try:
        time.sleep(3.0)  # warm-up, then measure afresh
        for s in ss.streams:
            s.stats.latency_ms.clear()
            s.stats.done_t.clear()
            s.stats.detected = s.stats.gated = 0
        time.sleep(args.seconds)
        fps = [s.stats.fps(window_s=args.seconds) for s in ss.streams]
        p95 = [s.stats.latency_p(95) or 1e9 for s in ss.streams]
        p50 = [s.stats.latency_p(50) or 1e9 for s in ss.streams]
        det = sum(s.stats.detected for s in ss.streams)
        gated = sum(s.stats.gated for s in ss.streams)
    finally:
        ss.stop()
    ok = min(fps) >= 0.95 * args.fps and max(p95) <= 200.0
    return {"k": k, "gating": gating, "ok": ok, "fps_min": round(min(fps), 2), "fps_mean": round(float(np.mean(fps)), 2),
            "latency_ms_p50_max": round(max(p50), 1), "latency_ms_p95_max": round(max(p95), 1),
            "gated_share": round(gated / max(1, det + gated), 3)}


def run(args) -> int:
    from edge.app.config import ModelRef
    from edge.core.events import ListSink
    from edge.people import open_detector
    from models.zoo import ModelZoo

    video = _video()
    people = open_detector(ModelZoo(), ModelRef(name="nanodet_m_416"), tiles=tuple(args.tiles), threshold=0.3)
    info = people.session.info
    sink = ListSink()
    runs = []
    best = {True: 0, False: 0}
    failed: set[bool] = set()  # a mode that failed at some K fails at every larger K: stop trying it
    try:
        for k in sorted(args.ks):
            for gating in (True, False):  # side by side for each K
                if gating in failed:
                    continue
                r = _run_k(k, gating, args, people.frame_detections, sink, video)
                runs.append(r)
                log.info("K=%d gating=%s: %s", k, gating, r)
                if r["ok"]:
                    best[gating] = k
                else:
                    failed.add(gating)
            if len(failed) == 2:
                break
    finally:
        people.session.close()
    out = {"bench": "streams", "detector": f"nanodet_m_416/{info.backend}/{info.precision}",
           "tiles": list(args.tiles), "target_fps": args.fps, "latency_budget_ms": 200,
           "streams_at_5fps": best[True], "streams_at_5fps_no_gating": best[False], "batching": False,
           "batching_note": "the NanoDet artefacts have a fixed batch of 1: frames run one at a time, earliest "
                            "deadline first", "runs": runs,
           "command": f"edge bench streams --ks {' '.join(map(str, args.ks))} --seconds {args.seconds:g} "
                      f"--tiles {args.tiles[0]} {args.tiles[1]}"}
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0
