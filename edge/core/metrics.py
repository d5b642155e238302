"""Prometheus metrics of the runtime (served at /metrics on the local HTTP port).

Every module registers in prometheus_client's default REGISTRY, so one scrape shows all of them.
"""
from __future__ import annotations

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily

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


class SyncCollector:
    """Outbox and MQTT figures of a running SyncService, read at scrape time."""

    def __init__(self, service):
        self.service = service

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
        yield GaugeMetricFamily("edge_mqtt_connected", "1 while connected to the broker",
                                value=1 if m.get("connected") else 0)
        yield GaugeMetricFamily("edge_sync_acks_refused", "Cloud acks refused (other epoch, or beyond what was sent)",
                                value=m.get("acks_refused", 0))

    def register(self) -> SyncCollector:
        REGISTRY.register(self)
        return self

    def unregister(self) -> None:
        REGISTRY.unregister(self)
