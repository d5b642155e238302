"""`edge bench coldstart [--json PATH]`: process start to the first processed frame, with an empty and a warm OpenVINO
compiled-model cache.

Each run starts `edge run --config C --max-frames 1 --no-http` as systemd would (a notify socket of our own in
NOTIFY_SOCKET) and times spawn → `READY=1` (the runtime sends it after its first frame went through the whole
pipeline; edge/app/service.py). Cold and warm runs alternate; a warm run gets a compiled-model cache filled by an
earlier start, a cold run an empty one. Everything else is as on a device after its first start: model files,
Python bytecode and the OS page cache are warm (a first boot after power-on reads the venv and models from disk on
top of the cold figure). The device config is copied with the pose models on `--backend/--precision` (the OpenVINO
cache only matters for OpenVINO), no broker, no HTTP, its outbox and decision log in a temporary folder.

Keys: `cold_start_s`, `warm_start_s` (medians), `cold_start_p95_s`, `warm_start_p95_s`, `imports_s` (spawn to the
runtime's first STATUS, median), `phases_s` (cold / warm: median seconds per start-up phase, from the runtime's
`STATUS=starting: ...` lines), `cold_cpu_s` / `warm_cpu_s` (median CPU seconds, user + system, of a whole run:
start, one frame, stop; unlike wall time it does not grow with other load on the machine), `target_warm_s` (5.0),
`warm_target_met`, per run `runs`, `config`, `backend`, `precision`, `load_avg`.
"""
from __future__ import annotations

import json
import logging
import os
import re
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import uuid
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
TARGET_WARM_S = 5.0


def add_arguments(p) -> None:
    p.add_argument("--config", default=str(REPO / "device_configs" / "tryon-mirror.toml"))
    p.add_argument("--runs", type=int, default=3, help="cold and warm starts each (alternating)")
    p.add_argument("--backend", default="openvino", help="pose models' backend ('config': as the file says)")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--timeout", type=float, default=180.0, help="seconds a start may take")


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(type(v))


def _dump(data: dict, prefix: str = "") -> str:
    """A small TOML writer for device configs (tables, arrays of tables, scalars)."""
    scalars = [(k, v) for k, v in data.items() if not isinstance(v, dict)
               and not (isinstance(v, list) and v and all(isinstance(x, dict) for x in v))]
    out = [f"{k} = {_toml_value(v)}" for k, v in scalars]
    for k, v in data.items():
        name = f"{prefix}{k}"
        if isinstance(v, dict):
            out.append(f"\n[{name}]")
            out.append(_dump(v, name + "."))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            for item in v:
                out.append(f"\n[[{name}]]")
                out.append(_dump(item, name + "."))
    return "\n".join(x for x in out if x)


def bench_config(src: Path, work: Path, ov_cache: Path, backend: str, precision: str) -> Path:
    """A copy of the device config for one start: pose models on backend/precision with the compiled-model cache
    in ov_cache, no broker, no HTTP, data in `work`."""
    data = tomllib.loads(src.read_text())
    models = data.setdefault("models", {})
    for key in ("pose_detector", "pose_landmarks"):
        ref = models.setdefault(key, {"name": "pose_detection" if key == "pose_detector" else "pose_landmark_full"})
        if backend != "config":
            ref["backend"], ref["precision"] = backend, precision
        ref.setdefault("openvino", {})["cache_dir"] = str(ov_cache)
    data["sync"] = {"broker": "", "outbox_path": str(work / "outbox.sqlite"), "telemetry_interval_s": 0}
    data.setdefault("http", {})["enabled"] = False
    data.setdefault("source", {})["realtime"] = True
    path = work / "device.toml"
    path.write_text(_dump(data) + "\n")
    return path


class _Notify:
    """Our own NOTIFY_SOCKET (an abstract unix datagram socket): arrival times of READY=1 and STATUS lines."""

    def __init__(self):
        self.name = f"storefront-bench-{uuid.uuid4().hex[:10]}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)

    def wait_ready(self, proc: subprocess.Popen, t0: float, timeout: float) -> tuple[list, float | None,
                                                                                     str | None]:
        """([(seconds, STATUS text)] before READY, seconds to READY=1, the runtime's own cold-start figure)."""
        statuses, ready, reported = [], None, None
        deadline = t0 + timeout
        while time.monotonic() < deadline and ready is None:
            self.sock.settimeout(max(0.01, min(0.5, deadline - time.monotonic())))
            try:
                data = self.sock.recv(4096).decode()
            except socket.timeout:
                if proc.poll() is not None:
                    break
                continue
            now = time.monotonic() - t0
            fields = dict(line.split("=", 1) for line in data.split("\n") if "=" in line)
            if "STATUS" in fields and fields.get("READY") != "1":
                statuses.append((now, fields["STATUS"]))
            if fields.get("READY") == "1":
                ready = now
                m = re.search(r"processed ([\d.]+) s after process start", fields.get("STATUS", ""))
                reported = m.group(1) if m else None
        return statuses, ready, reported

    def close(self):
        self.sock.close()


