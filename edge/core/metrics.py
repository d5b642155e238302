"""Prometheus metrics of the runtime (served at /metrics on the local HTTP port).

Every module registers in prometheus_client's default REGISTRY, so one scrape shows all of them.
"""
from __future__ import annotations

import logging
import sqlite3
import time

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

log = logging.getLogger(__name__)

FRAMES = Counter("edge_frames_total", "Frames processed", ["source"])
FRAMES_DROPPED = Gauge("edge_frames_dropped", "Frames dropped by latest-frame back-pressure", ["source"])
SOURCE_UP = Gauge("edge_source_up", "1 while the source delivers frames", ["source"])
FPS = Gauge("edge_pipeline_fps", "Processed frames per second (1 s window)", ["pipeline"])
STAGE_MS = Histogram("edge_stage_ms", "Per-frame stage latency in ms", ["stage"],
                     buckets=(1, 2, 5, 10, 15, 20, 30, 40, 60, 80, 120, 200, 400, 1000))
PEOPLE = Gauge("edge_people", "People currently tracked")
EVENTS = Counter("edge_events_total", "Events emitted", ["kind"])
STREAM_FPS = Gauge("edge_stream_fps", "Processed frames per second of an extra camera stream", ["stream"])
STREAM_LATENCY = Histogram("edge_stream_latency_ms", "Capture to analytics done, per extra camera stream", ["stream"],
                           buckets=(10, 20, 50, 100, 150, 200, 300, 500, 1000, 2000))

# -- three-level monitoring (edge/core/monitoring.py fills these; docs/MONITORING.md) -------------------------
# Label meanings: `model` = the model name of the config ([models.*] name); `stream` on edge_stream_* and
# edge_input_* = a camera ("main" for [source], else the [[cameras]] id); `stream` on edge_outbox_* = the outbox
# stream (alerts / events / telemetry).
_UNIT = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# model level
MODEL_LATENCY = Histogram("edge_model_latency_ms", "One inference (Session.run) in ms, per model",
                          ["model", "backend", "precision"],
                          buckets=(1, 2, 3, 5, 8, 12, 16, 20, 30, 50, 80, 120, 200, 400, 1000))
MODEL_ERRORS = Counter("edge_model_errors_total", "Inferences that raised", ["model"])
FRAME_ERRORS = Counter("edge_frame_errors_total", "Frames skipped because their processing raised", ["error"])
MODEL_CONFIDENCE = Histogram("edge_model_confidence", "Per-person confidence: pose presence score of the landmark "
                             "model, detection score of the person detector", ["model"], buckets=_UNIT)
MODEL_PRESENCE = Histogram("edge_model_presence", "Mean landmark presence per person (pose landmark model)",
                           ["model"], buckets=_UNIT)
INPUT_BRIGHTNESS = Histogram("edge_input_brightness", "Mean grey level (0-255) of sampled frames", ["stream"],
                             buckets=(16, 32, 48, 64, 80, 96, 112, 128, 144, 160, 176, 192, 224, 256))
INPUT_BLUR = Histogram("edge_input_blur", "Sharpness of sampled frames: variance of the Laplacian (low = blurred)",
                       ["stream"], buckets=(5, 10, 25, 50, 100, 200, 400, 800, 1600, 3200, 6400))
INPUT_SAMPLED = Counter("edge_input_frames_sampled_total", "Frames sampled for input statistics", ["stream"])
INPUT_WITH_PEOPLE = Counter("edge_input_frames_with_people_total", "Sampled frames with at least one person",
                            ["stream"])
INPUT_STAT = Gauge("edge_input_stat", "Mean of the last window of samples (stat: brightness, blur, people = "
                   "fraction of frames with people)", ["stream", "stat"])
INPUT_BASELINE = Gauge("edge_input_baseline", "Baseline mean of an input statistic (taken at install, on disk)",
                       ["stream", "stat"])
INPUT_DRIFT = Gauge("edge_input_drift", "Population stability index of the last window of an input statistic "
                    "against its install baseline (< 0.1 stable, > 0.25 changed)", ["stream", "stat"])
# business level (from the events every stage emits; edge.core.monitoring.observe_event)
SHOPPERS = Counter("edge_shoppers_total", "Shoppers seen (person_entered events)", ["source"])
TRYON_SESSIONS = Counter("edge_tryon_sessions_total", "Try-on sessions ended (tryon_session events)")
TRYON_GARMENTS = Counter("edge_tryon_garments_tried_total", "Garment colours tried in try-on sessions")
TRYON_SESSION_S = Histogram("edge_tryon_session_seconds", "Try-on session duration",
                            buckets=(5, 10, 20, 30, 60, 120, 300, 600))
ZONE_VISITS = Counter("edge_zone_visits_total", "Zone visits ended (zone_left events)", ["zone"])
ZONE_DWELL = Histogram("edge_zone_dwell_seconds", "Dwell time per zone visit", ["zone"],
                       buckets=(1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800))
SHOPPER_QUEUE_LENGTH = Gauge("edge_shopper_queue_length", "People in a queue (queue_changed events)", ["queue"])
SHOPPER_QUEUE_WAIT = Gauge("edge_shopper_queue_wait_seconds", "Estimated wait of a queue", ["queue"])
ALERTS_OPENED = Counter("edge_alerts_opened_total", "Staff alerts opened", ["rule", "severity"])
ALERTS_OPEN = Gauge("edge_alerts_open", "Staff alerts not resolved (state: open, acked)", ["severity", "state"])
ALERT_ACK_S = Histogram("edge_alert_ack_seconds", "Time from an alert opening to its acknowledgement", ["severity"],
                        buckets=(5, 15, 30, 60, 120, 300, 600, 1800, 3600))


