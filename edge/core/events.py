"""Events leave analytics as small JSON-able records; never frames. A sink (the sync outbox) stores them."""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

# Delivery streams, in order of importance (the outbox drops telemetry first, alerts never).
STREAMS = ("alerts", "events", "telemetry")
CLOCK_SET = 1_577_836_800.0  # 2020-01-01: a wall time before this is a clock that was never set (no RTC, no NTP yet)


@dataclass
class Event:
    kind: str  # e.g. "person_entered", "tryon_session", "shelf_empty"
    data: dict[str, Any]
    stream: str = "events"  # one of STREAMS
    ts: float = field(default_factory=time.time)  # wall clock, seconds
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "stream": self.stream, "ts": self.ts, "event_id": self.event_id, "data": self.data}


class EventSink(Protocol):
    def emit(self, event: Event) -> None: ...


class ListSink:
    """Collects events in memory (tests, benchmarks)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)
