"""Periodic device health as `telemetry` events (PUBACK delivery; the first stream dropped under disk pressure),
with the three-level monitoring summary (edge.core.monitoring) under `monitor`."""
from __future__ import annotations

import logging
import math
import os
import resource
import shutil
import threading
import time
from typing import Callable

from edge.core.events import CLOCK_SET, Event
from edge.core.periodic import Periodic, next_start

log = logging.getLogger(__name__)


def health_sample(started: float, extra: dict | None = None, disk_path: str = ".", *,
                  clock: Callable[[], float] = time.time) -> dict:
    """One health record: uptime (`clock()` - `started`: pass time.monotonic for both, a wall clock steps), load,
    process RSS and CPU, free disk, plus `extra` (sync metrics)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        load1 = None
    try:
        disk_free_mb = round(shutil.disk_usage(disk_path).free / 2**20, 1)
    except OSError:
        disk_free_mb = None
    return {"uptime_s": round(clock() - started, 1), "load1": load1, "cpu_s": round(ru.ru_utime + ru.ru_stime, 2),
            "max_rss_mb": round(ru.ru_maxrss / 1024, 1), "disk_free_mb": disk_free_mb, **(extra or {})}


def finite(obj):
    """(obj with every NaN / infinite float inside dicts and lists replaced by None, how many were replaced)."""
    if isinstance(obj, float):
        return (obj, 0) if math.isfinite(obj) else (None, 1)
    if isinstance(obj, dict):
        out, n = {}, 0
        for k, v in obj.items():
            out[k], m = finite(v)
            n += m
        return out, n
    if isinstance(obj, (list, tuple)):
        pairs = [finite(v) for v in obj]
        return [p[0] for p in pairs], sum(p[1] for p in pairs)
    return obj, 0


def monitor_summary() -> dict | None:
    """The three monitoring levels (model, system, business) of this process's /metrics, condensed (cumulative
    since start: the cloud takes differences between records); None if they cannot be read."""
    try:
        from edge.core.monitoring import registry_samples, summarize

        return summarize(registry_samples())
    except Exception:  # noqa: BLE001 - a health record goes out even without its summary
        log.exception("monitoring summary failed")
        return None


class TelemetryLoop:
    """Emits a `health` telemetry event every `interval_s` into `emit` (the outbox)."""

    def __init__(self, emit: Callable[[Event], object], interval_s: float, extra: Callable[[], dict],
                 disk_path: str = ".") -> None:
        self._emit, self.interval_s, self._extra, self._disk = emit, interval_s, extra, disk_path
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = time.monotonic()  # uptime is a duration: an NTP step must not move it

    def start(self) -> None:
        if self.interval_s <= 0:
            return
        self._thread = threading.Thread(target=self._run, name="sync-telemetry", daemon=True)
        self._thread.start()

    def stop(self) -> bool:
        """Stop the loop; False (logged) while a sample is still being taken after 2 s (the thread is kept: call
        stop() again before the outbox it emits to is closed)."""
        self._stop.set()
        th = self._thread
        if th is None:
            return True
        th.join(2)
        if th.is_alive():
            log.warning("telemetry: a sample is still in progress 2 s after the stop")
            return False
        self._thread = None
        return True

    def sample(self) -> Event:
        """The health event; a NaN or infinite number (a gauge of a broken sensor or stat) is sent as null, since
        payloads are strict JSON and one such value would otherwise dead-letter the whole record."""
        data = health_sample(self._started, self._extra(), self._disk, clock=time.monotonic)
        data["monitor"] = monitor_summary()
        data, bad = finite(data)
        if bad:
            log.debug("health record: %d non-finite numbers sent as null", bad)
        return Event("health", data, stream="telemetry")

    def _run(self) -> None:
        """A sample every `interval_s` on a fixed monotonic schedule (the time a sample takes does not add to the
        period; starts missed while a sample ran longer than the period are skipped, not caught up)."""
        period = self.interval_s
        due = time.monotonic() + period
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            try:
                self._emit(self.sample())
            except Exception:
                log.exception("telemetry sample failed")
            due = next_start(due, time.monotonic(), period)


# -- the daily decision summary (issue 12; docs/OPERATIONS.md) ------------------------------------------------
def summarize_decisions(records) -> dict:
    """Counts of one period's decision-log records: by kind, circuit openings per breaker (with their reasons),
    model selections and fallbacks, update outcomes, rollbacks (with reasons), alerts per rule, config reloads."""
    from collections import Counter, defaultdict

    kinds: Counter = Counter()
    circuits: dict = defaultdict(lambda: {"opened": 0, "closed": 0, "reasons": Counter()})
    models, fallbacks, updates, alerts, reloads = {}, Counter(), Counter(), defaultdict(Counter), Counter()
    rollbacks, holds = [], 0
    for r in records:
        kind, subject, data = r.get("kind"), r.get("subject", ""), r.get("data") or {}
        kinds[kind] += 1
        if kind == "circuit":
            c = circuits[subject]
            if data.get("to") == "open":
                c["opened"] += 1
                c["reasons"][data.get("reason", "?")] += 1
            elif data.get("to") == "closed":
                c["closed"] += 1
        elif kind == "model_selected":
            models[subject] = {k: data.get(k) for k in ("model", "version", "backend", "precision")}
        elif kind == "model_fallback":
            fallbacks[f"{subject}: {data.get('fallback')} {data.get('action')}"] += 1
        elif kind == "model_update":
            updates[data.get("state", "?")] += 1
        elif kind == "model_rollback" and len(rollbacks) < 20:
            rollbacks.append({"subject": subject, "reason": r.get("reason", "")[:300]})
        elif kind == "alert":
            alerts[subject][data.get("transition", "?")] += 1
        elif kind == "config_reload":
            reloads[data.get("status", "?")] += 1
        elif kind == "alerts_held" and data.get("action") == "hold":
            holds += 1
    return {"records": sum(kinds.values()), "by_kind": dict(kinds),
            "circuits": {k: {**v, "reasons": dict(v["reasons"])} for k, v in circuits.items()},
            "models": models, "fallbacks": dict(fallbacks), "updates": dict(updates), "rollbacks": rollbacks,
            "alerts": {k: dict(v) for k, v in alerts.items()}, "config_reloads": dict(reloads), "alert_holds": holds}


class DecisionSummaryLoop(Periodic):
    """Emits a `decision_summary` telemetry event for each completed UTC day of the decision log in `folder`,
    checked every `check_s`. The last day sent is kept in `<folder>/summary_state.json`, so restarts neither skip
    nor repeat a day; a device that was off catches up at most `catch_up_days`; the first start sends yesterday. Nothing
    is sent while the wall clock is unset (before CLOCK_SET)."""

    STATE = "summary_state.json"
    thread_name = "decision-summary"

    def __init__(self, emit: Callable[[Event], object], folder, *, check_s: float = 3600.0,
                 clock: Callable[[], float] = time.time, catch_up_days: int = 7) -> None:
        from pathlib import Path

        super().__init__()
        self._emit, self.folder, self.check_s, self._clock = emit, Path(folder), check_s, clock
        self.interval_s = check_s
        self.catch_up_days = catch_up_days
        self._told_unset = False

    def _last_day(self):
        import datetime as dt
        import json

        try:
            return dt.date.fromisoformat(json.loads((self.folder / self.STATE).read_text())["last_day"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def run_once(self) -> list[Event]:
        """Emit the summaries that are due now; returns them."""
        import datetime as dt
        import json

        from edge.core.decisions import ReadStats, read_decisions
        from edge.core.files import write_atomic

        now = self._clock()
        if now < CLOCK_SET:  # no RTC, NTP not reached yet: no day is known (a 1970 "yesterday" would be recorded)
            if not self._told_unset:
                self._told_unset = True
                log.info("decision summary: the wall clock is not set yet; waiting for it")
            return []
        today = dt.datetime.fromtimestamp(now, dt.timezone.utc).date()
        last = self._last_day() or today - dt.timedelta(days=2)
        if last >= today:  # sent while the clock ran ahead (set wrong, then corrected): would wait for that date
            log.warning("decision summary: the last day sent (%s) is not before today (%s): the clock was ahead; "
                        "going on from yesterday", last, today)
            last = today - dt.timedelta(days=2)
        day = max(last + dt.timedelta(days=1), today - dt.timedelta(days=self.catch_up_days))
        out = []
        while day < today:
            start = dt.datetime.combine(day, dt.time(), dt.timezone.utc).timestamp()
            stats = ReadStats()
            summary = summarize_decisions(read_decisions(self.folder, since=start, until=start + 86400, stats=stats))
            ev = Event("decision_summary", {"v": 1, "day": day.isoformat(), "from": start, "to": start + 86400,
                                            "skipped_lines": stats.skipped, **summary}, stream="telemetry")
            self._emit(ev)
            write_atomic(self.folder / self.STATE, json.dumps({"last_day": day.isoformat()}).encode())
            out.append(ev)
            day += dt.timedelta(days=1)
        return out