class SyncCollector:
    """Outbox and MQTT figures of a running SyncService, read at scrape time."""

    def __init__(self, service):
        self.service = service
        self._age_error: str | None = None  # the last error reading the oldest row (logged when it changes)

    def collect(self):
        m = self.service.metrics()
        depth = GaugeMetricFamily("edge_outbox_depth", "Rows waiting in the outbox", labels=["stream"])
        for stream, n in m.get("depth", {}).items():
            depth.add_metric([stream], n)
        yield depth
        dropped = GaugeMetricFamily("edge_outbox_dropped", "Rows dropped by the disk budget", labels=["stream"])
        for stream, n in m.get("dropped", {}).items():
            dropped.add_metric([stream], n)
        yield dropped
        yield GaugeMetricFamily("edge_outbox_bytes", "Stored outbox payload bytes", value=m.get("bytes", 0))
        yield GaugeMetricFamily("edge_outbox_dead_lettered", "Rows moved to the dead-letter table",
                                value=m.get("dead_lettered", 0))
        yield GaugeMetricFamily("edge_outbox_dead_letters_dropped", "Oldest dead letters deleted to keep them under "
                                "a tenth of the outbox budget", value=m.get("dead_letters_dropped", 0))
        yield GaugeMetricFamily("edge_outbox_store_errors", "Events the outbox could not store when emitted (disk "
                                "full, I/O error)", value=m.get("store_errors", 0))
        yield GaugeMetricFamily("edge_outbox_waiting_in_memory", "Events and alerts kept in memory until the disk "
                                "takes them (0 normally)", value=m.get("waiting_in_memory", 0))
        yield GaugeMetricFamily("edge_outbox_quarantined", "1 when the outbox found corrupt at start was moved aside "
                                "(its events are not sent; see the log for the file)",
                                value=1 if m.get("quarantined") else 0)
        yield GaugeMetricFamily("edge_mqtt_connected", "1 while connected to the broker",
                                value=1 if m.get("connected") else 0)
        yield GaugeMetricFamily("edge_sync_acks_refused", "Cloud acks refused (other epoch, or beyond what was sent)",
                                value=m.get("acks_refused", 0))
        try:
            oldest = self.service.outbox.oldest_created() if self.service.outbox._db is not None else None
        except (sqlite3.Error, RuntimeError) as e:  # a failing disk or a closing outbox: the other metrics still go out
            if str(e) != self._age_error:
                log.error("metrics: cannot read the oldest outbox row (%s); edge_outbox_oldest_age_seconds is left "
                          "out of /metrics until it can", e)
            self._age_error = str(e)
        else:
            self._age_error = None
            age = 0.0 if oldest is None else max(0.0, time.time() - oldest)
            yield GaugeMetricFamily("edge_outbox_oldest_age_seconds", "Age of the oldest undelivered event or alert "
                                    "(0 when none waits)", value=age)
        d = self.service.delivery.metrics() if self.service.delivery is not None else {}
        c = m.get("commands", {})
        queues = GaugeMetricFamily("edge_sync_queue_depth", "Sync work waiting: commands received and not answered, "
                                   "MQTT messages in flight, messages PUBACKed but not yet acked", labels=["queue"])
        queues.add_metric(["commands"], max(0, c.get("received", 0) - c.get("ok", 0) - c.get("error", 0)))
        queues.add_metric(["inflight"], d.get("inflight_messages", 0))
        queues.add_metric(["awaiting_ack"], d.get("awaiting_ack", 0))
        yield queues

    def register(self) -> SyncCollector:
        REGISTRY.register(self)
        return self

    def unregister(self) -> None:
        REGISTRY.unregister(self)


# -- operations (issue 12): circuit breakers, the decision log, held alerts ----------------------------------
CIRCUIT_STATE = Gauge("edge_circuit_state", "Circuit breaker state: 0 closed, 1 half_open, 2 open",
                      ["breaker", "scope"])
CIRCUIT_TRANSITIONS = Counter("edge_circuit_transitions_total", "Circuit breaker transitions, by new state and reason",
                              ["breaker", "scope", "to", "reason"])
DECISIONS = Counter("edge_decisions_total", "Records written to the decision log", ["kind"])
DECISIONS_DROPPED = Counter("edge_decisions_dropped_total", "Decision records lost (queue full or write failed)")
ALERT_RULES_HELD = Gauge("edge_alert_rules_held", "Alert rules held because the data they depend on is degraded",
                         ["camera"])

# -- privacy (issue 13; docs/PRIVACY.md) ---------------------------------------------------------------------
PRIVACY_REFUSED = Counter("edge_privacy_refused_total", "Outgoing MQTT payloads or records refused by the privacy "
                          "guard because they carried image data (channel: events, alerts, telemetry, state, "
                          "cmd_result, update, ...)", ["channel"])
SNAPSHOTS = Counter("edge_snapshots_total", "Snapshot command requests by outcome (taken, refused, failed)",
                    ["outcome"])

# -- service (edge/app/service.py: systemd watchdog, cold start) and shadow evaluation of model updates --------
SERVICE_START_SECONDS = Gauge("edge_service_start_seconds", "Cold start: process start to the first processed frame")
WATCHDOG_PINGS = Counter("edge_watchdog_pings_total", "WATCHDOG=1 keep-alives sent to systemd (only while every "
                         "enabled stream processes frames)")
STREAM_STALLED = Gauge("edge_stream_stalled", "1 while a stream has processed no frame for [service] stall_s",
                       ["stream"])
SHADOW_SAMPLES = Counter("edge_shadow_samples_total", "Live inputs of a model sampled for the shadow evaluation of "
                         "an update, by outcome (compared, error, dropped)", ["model", "outcome"])
