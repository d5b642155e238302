"""`edge bench latency` runs end to end on a real mosquitto with the mirror (a short run: it checks that every key is
measured and nothing is lost; the numbers themselves go to docs/BENCHMARKS.md, never asserted here)."""
from __future__ import annotations

import json
import subprocess
import sys

KEYS = ("event_to_cloud_p50_ms", "event_to_cloud_p99_ms", "alert_to_cloud_p99_ms", "command_rtt_p50_ms",
        "command_rtt_p99_ms", "burst_rtt_p95_ms", "m2p_p95_ms", "m2p_p95_ms_idle")


def test_latency_bench_measures_every_budget(tmp_path):
    out = tmp_path / "latency.json"
    r = subprocess.run([sys.executable, "-m", "edge.app.cli", "--log-level", "WARNING", "bench", "latency",
                        "--phase-s", "2", "--rounds", "1", "--warmup-s", "1", "--burst", "50", "--nagle-pings", "3",
                        "--json", str(out)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    res = json.loads(out.read_text())
    for k in KEYS:
        assert isinstance(res[k], (int, float)) and res[k] > 0, k
    assert res["lost"] == 0 and res["unanswered_commands"] == 0
    assert res["emitted"]["bench_event"] > 0 and res["emitted"]["alert_opened"] > 0
    assert res["detail"]["burst_rtt_ms"]["n"] == 50
    assert set(res["tcp_nodelay_command_rtt_ms"]) == {"off", "on"}
    assert set(res["targets"]) >= {"event_to_cloud_p99_ms", "alert_to_cloud_p99_ms", "command_rtt_p99_ms",
                                   "command_rtt_p50_ms", "m2p_p95_unchanged"}
