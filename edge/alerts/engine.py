"""The alert engine: named analytics values in, alert lifecycle transitions out (Events on the `alerts` stream).

Lifecycle: open → acked → resolved, or open/acked → resolved when the condition clears (auto-resolve, after
the rule's hysteresis). Escalation re-notifies an open alert with a raised severity. Every transition is one
Event(kind="alert_<transition>", stream="alerts"). Timers run on the stream time `t` given to `update()` (a
step over `max_gap_s` is a gap: `for_s` / `clear_for_s` start over); hours / quiet hours use its `t_wall`.
Thread-safe: `update()` runs on the pipeline thread, `ack()` / `resolve()` on the HTTP and command threads.
With a `state_path`, open and acked alerts survive a restart (edge/alerts/state.py).
"""
from __future__ import annotations

import logging
import numbers
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edge.alerts.config import SEVERITIES, AlertRule, AlertsConfig, in_hours, parse_hours
from edge.alerts.state import STATE_VERSION, AlertState, StateFile, StoredAlert
from edge.alerts.values import Reading, Values, as_reading
from edge.core.events import CLOCK_SET, Event, EventSink

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
TRANSITIONS = ("opened", "escalated", "acked", "resolved")
SAVE_RETRY_S = 10.0  # engine seconds between attempts to save a state file whose last save failed


class AlertError(Exception):
    """An ack / resolve that cannot be done (str() says why)."""


class UnknownAlert(AlertError, LookupError):
    pass


class InvalidTransition(AlertError):
    pass


@dataclass(frozen=True)
class Outcome:
    """Result of ack / resolve: the alert as it is now, and whether this call changed it."""

    alert: dict[str, Any]
    changed: bool


@dataclass
class _Alert:
    alert_id: str
    rule: AlertRule
    severity: str
    value: Any
    evidence: dict[str, Any]
    opened_t: float
    opened_at: float
    held_s: float
    clock_opened: float  # engine clock (monotonic stream time) at opening
    state: str = "open"
    current_value: Any = None
    peak_value: Any = None
    escalated_t: float | None = None
    escalated_at: float | None = None
    acked_t: float | None = None
    acked_at: float | None = None
    acked_by: str | None = None
    ack_note: str | None = None
    ack_via: str | None = None
    resolved_t: float | None = None
    resolved_at: float | None = None
    resolved_by: str | None = None
    resolve_note: str | None = None
    resolve_via: str | None = None
    resolution: str | None = None  # "cleared" (auto) | "staff" | "rule_removed" (at a restart)
    duplicates: list[str] = field(default_factory=list)  # other rules of the dedup key that fired meanwhile
    event_ids: list[str] = field(default_factory=list)
    ack_hooks_called: list[Callable[[dict[str, Any]], None]] = field(default_factory=list)  # on_ack hooks run for it

    def view(self) -> dict[str, Any]:
        r = self.rule
        return {
            "alert_id": self.alert_id, "rule": r.id, "title": r.title or r.condition(), "condition": r.condition(),
            "metric": r.metric, "key": r.key, "key_kind": r.spec.key_kind, "unit": r.spec.unit,
            "op": r.op, "threshold": r.threshold, "clear_threshold": r.clear_threshold,
            "state": self.state, "severity": self.severity, "rule_severity": r.severity,
            "escalated": self.escalated_at is not None,
            "value": self.value, "current_value": self.current_value, "peak_value": self.peak_value,
            "held_s": round(self.held_s, 3), "evidence": self.evidence,
            "dedup_key": r.group, "duplicates": list(self.duplicates),
            "opened_t": self.opened_t, "opened_at": self.opened_at,
            "escalated_t": self.escalated_t, "escalated_at": self.escalated_at,
            "acked_t": self.acked_t, "acked_at": self.acked_at, "acked_by": self.acked_by,
            "ack_note": self.ack_note, "ack_via": self.ack_via,
            "resolved_t": self.resolved_t, "resolved_at": self.resolved_at, "resolved_by": self.resolved_by,
            "resolve_note": self.resolve_note, "resolve_via": self.resolve_via, "resolution": self.resolution,
        }


