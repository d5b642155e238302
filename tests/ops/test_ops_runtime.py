"""The runtime wires operations: model selections (with auto's numbers), config reloads and circuit state land in
the decision log, /decisions and /healthz serve them, /metrics has the circuit gauges."""
from __future__ import annotations

import json
import urllib.request

from edge.app.config import load_config
from edge.core import decisions


def test_kiosk_runtime_records_decisions_and_serves_them(repo, tmp_path, running):
    cfg = load_config(repo / "device_configs" / "kiosk.toml")
    cfg.source.realtime = True
    cfg.sync.outbox_path = str(tmp_path / "outbox.sqlite")
    with running(cfg, frames=10, join_s=60.0, config_path=str(repo / "device_configs" / "kiosk.toml")) as (rt, base):
        assert rt._cmd_reload_config({})["status"] == "ok"
        rt.ops.log.flush()
        body = json.load(urllib.request.urlopen(base + "/decisions?kind=model_selected,config_reload", timeout=5))
        recs = body["decisions"]
        sel = {r["subject"]: r for r in recs if r["kind"] == "model_selected"}
        assert set(sel) == {"pose_detector", "pose_landmarks"}
        lm = sel["pose_landmarks"]["data"]
        assert lm["model"] == "pose_landmark_full" and lm["requested"]["backend"] == "auto"
        assert lm["auto"]["median_ms"][lm["backend"]] > 0  # why: the auto-selection numbers
        assert "fastest backend passing golden parity" in sel["pose_landmarks"]["reason"]
        (reload,) = [r for r in recs if r["kind"] == "config_reload"]
        assert reload["data"]["status"] == "ok" and len(reload["data"]["sha256"]) == 64
        health = json.load(urllib.request.urlopen(base + "/healthz", timeout=5))
        assert health["circuits"]["model/pose_landmarks"]["state"] == "closed"
        assert health["circuits"]["pipeline/analytics"]["state"] == "closed" and health["degraded"] == []
        metrics = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
        assert 'edge_circuit_state{breaker="pose_landmarks",scope="model"} 0.0' in metrics
        assert 'edge_decisions_total{kind="model_selected"}' in metrics
    assert decisions.get_default() is None  # closed with the runtime
    folder = tmp_path / "decisions-kiosk-01"  # default: beside the outbox
    assert [r["kind"] for r in decisions.read_decisions(folder, kinds=["model_selected"])] == ["model_selected"] * 2
