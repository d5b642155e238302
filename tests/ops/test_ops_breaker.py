"""Circuit breaker state machine on scripted samples (fake clock): sustained low confidence, latency, errors,
half-open probes, backoff; typed config with per-pipeline / per-model overrides; the alert engine's hold."""
from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from edge.app.config import ConfigError, parse_config
from edge.core.breaker import CLOSED, HALF_OPEN, OPEN, BreakerBoard, BreakerConfig, BreakerPolicy, CircuitBreaker
from edge.core.events import ListSink

DEVICE = {"device": {"id": "k1", "store": "s1", "kind": "kiosk"}}


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def breaker(clock, **policy):
    b = CircuitBreaker("mirror", policy=BreakerPolicy(**{"window_s": 2, "min_samples": 5, "open_s": 1,
                                                          "probe_samples": 3, **policy}), clock=clock)
    seen = []
    b.listeners.append(seen.append)
    return b, seen


def feed(b, clock, n, dt=0.1, **sample):
    for _ in range(n):
        clock.t += dt
        b.record(**sample)


def test_sustained_low_confidence_opens_then_probes_close():
    clock = Clock()
    b, seen = breaker(clock)
    feed(b, clock, 30, visibility=0.9)
    feed(b, clock, 5, visibility=0.1)  # a short dip (0.5 s of a 2 s window) is not sustained
    assert b.state == CLOSED and not seen
    n = 0
    while b.state == CLOSED and n < 40:
        feed(b, clock, 1, visibility=0.1)
        n += 1
    assert 11 <= n <= 12 and b.state == OPEN and not b.allow()  # >= 80% of the last 2 s (20-21 samples) low
    tr = seen[-1]
    assert (tr.old, tr.new, tr.reason) == (CLOSED, OPEN, "low_confidence")
    assert tr.inputs["signals"]["visibility"]["threshold"] == 0.5 and tr.inputs["fraction"] >= 0.8
    feed(b, clock, 3, dt=0.1, visibility=0.9)  # open: samples change nothing until open_s has passed
    assert b.state == OPEN
    clock.t += 0.75
    assert b.allow() and b.state == HALF_OPEN
    b.record(latency_ms=5.0)  # not the kind that opened it: no probe credit
    feed(b, clock, 2, visibility=0.9)
    assert b.state == HALF_OPEN
    feed(b, clock, 1, visibility=0.9)
    assert b.state == CLOSED
    assert [(t.new, t.reason) for t in seen] == [(OPEN, "low_confidence"), (HALF_OPEN, "cooldown"),
                                                 (CLOSED, "probes_ok")]


def test_not_observed_for_a_whole_window_never_opens():
    clock = Clock()
    b, _ = breaker(clock, window_s=5)
    feed(b, clock, 40, visibility=0.1)  # 4 s of bad samples, window 5 s
    assert b.state == CLOSED
    feed(b, clock, 12, visibility=0.1)  # observed for a whole window now
    assert b.state == OPEN


def test_backend_errors_open_and_a_failed_probe_doubles_the_open_time():
    clock = Clock()
    b, seen = breaker(clock, max_errors=3, max_open_s=3)
    b.record(error=RuntimeError("boom"))
    b.record(ok=True)
    b.record(error=RuntimeError("boom"))
    assert b.state == CLOSED
    b.record(error=RuntimeError("boom 3"))
    assert b.state == OPEN and seen[-1].reason == "backend_errors"
    assert seen[-1].inputs["last_error"] == "RuntimeError: boom 3" and seen[-1].open_for_s == 1
    clock.t += 1.0
    assert b.state == HALF_OPEN
    b.record(error=RuntimeError("still"))
    assert b.state == OPEN and seen[-1].reason == "probe_failed" and seen[-1].open_for_s == 2
    clock.t += 1.5
    assert b.state == OPEN  # backoff: 2 s now
    clock.t += 0.5
    assert b.state == HALF_OPEN
    b.record(error="again")
    assert seen[-1].open_for_s == 3  # capped by max_open_s
    clock.t += 3
    feed(b, clock, 3, ok=True)
    assert b.state == CLOSED
    b.record(error="x")  # closed again: the open time starts from open_s
    b.record(error="x")
    b.record(error="x")
    assert seen[-1].open_for_s == 1


def test_errors_outside_the_window_do_not_add_up():
    clock = Clock()
    b, _ = breaker(clock, max_errors=3, window_s=2)
    for _ in range(5):
        b.record(error="e")
        clock.t += 1.5
    assert b.state == CLOSED


def test_latency_over_budget_opens_with_percentiles():
    clock = Clock()
    b = CircuitBreaker("mirror", policy=BreakerPolicy(window_s=1, min_samples=5), budget_ms=100, clock=clock)
    feed(b, clock, 20, latency_ms=40)
    assert b.state == CLOSED
    feed(b, clock, 12, latency_ms=180)
    assert b.state == OPEN and b.last.reason == "latency"
    assert b.last.inputs["budget_ms"] == 100 and b.last.inputs["p95_ms"] == 180


