"""Three-level monitoring (issue 12, item 3): the metrics a real mirror run exports (with their labels), the
install baseline on disk and the drift against it, the summary in MQTT telemetry, `edge top --once` against the
running server, and the shipped Grafana dashboard (valid, templated datasource, only exported metrics)."""
from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys

import cv2
import numpy as np
import pytest

from edge.core import monitoring
from edge.core.events import Event
from edge.core.monitoring import STATS, BaselineStore, InputMonitor, SystemCollector, parse_samples, summarize

from ops_util import REPO, scrape, wait_until

DASHBOARD = REPO / "docs" / "grafana" / "storefront-edge.json"


def labelled(samples: dict, name: str) -> list[dict]:
    return [labels for labels, _ in samples.get(name, [])]


def value(samples: dict, name: str, **labels) -> float:
    vals = [v for lb, v in samples.get(name, []) if all(lb.get(k) == w for k, w in labels.items())]
    assert vals, f"{name}{labels} not exported"
    return sum(vals)


def test_a_real_run_exports_the_three_levels_with_their_labels(mirror_run):
    s = parse_samples(scrape(mirror_run.url))
    det, lmk = mirror_run.cfg.models.pose_detector.name, mirror_run.cfg.models.pose_landmarks.name
    # model: latency per model with the backend and precision it runs on; confidence and presence distributions
    lat = {lb["model"]: lb for lb in labelled(s, "edge_model_latency_ms_count")}
    assert set(lat) >= {det, lmk}
    for name in (det, lmk):
        assert set(lat[name]) == {"model", "backend", "precision"}
        assert lat[name]["backend"] in ("onnxruntime", "openvino", "tflite")
        assert value(s, "edge_model_latency_ms_count", model=name) > 0
    assert value(s, "edge_model_latency_ms_count", model=lmk) >= mirror_run.rt.frames * 0.5
    assert value(s, "edge_model_confidence_count", model=lmk) > 0
    assert 0.0 < value(s, "edge_model_confidence_sum", model=lmk) / value(s, "edge_model_confidence_count",
                                                                          model=lmk) <= 1.0
    assert value(s, "edge_model_presence_count", model=lmk) > 0
    # input statistics of the main camera, the baseline taken at install and the drift from it
    for stat in ("brightness", "blur", "people"):
        for name in ("edge_input_stat", "edge_input_baseline", "edge_input_drift"):
            assert {"stream": "main", "stat": stat} in labelled(s, name), (name, stat)
    assert 20 < value(s, "edge_input_stat", stream="main", stat="brightness") < 250
    assert value(s, "edge_input_stat", stream="main", stat="blur") > 0
    assert value(s, "edge_input_frames_sampled_total", stream="main") > 0
    # system: CPU, RSS, frames per stream, queues, outbox
    assert value(s, "edge_process_cpu_percent") >= 0 and value(s, "process_resident_memory_bytes") > 50e6
    processed = value(s, "edge_stream_frames_processed_total", stream="main")
    assert processed >= 90 and value(s, "edge_stream_frames_in_total", stream="main") >= processed
    assert {lb["queue"] for lb in labelled(s, "edge_sync_queue_depth")} == {"commands", "inflight", "awaiting_ack"}
    assert "edge_outbox_oldest_age_seconds" in s and value(s, "edge_mqtt_connected") == 1
    assert {lb["stream"] for lb in labelled(s, "edge_outbox_depth")} == {"alerts", "events", "telemetry"}
    # business: the demo's shoppers, counted per source
    assert value(s, "edge_shoppers_total") >= 1
    assert labelled(s, "edge_shoppers_total")[0].keys() == {"source"}
    assert value(s, "edge_events_total", kind="person_entered") >= 1


def test_the_install_baseline_is_on_disk_next_to_the_outbox(mirror_run):
    from edge.app.monitor import baseline_path

    path = baseline_path(mirror_run.cfg)
    assert path.parent == mirror_run.data
    doc = json.loads(path.read_text())
    main = doc["streams"]["main"]
    assert main["samples"] == 20 and set(main["stats"]) == {"brightness", "blur", "people"}
    assert all(set(v) == {"mean", "std", "edges", "expected"} for v in main["stats"].values())
    assert BaselineStore(path).get("main") == main  # what the next run loads


