"""Writes docs/grafana/storefront-edge.json, the Grafana dashboard of the runtime's /metrics (model, system and
business rows), from the panel list below. The JSON is shipped; tests/ops/test_ops_monitoring.py checks that every
query names metrics a real run exports.

    python -m devtools.grafana [--out docs/grafana/storefront-edge.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "docs" / "grafana" / "storefront-edge.json"
DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'instance=~"$instance"'
RI = "$__rate_interval"


def q(le_by: str, metric: str, quantile: float = 0.95, extra: str = "") -> str:
    """histogram_quantile over a histogram's buckets, summed by `le` and the given labels."""
    by = ", ".join(["le"] + [x for x in le_by.split(",") if x])
    return f"histogram_quantile({quantile}, sum by ({by}) (rate({metric}_bucket{{{SEL}{extra}}}[{RI}])))"


def mean(metric: str, by: str) -> str:
    return (f"sum by ({by}) (rate({metric}_sum{{{SEL}}}[{RI}])) / "
            f"sum by ({by}) (rate({metric}_count{{{SEL}}}[{RI}]))")


# (title, kind, unit, [(legend, expr)], description); kind: timeseries | stat
MODEL = [
    ("Inference latency p95", "timeseries", "ms", [("{{model}} {{backend}}/{{precision}}",
                                                    q("model,backend,precision", "edge_model_latency_ms"))],
     "Session.run time per model (p95 over the rate interval)."),
    ("Inference latency p50", "timeseries", "ms", [("{{model}}", q("model", "edge_model_latency_ms", 0.5))], ""),
    ("Inferences and errors per second", "timeseries", "ops", [
        ("{{model}} runs", f"sum by (model) (rate(edge_model_latency_ms_count{{{SEL}}}[{RI}]))"),
        ("{{model}} errors", f"sum by (model) (rate(edge_model_errors_total{{{SEL}}}[{RI}]))")], ""),
    ("Confidence (mean)", "timeseries", "percentunit", [("{{model}}", mean("edge_model_confidence", "model"))],
     "Pose presence score per person; detection score of the person detector."),
    ("Confidence p10", "timeseries", "percentunit", [("{{model}}", q("model", "edge_model_confidence", 0.1))],
     "Low tail of the confidence distribution: falls first when the camera view degrades."),
    ("Landmark presence (mean)", "timeseries", "percentunit",
     [("{{model}}", mean("edge_model_presence", "model"))], "Mean landmark presence per person."),
    ("Input brightness", "timeseries", "none", [
        ("{{stream}} now", f'edge_input_stat{{{SEL}, stat="brightness"}}'),
        ("{{stream}} baseline", f'edge_input_baseline{{{SEL}, stat="brightness"}}')], "Mean grey level 0-255."),
    ("Input sharpness (blur)", "timeseries", "none", [
        ("{{stream}} now", f'edge_input_stat{{{SEL}, stat="blur"}}'),
        ("{{stream}} baseline", f'edge_input_baseline{{{SEL}, stat="blur"}}')],
     "Variance of the Laplacian: drops when the lens is dirty or out of focus."),
    ("Frames with people", "timeseries", "percentunit", [
        ("{{stream}} now", f'edge_input_stat{{{SEL}, stat="people"}}'),
        ("{{stream}} baseline", f'edge_input_baseline{{{SEL}, stat="people"}}')], ""),
    ("Input drift from the install baseline", "timeseries", "none",
     [("{{stream}} {{stat}}", f"edge_input_drift{{{SEL}}}")],
     "Population stability index against the install baseline: < 0.1 stable, 0.1-0.25 moderate, > 0.25 the "
     "camera's view has changed (see the now/baseline panels for the direction)."),
    ("Circuit breakers", "timeseries", "none", [("{{breaker}} {{scope}}", f"edge_circuit_state{{{SEL}}}")],
     "0 closed, 1 half open, 2 open (fallback in effect)."),
]
SYSTEM = [
    ("CPU", "timeseries", "percent", [
        ("process (% of one core)", f"edge_process_cpu_percent{{{SEL}}}"),
        ("process rate", f"rate(process_cpu_seconds_total{{{SEL}}}[{RI}]) * 100"),
        ("machine (% of all cores)", f"edge_system_cpu_percent{{{SEL}}}")], ""),
    ("Memory (RSS)", "timeseries", "bytes", [("rss", f"process_resident_memory_bytes{{{SEL}}}")], ""),
    ("Temperature", "timeseries", "celsius", [("{{zone}}", f"edge_temperature_celsius{{{SEL}}}")],
     "Only where the device exposes /sys/class/thermal."),
    ("Load and free disk", "timeseries", "none", [("load1", f"edge_load1{{{SEL}}}"),
                                                  ("disk free GiB", f"edge_disk_free_bytes{{{SEL}}} / 2^30")], ""),
    ("Frames per second per stream", "timeseries", "fps", [
        ("{{stream}} in", f"rate(edge_stream_frames_in_total{{{SEL}}}[{RI}])"),
        ("{{stream}} processed", f"rate(edge_stream_frames_processed_total{{{SEL}}}[{RI}])"),
        ("{{stream}} dropped", f"rate(edge_stream_frames_dropped_total{{{SEL}}}[{RI}])")], ""),
    ("Dropped share per stream", "timeseries", "percentunit", [
        ("{{stream}}", f"rate(edge_stream_frames_dropped_total{{{SEL}}}[{RI}]) / "
                       f"clamp_min(rate(edge_stream_frames_in_total{{{SEL}}}[{RI}]), 1e-9)")], ""),
    ("Stage latency p95", "timeseries", "ms", [("{{stage}}", q("stage", "edge_stage_ms")),
                                               ("{{stream}} capture to analytics", q("stream", "edge_stream_latency_ms"))],
     ""),
    ("Mirror motion-to-photon p95", "timeseries", "s",
     [("m2p", q("", "edge_tryon_motion_to_photon_seconds"))], "Capture to composited mirror frame."),
    ("Sync queues", "timeseries", "none", [("{{queue}}", f"edge_sync_queue_depth{{{SEL}}}")],
     "Commands not yet answered, MQTT messages in flight, PUBACKed but not acked."),
    ("Outbox depth", "timeseries", "none", [("{{stream}}", f"edge_outbox_depth{{{SEL}}}")], ""),
    ("Oldest undelivered event", "timeseries", "s", [("age", f"edge_outbox_oldest_age_seconds{{{SEL}}}")],
     "Grows while the broker or the cloud is unreachable."),
    ("MQTT connected", "stat", "none", [("{{instance}}", f"edge_mqtt_connected{{{SEL}}}")], ""),
]
BUSINESS = [
    ("Shoppers per hour", "timeseries", "none",
     [("{{source}}", f"sum by (source) (increase(edge_shoppers_total{{{SEL}}}[1h]))")], ""),
    ("People in view", "timeseries", "none", [("people", f"edge_people{{{SEL}}}")], ""),
    ("Try-on sessions and garments per hour", "timeseries", "none", [
        ("sessions", f"sum(increase(edge_tryon_sessions_total{{{SEL}}}[1h]))"),
        ("garments tried", f"sum(increase(edge_tryon_garments_tried_total{{{SEL}}}[1h]))")], ""),
    ("Try-on session duration p50", "timeseries", "s", [("p50", q("", "edge_tryon_session_seconds", 0.5))], ""),
    ("Zone visits per hour", "timeseries", "none",
     [("{{zone}}", f"sum by (zone) (increase(edge_zone_visits_total{{{SEL}}}[1h]))")], ""),
    ("Zone dwell p50", "timeseries", "s", [("{{zone}}", q("zone", "edge_zone_dwell_seconds", 0.5))], ""),
    ("Queue length", "timeseries", "none", [("{{queue}}", f"edge_shopper_queue_length{{{SEL}}}")], ""),
    ("Queue wait estimate", "timeseries", "s", [("{{queue}}", f"edge_shopper_queue_wait_seconds{{{SEL}}}")], ""),
    ("Alerts open", "stat", "none",
     [("{{severity}} {{state}}", f"sum by (severity, state) (edge_alerts_open{{{SEL}}})")], ""),
    ("Alerts opened per hour", "timeseries", "none",
     [("{{rule}}", f"sum by (rule) (increase(edge_alerts_opened_total{{{SEL}}}[1h]))")], ""),
    ("Time to acknowledge", "timeseries", "s", [
        ("p50", q("", "edge_alert_ack_seconds", 0.5).replace(RI, "1h")),
        ("p90", q("", "edge_alert_ack_seconds", 0.9).replace(RI, "1h"))], "Alert opened to acknowledged."),
]