def test_unknown_signal_is_a_clear_error_and_disabled_breaker_never_opens():
    clock = Clock()
    b, _ = breaker(clock)
    with pytest.raises(TypeError, match="unknown confidence signal.*'presence'"):
        b.record(visibilty=0.3)
    off = CircuitBreaker("x", policy=BreakerPolicy(max_errors=1), enabled=False, clock=clock)
    off.record(error="e")
    assert off.state == CLOSED


def test_board_emits_event_metric_for_each_transition():
    clock = Clock()
    sink = ListSink()
    board = BreakerBoard(BreakerConfig(max_errors=1, open_s=1), sink=sink, clock=clock)
    b = board.get("model", "unit_model")
    before = REGISTRY.get_sample_value("edge_circuit_transitions_total",
                                       {"breaker": "unit_model", "scope": "model", "to": "open",
                                        "reason": "backend_errors"}) or 0
    b.record(error="e")
    assert REGISTRY.get_sample_value("edge_circuit_state", {"breaker": "unit_model", "scope": "model"}) == 2
    assert REGISTRY.get_sample_value("edge_circuit_transitions_total",
                                     {"breaker": "unit_model", "scope": "model", "to": "open",
                                      "reason": "backend_errors"}) == before + 1
    (ev,) = sink.events
    assert ev.kind == "circuit_transition" and ev.data["from"] == "closed" and ev.data["to"] == "open"
    assert board.degraded() == ["model/unit_model"]
    clock.t += 1
    b.record(ok=True)
    assert REGISTRY.get_sample_value("edge_circuit_state", {"breaker": "unit_model", "scope": "model"}) == 1


def test_config_defaults_overrides_and_errors():
    cfg = parse_config({**DEVICE, "breaker": {"open_s": 7, "pipelines": {"mirror": {"min_visibility": 0.7}},
                                              "models": {"pose_landmarks": {"latency_budget_ms": 40}}}})
    assert cfg.breaker.policy("pipeline", "mirror").min_visibility == 0.7
    assert cfg.breaker.policy("pipeline", "mirror").open_s == 7  # not overridden: the [breaker] value
    assert cfg.breaker.policy("model", "pose_landmarks").latency_budget_ms == 40
    assert cfg.breaker.policy("model", "pose_detector").latency_budget_ms == 0
    assert cfg.breaker.model_fallbacks == ["previous_version", "fp32", "other_backend"]
    with pytest.raises(ConfigError) as e:
        parse_config({**DEVICE, "breaker": {"pipelines": {"miror": {}}, "models": {"pose_landmarks": {
            "open_fraction": 1.5}}, "model_fallbacks": ["fp16"]}}, "dev.toml")
    text = str(e.value)
    assert "dev.toml: breaker.pipelines.miror" in text and "'mirror'" in text
    assert "breaker.models.pose_landmarks.open_fraction" in text
    assert "breaker.model_fallbacks.0" in text and "previous_version" in text


def test_alert_engine_holds_rules_while_degraded_and_records_it(tmp_path):
    from edge.alerts import AlertEngine, AlertsConfig
    from edge.core import decisions

    log = decisions.DecisionLog(tmp_path / "d").open()
    decisions.set_default(log)
    try:
        sink = ListSink()
        cfg = AlertsConfig.model_validate({"rules": [
            {"id": "busy", "metric": "occupancy", "key": "door", "op": ">=", "threshold": 2, "for_s": 2},
            {"id": "shelf", "metric": "facing_empty", "key": "A1", "for_s": 2}]})
        eng = AlertEngine(cfg, sink)
        vals = {("occupancy", "door"): 3, ("facing_empty", "A1"): True}
        eng.hold("breaker:analytics", "analytics circuit open", ["occupancy"])
        for i in range(10):  # 5 s of a condition that would open "busy" after 2 s
            eng.update(vals, i * 0.5, 1e9 + i * 0.5)
        assert [e.data["rule"] for e in sink.events] == ["shelf"]  # not people-based: not held
        assert eng.held() == {"breaker:analytics": {"reason": "analytics circuit open", "metrics": ["occupancy"]}}
        assert REGISTRY.get_sample_value("edge_alert_rules_held", {"camera": "main"}) == 1
        eng.release("breaker:analytics")
        eng.update(vals, 5.5, 1e9 + 5.5)
        assert [e.data["rule"] for e in sink.events] == ["shelf"]  # for_s counts again from fresh data
        for i in range(12, 17):
            eng.update(vals, i * 0.5, 1e9 + i * 0.5)
        assert [e.data["rule"] for e in sink.events] == ["shelf", "busy"]
        log.flush()
        recs = list(decisions.read_decisions(tmp_path / "d"))
        held = [r for r in recs if r["kind"] == "alerts_held"]
        assert [r["data"]["action"] for r in held] == ["hold", "release"] and held[0]["data"]["rules"] == ["busy"]
        alerts = [r for r in recs if r["kind"] == "alert"]
        assert [a["subject"] for a in alerts] == ["shelf", "busy"]
        assert alerts[1]["data"]["evidence"] == {"zone": "door"} and alerts[1]["data"]["value"] == 3
    finally:
        decisions.set_default(None)
        log.close()