@dataclass
class _RuleState:
    since: float | None = None  # engine clock when the opening condition started to hold
    clear_since: float | None = None  # engine clock when an open alert's condition stopped holding
    alert: _Alert | None = None  # the unresolved alert this rule opened
    noted: str | None = None  # last reason logged for not opening (log once per episode)


def _json_value(rule: AlertRule, r: Reading) -> Any:
    if rule.spec.kind == "flag":
        return bool(r.value)
    v = r.value
    return int(v) if isinstance(v, numbers.Integral) and not isinstance(v, bool) else round(float(v), 3)


def alert_order(a: dict[str, Any]) -> tuple:
    """The staff page's order of alert views: open first, then by severity (highest first), then oldest first (by
    wall time, so alerts of several cameras, whose stream clocks differ, sort alike: edge.app.streams.EngineGroup)."""
    return a["state"] != "open", -SEVERITIES.index(a["severity"]), a["opened_at"]


class AlertEngine:
    """Turns `update(values, t, t_wall)` into alerts; `ack()` / `resolve()` are the staff transitions.

    `sink` receives every transition Event (the runtime's outbox; may be reassigned). `wall_clock` stamps staff transitions,
    which happen between updates (default time.time; tests pass a fake). `on_ack` is a list of callables called with
    the alert (its view dict) after each acknowledgement that changed it, outside the engine's lock (the runtime
    retakes a shelf facing's reference when its facing_empty alert is acknowledged); a hook added while an alert is
    already acked (restored acked from the state file, or acked before the hook was added) is called for it at the
    next `update()`, once, as if it had seen the acknowledgement. `state_path`: the state file
    that keeps the open and acked alerts across restarts; they are restored here (an alert whose rule is gone is
    resolved, its `alert_resolved` goes to `sink` now). None: in memory only.
    """

    def __init__(self, config: AlertsConfig, sink: EventSink, *, wall_clock: Callable[[], float] = time.time,
                 state_path: str | os.PathLike | None = None):
        self.config = config
        self.sink = sink
        self._wall_clock = wall_clock
        self.rules: list[AlertRule] = [r for r in config.rules if r.enabled] if config.enabled else []
        self._hours = {r.id: (parse_hours(r.hours) if r.hours else None,
                              parse_hours(r.quiet_hours) if r.quiet_hours else None) for r in self.rules}
        self._rule_state = {r.id: _RuleState() for r in self.rules}
        self._active: dict[str, _Alert] = {}  # open or acked, by alert id
        self._resolved: OrderedDict[str, _Alert] = OrderedDict()  # the last `keep_resolved`
        self._by_event: dict[str, str] = {}  # transition event id -> alert id
        self._by_group: dict[str, _Alert] = {}  # dedup key -> its unresolved alert
        self._cooldown_until: dict[str, float] = {}  # dedup key -> engine clock
        self._lock = threading.RLock()
        self._clock = 0.0  # stream time made monotonic (a looping recording does not run timers backwards)
        self._last_t: float | None = None
        self.on_ack: list[Callable[[dict[str, Any]], None]] = []
        self._holds: dict[str, tuple[str, frozenset[str] | None]] = {}  # hold key -> (reason, metrics or None: all)
        self.camera = ""  # names this engine in the held-rules metric (the runtime sets the camera id)
        self._pending: list[Event] = []  # transition events not yet handed to the sink (see _commit)
        self._state = StateFile(state_path) if state_path else None
        self._save_retry_at = 0.0  # engine clock of the next retry of a failed state save
        if self._state is not None:
            with self._lock:
                self._restore(self._state.load())

    # ------------------------------------------------------------------ feeding
    def update(self, values: Values, t: float, t_wall: float) -> list[Event]:
        """Evaluate every rule on `values` ((metric, key) -> Reading or bare value) at stream time `t`,
        wall time `t_wall`. A missing, NaN or infinite value is 'no data': it neither opens nor clears an alert.
        Returns the transition events emitted (also sent to the sink)."""
        out: list[Event] = []
        with self._lock:
            try:
                self._evaluate(values, t, t_wall, out)
            finally:  # what was emitted before a failure is still sent and saved
                self._commit()
                self._retry_save()
            calls = self._ack_hook_calls()
        self._call_ack_hooks(calls)
        return out

    def _evaluate(self, values: Values, t: float, t_wall: float, out: list[Event]) -> None:
        """update()'s body, under the lock: the transition events go to `out` (and the pending queue)."""
        now, gap = self._advance(t)
        minute = None
        held = self._held_metrics()
        for rule in self.rules:
            st = self._rule_state[rule.id]
            if gap:  # nothing was seen meanwhile: neither held nor clear (as for missing values)
                st.since = st.clear_since = None
            # a held rule's data is degraded: no data, so it neither opens nor clears (escalation still runs)
            reading = None if held is not None and (not held or rule.metric in held) else \
                as_reading(values.get((rule.metric, rule.key)))
            if st.alert is not None:
                self._track_open(rule, st, reading, now, t, t_wall, out)
                continue
            if reading is None or not rule.fires(reading.value):
                st.since, st.noted = None, None
                continue
            if st.since is None:
                st.since = now
            if now - st.since < rule.for_s:
                continue
            if minute is None:
                minute = self.config.minute_of_day(t_wall)
            reason = self._blocked(rule, st, now, minute)
            if reason is not None:
                if st.noted != reason:
                    log.debug("rule %s holds but opens no alert: %s", rule.id, reason)
                    st.noted = reason
                continue
            a = _Alert(uuid.uuid4().hex, rule, rule.severity, _json_value(rule, reading),
                       {**reading.evidence(), rule.spec.key_kind: rule.key}, t, t_wall, now - st.since, now)
            a.current_value = a.peak_value = a.value
            st.alert, st.clear_since, st.noted = a, None, None
            self._active[a.alert_id] = a
            self._by_group[rule.group] = a
            log.info("alert %s opened: %s (%s, value %s)", a.alert_id, rule.id, rule.condition(), a.value)
            out.append(self._emit(a, "opened", t, t_wall))

    # ------------------------------------------------------------------ holding (degraded inputs)
    def hold(self, key: str, reason: str, metrics: Iterable[str] | None = None) -> None:
        """Hold the rules on `metrics` (None: every rule) while `key` (e.g. "breaker:analytics") says their data is
        degraded: their readings count as no data, so they neither open nor clear; open alerts keep escalating."""
        from edge.core import decisions

        with self._lock:
            new = key not in self._holds
            self._holds[key] = (reason, frozenset(metrics) if metrics is not None else None)
            rules = self._held_rule_ids()
        self._held_changed()
        if new:
            log.warning("alerts held (%s): %s; rules %s", key, reason, rules)
            decisions.record("alerts_held", key, {"action": "hold", "rules": rules, "camera": self.camera},
                             reason=f"hold {len(rules)} rule(s): {reason}")

    def release(self, key: str) -> None:
        """End the hold `key`; the rules it held judge fresh data again (`for_s` starts again)."""
        from edge.core import decisions

        with self._lock:
            gone = self._holds.pop(key, None)
            rules = self._held_rule_ids()
        self._held_changed()
        if gone is not None:
            log.info("alerts released (%s)", key)
            decisions.record("alerts_held", key, {"action": "release", "still_held": rules, "camera": self.camera},
                             reason=f"release: {gone[0]} is over")

    def held(self) -> dict[str, dict[str, Any]]:
        """Active holds: key -> {reason, metrics (None: all)}."""
        with self._lock:
            return {k: {"reason": r, "metrics": sorted(m) if m is not None else None}
                    for k, (r, m) in self._holds.items()}

    def _held_metrics(self) -> frozenset[str] | None:
        """None: nothing held; an empty set: every rule held; else the held metrics."""
        if not self._holds:
            return None
        if any(m is None for _, m in self._holds.values()):
            return frozenset()
        return frozenset().union(*(m for _, m in self._holds.values()))

    def _held_rule_ids(self) -> list[str]:
        held = self._held_metrics()
        if held is None:
            return []
        return [r.id for r in self.rules if not held or r.metric in held]

    def _held_changed(self) -> None:
        from edge.core.metrics import ALERT_RULES_HELD

        with self._lock:
            n = len(self._held_rule_ids())
        ALERT_RULES_HELD.labels(self.camera or "main").set(n)

    def _advance(self, t: float) -> tuple[float, bool]:
        """(engine clock, whether a gap of over `max_gap_s` without updates ends at `t`)."""
        gap = False
        if self._last_t is not None:
            dt = t - self._last_t
            if dt < 0:
                log.warning("stream time went back %.3fs (recording looped?): alert timers pause", -dt)
            elif dt > self.config.max_gap_s:
                gap = True
                log.warning("no update for %.1fs of stream time (over max_gap_s %gs): for_s / clear_for_s start "
                            "over", dt, self.config.max_gap_s)
            self._clock += max(0.0, dt)
        self._last_t = t
        return self._clock, gap

    def _blocked(self, rule: AlertRule, st: _RuleState, now: float, minute: int) -> str | None:
        hours, quiet = self._hours[rule.id]
        if hours is not None and not in_hours(hours, minute):
            return f"outside hours {rule.hours}"
        if quiet is not None and in_hours(quiet, minute):
            return f"quiet hours {rule.quiet_hours}"
        holder = self._by_group.get(rule.group)
        if holder is not None:  # another rule of the same dedup key has an unresolved alert
            if rule.id not in holder.duplicates:
                holder.duplicates.append(rule.id)
            return f"dedup key {rule.group!r} held by alert {holder.alert_id}"
        if now < self._cooldown_until.get(rule.group, float("-inf")):
            return f"cooldown of {rule.group!r}"
        return None

    def _track_open(self, rule: AlertRule, st: _RuleState, reading: Reading | None, now: float, t: float,
                    t_wall: float, out: list[Event]) -> None:
        a = st.alert
        if reading is None:  # no data: the clear timer starts over on fresh data (a gap is not time spent clear)
            st.clear_since = None
        else:
            a.current_value = _json_value(rule, reading)
            if rule.spec.kind == "number":
                better = max if rule.op in (">", ">=") else min
                a.peak_value = better(a.peak_value, a.current_value)
            if rule.holds(reading.value):
                st.clear_since = None
            else:
                if st.clear_since is None:
                    st.clear_since = now
                if now - st.clear_since >= rule.clear_for_s:
                    out.append(self._resolve(a, "cleared", None, None, "engine", t, t_wall))
                    return
        if (a.state == "open" and rule.escalate_after_s is not None and a.escalated_at is None
                and now - a.clock_opened >= rule.escalate_after_s
                # a continued alert may already be as severe (its rule's severity was lowered since): never lower it
                and SEVERITIES.index(rule.escalation_severity) > SEVERITIES.index(a.severity)):
            a.severity = rule.escalation_severity
            a.escalated_t, a.escalated_at = t, t_wall
            log.warning("alert %s (%s) not acknowledged after %gs: escalated to %s", a.alert_id, rule.id,
                        rule.escalate_after_s, a.severity)
            out.append(self._emit(a, "escalated", t, t_wall))

    # ------------------------------------------------------------------ staff transitions
    def ack(self, alert_id: str, by: str = "", note: str = "", *, via: str = "api") -> Outcome:
        """Acknowledge an open alert (`alert_id`, or the event id of any of its transition events).
        Acking an acked alert changes nothing; a resolved one raises InvalidTransition."""
        with self._lock:
            a = self._find(alert_id)
            if a.state == "resolved":
                raise InvalidTransition(f"alert {a.alert_id} is already resolved")
            if a.state == "acked":
                return Outcome(a.view(), False)
            a.state = "acked"
            a.acked_t, a.acked_at = self._last_t, self._wall_clock()
            a.acked_by, a.ack_note, a.ack_via = by, note, via
            log.info("alert %s acknowledged by %r via %s", a.alert_id, by, via)
            self._emit(a, "acked", a.acked_t, a.acked_at)
            self._commit()
            out = Outcome(a.view(), True)
            calls = self._ack_hook_calls()
        self._call_ack_hooks(calls)
        return out

    def _ack_hook_calls(self) -> list[tuple[Callable[[dict[str, Any]], None], dict[str, Any]]]:
        """(hook, alert view) for each acked alert an `on_ack` hook has not been called for yet, marked as called
        (under the lock, so a hook runs once per alert whichever thread gets there first)."""
        hooks, calls = list(self.on_ack), []
        if not hooks:
            return calls
        for a in self._active.values():
            due = [h for h in hooks if h not in a.ack_hooks_called] if a.state == "acked" else []
            if due:
                a.ack_hooks_called += due
                view = a.view()
                calls += [(h, view) for h in due]
        return calls

    @staticmethod
    def _call_ack_hooks(calls: list[tuple[Callable[[dict[str, Any]], None], dict[str, Any]]]) -> None:
        """Run `_ack_hook_calls()`'s calls, outside the lock."""
        for hook, view in calls:
            try:
                hook(view)
            except Exception:  # noqa: BLE001 - the acknowledgement stands whatever a hook does
                log.exception("on_ack hook failed for alert %s", view["alert_id"])

    def resolve(self, alert_id: str, by: str = "", note: str = "", *, via: str = "api") -> Outcome:
        """Resolve an open or acked alert by hand; resolving a resolved one changes nothing. If the condition
        still holds, a new alert needs it to hold `for_s` again and the cooldown to pass."""
        with self._lock:
            a = self._find(alert_id)
            if a.state == "resolved":
                return Outcome(a.view(), False)
            self._resolve(a, "staff", by, note, via, self._last_t, self._wall_clock())
            self._commit()
            return Outcome(a.view(), True)

    def _resolve(self, a: _Alert, resolution: str, by: str | None, note: str | None, via: str,
                 t: float | None, ts: float) -> Event:
        rule = a.rule
        a.state, a.resolution = "resolved", resolution
        a.resolved_t, a.resolved_at, a.resolved_by, a.resolve_note, a.resolve_via = t, ts, by, note, via
        st = self._rule_state[rule.id]
        st.alert, st.clear_since, st.noted = None, None, None
        st.since = self._clock if resolution == "staff" else None  # staff resolve: `for_s` starts again
        self._active.pop(a.alert_id, None)
        if self._by_group.get(rule.group) is a:
            del self._by_group[rule.group]
            # two restored alerts may share a dedup key (the config changed): the other one holds it now
            other = next((x for x in self._active.values() if x.rule.group == rule.group), None)
            if other is not None:
                self._by_group[rule.group] = other
        self._cooldown_until[rule.group] = self._clock + rule.cooldown_s
        log.info("alert %s (%s) resolved: %s%s", a.alert_id, rule.id, resolution, f" by {by!r}" if by else "")
        ev = self._emit(a, "resolved", t, ts)
        self._resolved[a.alert_id] = a  # trimmed after the emit, so its `resolved` event id goes with it too
        while len(self._resolved) > self.config.keep_resolved:
            _, old = self._resolved.popitem(last=False)
            for eid in old.event_ids:
                self._by_event.pop(eid, None)
        return ev

    def _find(self, alert_id: str) -> _Alert:
        alert_id = self._by_event.get(alert_id, alert_id)
        a = self._active.get(alert_id) or self._resolved.get(alert_id)
        if a is None:
            raise UnknownAlert(f"no alert {alert_id!r} on this device")
        return a

    def _emit(self, a: _Alert, transition: str, t: float | None, ts: float) -> Event:
        """The transition's event, queued for the sink (sent by the caller's `_commit`, under the same lock)."""
        data = {"v": SCHEMA_VERSION, "transition": transition, "t": t, **a.view()}
        ev = Event(f"alert_{transition}", data, stream="alerts", ts=ts)
        a.event_ids.append(ev.event_id)
        self._by_event[ev.event_id] = a.alert_id
        _record_decision(a, transition, ev)
        self._pending.append(ev)
        return ev

    def _commit(self) -> None:
        """Hand the queued events to the sink. With a state file: first save the state with them as pending, then
        emit, then save it without them; a kill in between re-emits them at the next start (same event ids: the
        sink sees them at least once) and never leaves the state and the events apart."""
        if not self._pending:
            return
        events, self._pending = self._pending, []
        if self._state is not None:
            self._state.save(self._snapshot(events))
        for ev in events:
            try:
                self.sink.emit(ev)
            except Exception:  # noqa: BLE001 - the transition stands even if the sink fails
                log.exception("could not emit %s of alert %s", ev.kind, ev.data.get("alert_id"))
        if self._state is not None:
            self._state.save(self._snapshot(()))

    # ------------------------------------------------------------------ the state file
    def _retry_save(self) -> None:
        """While the state file's last save failed (disk full, read-only), save again every SAVE_RETRY_S of engine
        time: once the disk has room, the file holds the alerts as they are, not as they were at the failure (a
        restart would continue alerts resolved since, and lose those opened since), with no transition needed."""
        if self._state is None or not self._state.failing or self._clock < self._save_retry_at:
            return
        self._save_retry_at = self._clock + SAVE_RETRY_S
        self._state.save(self._snapshot(()))

    def _snapshot(self, pending: Iterable[Event]) -> dict[str, Any]:
        """The AlertState to save now: times as engine seconds spent / left, at the wall time `saved_at`."""
        return {"v": STATE_VERSION, "saved_at": self._wall_clock(),
                "alerts": [{"alert": a.view(), "open_for_s": max(0.0, self._clock - a.clock_opened),
                            "event_ids": list(a.event_ids)} for a in self._active.values()],
                "cooldowns": {k: u - self._clock for k, u in self._cooldown_until.items() if u > self._clock},
                "pending": [ev.to_dict() for ev in pending]}

    def _restore(self, saved: AlertState | None) -> None:
        """Continue the alerts of a saved state (same ids, states, event ids, escalation, cooldowns; the time the
        device was down counts as passed). An alert whose rule is gone, disabled or now about another value is
        resolved (`rule_removed`). Events saved as pending are sent again."""
        if saved is None:
            return
        now = self._wall_clock()
        down = max(0.0, now - saved.saved_at)  # wall time: stream time starts over in a new process
        if min(now, saved.saved_at) < CLOCK_SET:  # a device without a set clock (no RTC, before NTP) on either side
            log.warning("alert state saved at wall time %.0f, now %.0f: the clock was not set, so the time the device "
                        "was down is unknown and counts as none", saved.saved_at, now)
            down = 0.0
        self._pending += [Event(p.kind, p.data, stream=p.stream, ts=p.ts, event_id=p.event_id) for p in saved.pending]
        cooldown_s: dict[str, float] = {}  # dedup key -> the longest cooldown_s of its rules now
        for r in self.rules:
            cooldown_s[r.group] = max(cooldown_s.get(r.group, 0.0), r.cooldown_s)
        for key, left in saved.cooldowns.items():
            # never longer than the config now says: a cooldown_s lowered since the save applies at once
            left = min(left, cooldown_s.get(key, 0.0))
            if left - down > 0:
                self._cooldown_until[key] = left - down  # the engine clock starts at 0
        rules = {r.id: r for r in self.rules}
        for s in saved.alerts:
            v, rule = s.alert, rules.get(s.alert.rule)
            if rule is None or (rule.metric, rule.key) != (v.metric, v.key):
                self._resolve_orphan(s, self._gone(v.rule, rule), now)
                continue
            a = _Alert(v.alert_id, rule, v.severity, v.value, v.evidence, v.opened_t, v.opened_at, v.held_s,
                       -(s.open_for_s + down), state=v.state, current_value=v.current_value,
                       peak_value=v.peak_value, escalated_t=v.escalated_t, escalated_at=v.escalated_at,
                       acked_t=v.acked_t, acked_at=v.acked_at, acked_by=v.acked_by, ack_note=v.ack_note,
                       ack_via=v.ack_via, duplicates=list(v.duplicates), event_ids=list(s.event_ids))
            self._rule_state[rule.id].alert = a
            self._active[a.alert_id] = a
            self._by_group.setdefault(rule.group, a)
            self._by_event.update((eid, a.alert_id) for eid in a.event_ids)
        if self._active:
            log.info("alerts continued after a restart (%s down): %s", f"{down:.0f}s",
                     ", ".join(f"{a.alert_id} ({a.rule.id}, {a.state})" for a in self._active.values()))
        self._commit()

    def _gone(self, rule_id: str, now_rule: AlertRule | None) -> str:
        if not self.config.enabled:
            return "alerts are disabled ([alerts] enabled = false)"
        if now_rule is not None:
            return f"rule {rule_id!r} is now about {now_rule.condition()}"
        if any(r.id == rule_id for r in self.config.rules):
            return f"rule {rule_id!r} is disabled"
        return f"rule {rule_id!r} is no longer in the config"

    def _resolve_orphan(self, s: StoredAlert, why: str, ts: float) -> None:
        """Resolve a restored alert whose rule is gone, from its saved view, so the cloud closes it too."""
        from edge.core import decisions

        view = {**s.alert.model_dump(), "state": "resolved", "resolved_t": None, "resolved_at": ts,
                "resolved_by": None, "resolve_note": why, "resolve_via": "engine", "resolution": "rule_removed"}
        ev = Event("alert_resolved", {"v": SCHEMA_VERSION, "transition": "resolved", "t": None, **view},
                   stream="alerts", ts=ts)
        self._pending.append(ev)
        log.warning("alert %s (%s) resolved at start: %s", view["alert_id"], view["rule"], why)
        decisions.record("alert", view["rule"], {
            "transition": "resolved", "alert_id": view["alert_id"], "event_id": ev.event_id, "state": "resolved",
            "severity": view["severity"], "resolution": "rule_removed", "by_via": "engine"}, reason=f"resolved: {why}")

    # ------------------------------------------------------------------ reading
    def get(self, alert_id: str) -> dict[str, Any]:
        """One alert (by alert id or transition event id); raises UnknownAlert."""
        with self._lock:
            return self._find(alert_id).view()

    def active(self) -> list[dict[str, Any]]:
        """Open and acked alerts, in alert_order."""
        with self._lock:
            return sorted((a.view() for a in self._active.values()), key=alert_order)

    def recent_resolved(self, n: int = 10) -> list[dict[str, Any]]:
        """The last n resolved alerts, newest first."""
        with self._lock:
            return [a.view() for a in reversed(list(self._resolved.values())[-n:])] if n > 0 else []

    def now_wall(self) -> float:
        return self._wall_clock()

    def validate_against(self, known: Mapping[str, Iterable[str]]) -> None:
        """Check the rules' keys against the device's analytics objects (see AlertsConfig.validate_against)."""
        self.config.validate_against(known)


def _record_decision(a: _Alert, transition: str, ev: Event) -> None:
    """Each alert transition in the decision log, with the evidence it was raised on."""
    from edge.core import decisions

    r = a.rule
    decisions.record("alert", r.id, {
        "transition": transition, "alert_id": a.alert_id, "event_id": ev.event_id, "state": a.state,
        "severity": a.severity, "condition": r.condition(), "metric": r.metric, "key": r.key, "value": a.value,
        "current_value": a.current_value, "held_s": round(a.held_s, 3), "evidence": a.evidence,
        "resolution": a.resolution, "by_via": a.ack_via if transition == "acked" else a.resolve_via},
        reason=f"{transition}: {r.condition()} (value {a.value}, severity {a.severity})")