def panel(pid: int, x: int, y: int, title: str, kind: str, unit: str, targets, description: str) -> dict:
    p = {"id": pid, "type": kind, "title": title, "description": description, "datasource": DS,
         "gridPos": {"h": 8, "w": 8, "x": x, "y": y},
         "fieldConfig": {"defaults": {"unit": unit}, "overrides": []}, "options": {},
         "targets": [{"refId": chr(65 + i), "datasource": DS, "expr": expr, "legendFormat": legend}
                     for i, (legend, expr) in enumerate(targets)]}
    if kind == "stat":
        p["options"] = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    return p


def dashboard() -> dict:
    panels, pid, y = [], 1, 0
    for row_title, items in (("Model", MODEL), ("System", SYSTEM), ("Business", BUSINESS)):
        panels.append({"id": pid, "type": "row", "title": row_title, "collapsed": False, "panels": [],
                       "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}})
        pid, y = pid + 1, y + 1
        for i, item in enumerate(items):
            panels.append(panel(pid, (i % 3) * 8, y + (i // 3) * 8, *item))
            pid += 1
        y += ((len(items) + 2) // 3) * 8
    return {
        "title": "storefront-edge device", "uid": "storefront-edge", "tags": ["storefront-edge"],
        "description": "Model, system and business monitoring of storefront-edge devices (docs/MONITORING.md)",
        "editable": True, "graphTooltip": 1, "schemaVersion": 39, "version": 1, "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"}, "timezone": "", "annotations": {"list": []}, "links": [],
        "templating": {"list": [
            {"name": "datasource", "label": "Prometheus", "type": "datasource", "query": "prometheus",
             "current": {}, "hide": 0, "refresh": 1, "options": []},
            {"name": "instance", "label": "device", "type": "query", "datasource": DS,
             "query": {"query": "label_values(edge_frames_total, instance)", "refId": "instance"},
             "definition": "label_values(edge_frames_total, instance)", "multi": True, "includeAll": True,
             "current": {}, "hide": 0, "refresh": 2, "sort": 1, "options": []}]},
        "panels": panels,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devtools.grafana", description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(OUT))
    args = p.parse_args(argv)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(dashboard(), indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
