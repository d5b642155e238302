"""Helpers shared by the alert tests (imported by basename: tests/alerts is on sys.path in pytest's default mode)."""
from __future__ import annotations

from datetime import datetime, timezone

from edge.alerts import AlertEngine, AlertsConfig
from edge.core.events import ListSink

from waiting import wait_until  # noqa: F401, E402 - shared polling helper (tests/), re-exported

def wall(hh: int, mm: int = 0, day: int = 2) -> float:
    """A UTC wall time (epoch seconds) on 2026-03-<day> at hh:mm."""
    return datetime(2026, 3, day, hh, mm, tzinfo=timezone.utc).timestamp()


class FakeWall:
    """An injectable wall clock for staff transitions."""

    def __init__(self, t: float):
        self.t = t

    def __call__(self) -> float:
        return self.t


def make_engine(*rules: dict, sink=None, wall_clock=None, **alerts) -> tuple[AlertEngine, ListSink]:
    cfg = AlertsConfig.model_validate({"timezone": "UTC", **alerts, "rules": list(rules)})
    sink = sink if sink is not None else ListSink()
    return AlertEngine(cfg, sink, wall_clock=wall_clock or FakeWall(wall(12))), sink


def kinds(events) -> list[str]:
    """Event kinds of a sink or of a list of events."""
    return [e.kind for e in getattr(events, "events", events)]


