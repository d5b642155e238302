"""Prometheus metrics of the runtime (served at /metrics on the local HTTP port)."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

FRAMES = Counter("edge_frames_total", "Frames processed", ["source"], registry=REGISTRY)
FRAMES_DROPPED = Gauge("edge_frames_dropped", "Frames dropped by latest-frame back-pressure", ["source"],
                       registry=REGISTRY)
SOURCE_UP = Gauge("edge_source_up", "1 while the source delivers frames", ["source"], registry=REGISTRY)
FPS = Gauge("edge_pipeline_fps", "Processed frames per second (1 s window)", ["pipeline"], registry=REGISTRY)
STAGE_MS = Histogram("edge_stage_ms", "Per-frame stage latency in ms", ["stage"], registry=REGISTRY,
                     buckets=(1, 2, 5, 10, 15, 20, 30, 40, 60, 80, 120, 200, 400, 1000))
PEOPLE = Gauge("edge_people", "People currently tracked", registry=REGISTRY)
EVENTS = Counter("edge_events_total", "Events emitted", ["kind"], registry=REGISTRY)
OUTBOX_DEPTH = Gauge("edge_outbox_depth", "Rows waiting in the outbox", ["stream"], registry=REGISTRY)