def one_start(config: Path, timeout: float) -> dict:
    """Start `edge run` once; spawn → READY=1 (and the first STATUS), then let it stop by itself."""
    notify = _Notify()
    env = {**os.environ, "NOTIFY_SOCKET": "@" + notify.name}
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "edge.app.cli", "--log-level", "WARNING", "run", "--config",
                             str(config), "--max-frames", "1", "--no-http"], env=env, cwd=str(REPO),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        statuses, ready_s, reported = notify.wait_ready(proc, t0, timeout)
        _, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)  # the whole run: start, 1 frame, stop
    if ready_s is None:
        raise RuntimeError(f"edge run sent no READY=1 within {timeout:g} s (exit {proc.returncode}): {err[-2000:]}")
    # phases from the runtime's "starting: ..." STATUS lines: each lasts until the next one (the last until READY)
    marks = [(0.0, "interpreter and imports")] + [(t, txt.removeprefix("starting: ")) for t, txt in statuses]
    phases = {}
    for (t, name), nxt in zip(marks, marks[1:] + [(ready_s, None)]):
        phases[name] = round(nxt[0] - t, 3)
    return {"ready_s": round(ready_s, 3), "imports_s": round(statuses[0][0], 3) if statuses else None,
            "phases_s": phases, "cpu_s": round(cpu, 3),
            "runtime_reported_s": None if reported is None else float(reported),
            "exit": proc.returncode}


def _p95(xs: list[float]) -> float:
    return round(float(np.percentile(np.asarray(xs), 95)), 3)


def run(args) -> int:
    src = Path(args.config)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-coldstart-") as tmp:
        tmp = Path(tmp)
        warm_cache = tmp / "ov-warm"
        prime = tmp / "prime"
        prime.mkdir()
        log.info("priming the warm compiled-model cache")
        one_start(bench_config(src, prime, warm_cache, args.backend, args.precision), args.timeout)
        runs = []
        for i in range(args.runs):
            for kind in ("cold", "warm"):
                work = tmp / f"{kind}-{i}"
                work.mkdir()
                cache = work / "ov-empty" if kind == "cold" else warm_cache
                r = one_start(bench_config(src, work, cache, args.backend, args.precision), args.timeout)
                r["cache"] = kind
                runs.append(r)
                log.info("%s start %d: READY after %.2f s", kind, i + 1, r["ready_s"])
    cold = [r["ready_s"] for r in runs if r["cache"] == "cold"]
    warm = [r["ready_s"] for r in runs if r["cache"] == "warm"]
    phases = {kind: {name: round(statistics.median([r["phases_s"][name] for r in runs if r["cache"] == kind
                                                    and name in r["phases_s"]]), 3)
                     for name in runs[0]["phases_s"]} for kind in ("cold", "warm")}
    res = {"cold_start_s": round(statistics.median(cold), 3), "warm_start_s": round(statistics.median(warm), 3),
           "cold_start_p95_s": _p95(cold), "warm_start_p95_s": _p95(warm),
           "imports_s": round(statistics.median([r["imports_s"] for r in runs if r["imports_s"] is not None]), 3),
           "cold_cpu_s": round(statistics.median([r["cpu_s"] for r in runs if r["cache"] == "cold"]), 3),
           "warm_cpu_s": round(statistics.median([r["cpu_s"] for r in runs if r["cache"] == "warm"]), 3),
           "phases_s": phases, "target_warm_s": TARGET_WARM_S,
           "warm_target_met": statistics.median(warm) <= TARGET_WARM_S,
           "config": str(src), "backend": args.backend, "precision": args.precision, "runs": runs,
           "load_avg": {"before": [round(x, 2) for x in load_before],
                        "after": [round(x, 2) for x in os.getloadavg()]}}
    print(json.dumps({k: v for k, v in res.items() if k != "runs"}, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(res, indent=1) + "\n")
    return 0