def test_telemetry_carries_the_monitoring_summary(mirror_run):
    def records():
        with sqlite3.connect(mirror_run.db) as db:
            rows = db.execute("SELECT data FROM telemetry WHERE device=? AND kind='health'",
                              (mirror_run.cfg.device.id,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    assert wait_until(lambda: any((r.get("monitor") or {}).get("model", {}).get("models") for r in records()), 30)
    mon = [r["monitor"] for r in records() if r.get("monitor")][-1]
    assert set(mon) == {"model", "system", "business"}
    assert mon["model"]["models"][mirror_run.cfg.models.pose_landmarks.name]["runs"] > 0
    assert mon["system"]["streams"]["main"]["processed"] > 0 and mon["system"]["rss_mb"] > 50
    assert mon["business"]["shoppers"] >= 1


def test_edge_top_once_shows_the_three_levels_of_a_running_server(mirror_run):
    r = subprocess.run([sys.executable, "-m", "edge.app.cli", "top", "--once", "--url", mirror_run.url],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for heading in ("MODEL", "SYSTEM", "BUSINESS"):
        assert f"\n{heading}\n" in out
    assert mirror_run.cfg.models.pose_landmarks.name in out and "\x1b[" not in out  # no ANSI when not a TTY
    # the demo clip shows a half-seen person part of the time, which opens the mirror's breaker (status degraded)
    assert re.search(r"\bstatus (ok|degraded)\b", out) and mirror_run.cfg.device.id in out, out
    row = next(ln.split() for ln in out.splitlines() if ln.split()[:1] == ["main"]
               and all(x.isdigit() for x in ln.split()[1:4]))  # stream  in  processed  dropped  fps
    assert int(row[2]) >= 90 and int(row[1]) >= int(row[2])
    r = subprocess.run([sys.executable, "-m", "edge.app.cli", "top", "--once", "--json", "--url", mirror_run.url],
                       capture_output=True, text=True, timeout=60)
    doc = json.loads(r.stdout)
    health = doc["health"]
    if health["status"] != "ok":  # only the mirror's breaker, opened on the half-seen person's torso visibility
        assert health["status"] == "degraded" and health["degraded"] == ["pipeline/mirror"], health
        assert "visibility" in health["circuits"]["pipeline/mirror"]["opened_because"], health["circuits"]
    assert doc["system"]["streams"]["main"]["processed"] >= 90


def test_edge_top_names_an_unreachable_server():
    from devtools.broker import free_port

    url = f"http://127.0.0.1:{free_port()}"
    r = subprocess.run([sys.executable, "-m", "edge.app.cli", "top", "--once", "--url", url],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and url in r.stderr and "edge run" in r.stderr


# ------------------------------------------------------------------------------------------ drift and baseline
def frames(brightness: int, n: int, blur: bool = False, seed: int = 0):
    """Textured 160x120 frames around a mean grey level (blurred: the texture smoothed away)."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        img = np.clip(rng.normal(brightness + rng.normal(0, 3), 30, (120, 160, 3)), 0, 255).astype(np.uint8)
        yield cv2.GaussianBlur(img, (9, 9), 4) if blur else img


def drift(stat: str, stream: str = "cam-t1") -> float:
    return value(monitoring.registry_samples(), "edge_input_drift", stream=stream, stat=stat)


def test_drift_is_measured_against_a_persisted_baseline(tmp_path):
    path = tmp_path / "baseline.json"
    mon = InputMonitor("cam-t1", BaselineStore(path), every=1, window=200, baseline_samples=200)
    for i, img in enumerate(frames(120, 200)):
        mon.observe(img, i, has_people=i % 2 == 0)
    assert path.is_file() and mon.baseline["samples"] == 200
    base = mon.baseline["stats"]
    assert abs(base["brightness"]["mean"] - 120) < 3 and base["people"]["expected"] == [0.5, 0.5]
    assert len(base["brightness"]["edges"]) == 4 and sum(base["blur"]["expected"]) == pytest.approx(1.0)
    # the same scene: stable
    for i, img in enumerate(frames(120, 200, seed=1)):
        mon.observe(img, 1000 + i, has_people=i % 2 == 0)
    assert all(drift(s) < 0.1 for s in ("brightness", "blur", "people")), [drift(s) for s in STATS]
    # the lights dim, the lens fogs, nobody comes: all three change
    for i, img in enumerate(frames(90, 200, blur=True, seed=2)):
        mon.observe(img, 2000 + i, has_people=False)
    assert all(drift(s) > 0.25 for s in ("brightness", "blur", "people")), [drift(s) for s in STATS]
    s = monitoring.registry_samples()
    assert value(s, "edge_input_stat", stream="cam-t1", stat="brightness") < value(
        s, "edge_input_baseline", stream="cam-t1", stat="brightness")  # the direction
    # a new run loads the baseline instead of taking another one, and publishes it at once
    again = InputMonitor("cam-t1", BaselineStore(path), every=1)
    assert again.baseline == mon.baseline
    assert value(monitoring.registry_samples(), "edge_input_baseline", stream="cam-t1", stat="brightness") == \
        pytest.approx(base["brightness"]["mean"])
    # a frame seen twice (pose and detector on the same frame) is sampled once
    assert again.observe(next(frames(120, 1)), 7, True) and not again.observe(next(frames(120, 1)), 7, True)


def test_an_unreadable_baseline_is_reported_and_retaken(tmp_path, caplog):
    path = tmp_path / "baseline.json"
    path.write_text("{not json")
    store = BaselineStore(path)
    assert store.get("main") is None and "unreadable" in caplog.text
    mon = InputMonitor("cam-t2", store, every=1, baseline_samples=5)
    for i, img in enumerate(frames(90, 5)):
        mon.observe(img, i, True)
    assert json.loads(path.read_text())["streams"]["cam-t2"]["samples"] == 5


# ------------------------------------------------------------------------------------------ system and business
def test_temperatures_come_from_the_thermal_zones_the_device_exposes(tmp_path):
    for i, (kind, milli) in enumerate((("x86_pkg_temp", "47500"), ("acpitz", "31000"))):
        z = tmp_path / f"thermal_zone{i}"
        z.mkdir()
        (z / "type").write_text(kind + "\n")
        (z / "temp").write_text(milli + "\n")
    (tmp_path / "thermal_zone9").mkdir()  # a zone without readable files is skipped
    col = SystemCollector(tmp_path, thermal_root=tmp_path)
    s = monitoring.samples_of(col.collect())
    assert value(s, "edge_temperature_celsius", zone="x86_pkg_temp") == 47.5
    assert value(s, "edge_temperature_celsius", zone="acpitz") == 31.0
    assert len(s["edge_temperature_celsius"]) == 2
    import os

    assert 0 <= value(s, "edge_process_cpu_percent") <= 100 * os.cpu_count() + 1
    assert value(s, "edge_disk_free_bytes") > 0


def test_business_metrics_follow_the_events_of_real_stages():
    from edge.alerts import AlertEngine, AlertsConfig
    from edge.tryon.session import SessionTracker

    class Observed:
        def emit(self, event):
            monitoring.observe_event(event)

    before = monitoring.registry_samples()
    rule = {"id": "ops-queue", "metric": "queue_length", "key": "ops-checkout", "op": ">=", "threshold": 4,
            "for_s": 5, "clear_threshold": 2, "clear_for_s": 2, "severity": "critical"}
    engine = AlertEngine(AlertsConfig.model_validate({"timezone": "UTC", "rules": [rule]}), Observed())
    for t in range(0, 7):
        engine.update({("queue_length", "ops-checkout"): 5}, float(t), 1e9 + t)
    s = monitoring.registry_samples()
    assert value(s, "edge_alerts_open", severity="critical", state="open") == 1
    assert value(s, "edge_alerts_opened_total", rule="ops-queue", severity="critical") - \
        sum(v for lb, v in before.get("edge_alerts_opened_total", []) if lb.get("rule") == "ops-queue") == 1
    for t in range(7, 50):
        engine.update({("queue_length", "ops-checkout"): 5}, float(t), 1e9 + t)
    engine.ack(engine.active()[0]["alert_id"], by="staff")
    s = monitoring.registry_samples()
    assert value(s, "edge_alerts_open", severity="critical", state="open") == 0
    assert value(s, "edge_alerts_open", severity="critical", state="acked") == 1
    ack = summarize(s, before)["business"]
    assert ack["acks"] == 1 and 30 <= ack["ack_p50_s"] <= 60  # opened at t=5, acked at t=49: 44 s
    for t in range(50, 60):
        engine.update({("queue_length", "ops-checkout"): 0}, float(t), 1e9 + t)
    assert value(monitoring.registry_samples(), "edge_alerts_open", severity="critical", state="acked") == 0
    # try-on: sessions and the garments tried in them
    tracker = SessionTracker(Observed(), absence_timeout_s=1.0, min_duration_s=1.0)
    for i in range(40):
        tracker.update(i * 0.1, True, "TEE-001", ["red", "blue"][i // 20], t_wall=1e9 + i * 0.1)
    tracker.close()
    # zones: dwell per visit
    monitoring.observe_event(Event("zone_left", {"zone": "ops-zone", "track_id": 3, "dwell_s": 12.5}))
    monitoring.observe_event(Event("queue_changed", {"queue": "ops-q", "length": 3, "wait_estimate_s": 40.0}))
    d = summarize(monitoring.registry_samples(), before)["business"]
    assert d["tryon_sessions"] - summarize(before)["business"]["tryon_sessions"] == 1
    assert d["garments_tried"] - summarize(before)["business"]["garments_tried"] == 2
    assert d["zones"]["ops-zone"]["visits"] == 1 and 10 <= d["zones"]["ops-zone"]["dwell_p50_s"] <= 20
    assert d["queues"]["ops-q"] == {"length": 3, "wait_s": 40.0}


# ------------------------------------------------------------------------------------------ Grafana dashboard
def selectors(expr: str) -> set[str]:
    """Metric names an expression selects (parsed as PromQL, Grafana variables replaced by sample values)."""
    import promql_parser

    text = expr.replace("$__rate_interval", "5m").replace("$__interval", "1m").replace("$instance", ".*")
    names: set[str] = set()

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        return True

    promql_parser.walk(promql_parser.parse(text), visit)
    return names


def exported_names(text: str) -> set[str]:
    """Every sample name a /metrics page has or can have (families with no children yet included)."""
    names = set(parse_samples(text))
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            base = name.removesuffix("_total") if kind == "counter" else name
            names |= {base, base + "_total"} if kind == "counter" else {name}
            if kind == "histogram":
                names |= {name + "_bucket", name + "_sum", name + "_count"}
    return names


def test_the_dashboard_is_import_ready_and_queries_only_exported_metrics(mirror_run):
    d = json.loads(DASHBOARD.read_text())
    assert d["uid"] and d["title"] and isinstance(d["schemaVersion"], int)
    tv = {v["name"]: v for v in d["templating"]["list"]}
    assert tv["datasource"]["type"] == "datasource" and tv["datasource"]["query"] == "prometheus"
    assert tv["instance"]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    panels = d["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    rows = [p["title"] for p in panels if p["type"] == "row"]
    assert rows == ["Model", "System", "Business"]
    exported = exported_names(scrape(mirror_run.url))
    used: set[str] = set()
    cells: set[tuple[int, int]] = set()
    for p in panels:
        g = p["gridPos"]
        assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0
        cell = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cell & cells, f"panel {p['title']!r} overlaps another"
        cells |= cell
        if p["type"] == "row":
            continue
        assert p["type"] in ("timeseries", "stat") and p["datasource"] == {"type": "prometheus",
                                                                          "uid": "${datasource}"}
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}" and t["refId"]
            assert 'instance=~"$instance"' in t["expr"], (p["title"], t["expr"])
            names = selectors(t["expr"])
            assert names, t["expr"]
            missing = names - exported
            assert not missing, f"panel {p['title']!r} queries metrics the runtime does not export: {missing}"
            used |= names
    # each level is on the dashboard
    assert {"edge_model_latency_ms_bucket", "edge_input_drift", "edge_model_confidence_sum"} <= used
    assert {"process_resident_memory_bytes", "edge_stream_frames_dropped_total", "edge_outbox_oldest_age_seconds",
            "edge_temperature_celsius", "edge_sync_queue_depth"} <= used
    assert {"edge_shoppers_total", "edge_tryon_garments_tried_total", "edge_zone_dwell_seconds_bucket",
            "edge_shopper_queue_length", "edge_alerts_open", "edge_alert_ack_seconds_bucket"} <= used


def test_the_dashboard_check_catches_a_metric_that_is_not_exported(mirror_run):
    exported = exported_names(scrape(mirror_run.url))
    assert selectors('rate(edge_not_a_metric_total{instance=~"$instance"}[$__rate_interval])') - exported == \
        {"edge_not_a_metric_total"}
    with pytest.raises(Exception):
        selectors("sum by (model (rate(edge_model_latency_ms_count[5m]))")  # broken PromQL


def test_the_shipped_dashboard_is_what_the_generator_writes(tmp_path):
    from devtools.grafana import main

    assert main(["--out", str(tmp_path / "d.json")]) == 0
    assert (tmp_path / "d.json").read_text() == DASHBOARD.read_text(), "run `python -m devtools.grafana`"
