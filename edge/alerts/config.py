"""Typed alert rules (`[alerts]` with `[[alerts.rules]]` in a device TOML); see docs/ALERTS.md.

A rule is structured fields, not an expression: `metric` + `key` name one analytics value, `op` + `threshold`
compare it (number metrics only; flag metrics fire while true), and it must hold for `for_s` seconds of stream
time before an alert opens. Bad rules are config errors that name the key.
"""
from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationInfo, field_validator

from edge.core.config_base import StrictModel

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")  # in rising order
Op = Literal[">", ">=", "<", "<="]
KeyKind = Literal["zone", "queue", "loitering", "kiosk", "shelf", "camera"]
ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"


@dataclass(frozen=True)
class MetricSpec:
    """What a metric measures: number or flag, its unit, the kind of thing its key names, its value range."""

    name: str
    kind: Literal["number", "flag"]
    key_kind: KeyKind
    unit: str = ""
    lo: float = 0.0  # smallest possible value
    hi: float | None = None  # largest possible value (None: unbounded)
    doc: str = ""


# The analytics values a rule may name. A key is the name of the analytics object the value comes from (the
# `name` of a zone, queue, loitering watch, kiosk-help watch or shelf, a facing id or the planogram's camera in the
# device's analytics config).
METRICS: dict[str, MetricSpec] = {m.name: m for m in (
    MetricSpec("queue_length", "number", "queue", "people", doc="people in the queue"),
    MetricSpec("queue_wait", "number", "queue", "s", doc="estimated wait of someone joining the queue"),
    MetricSpec("occupancy", "number", "zone", "people", doc="people in the zone"),
    MetricSpec("dwell", "number", "zone", "s", doc="longest current stay of one person in the zone"),
    MetricSpec("loitering", "flag", "loitering", doc="someone is loitering in the watched zone"),
    MetricSpec("help_requested", "flag", "kiosk", doc="a shopper at the kiosk waits for help"),
    MetricSpec("facing_empty", "flag", "shelf", doc="the shelf facing needs restocking (empty, or low when its "
               "alert_on lists low); the key is the facing id"),
    MetricSpec("camera_moved", "flag", "camera", doc="the shelf camera no longer aligns with its reference view; "
               "the key is the planogram's camera"),
)}

_NEGATE = {">": "<=", ">=": "<", "<": ">=", "<=": ">"}
_HOURS = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


def compare(value: float, op: str, threshold: float) -> bool:
    if op == ">":
        return value > threshold
    if op == ">=":
        return value >= threshold
    if op == "<":
        return value < threshold
    return value <= threshold


def _possible(op: str, x: float, spec: MetricSpec) -> bool:
    """Is there a value of the metric's range for which `value op x` holds?"""
    if op == ">":
        return spec.hi is None or x < spec.hi
    if op == ">=":
        return spec.hi is None or x <= spec.hi
    if op == "<":
        return x > spec.lo
    return x >= spec.lo


def parse_hours(text: str) -> tuple[tuple[int, int], ...]:
    """"HH:MM-HH:MM[,HH:MM-HH:MM...]" → ((start_minute, end_minute), ...); a window may cross midnight."""
    windows = []
    for part in text.split(","):
        m = _HOURS.match(part.strip())
        if not m:
            raise ValueError(f"{part.strip()!r} is not a time window 'HH:MM-HH:MM' (24 h clock, e.g. '22:00-06:00')")
        start, end = int(m[1]) * 60 + int(m[2]), int(m[3]) * 60 + int(m[4])
        if start == end:
            raise ValueError(f"{part.strip()!r} is an empty window (start = end)")
        windows.append((start, end))
    return tuple(windows)


def in_hours(windows: tuple[tuple[int, int], ...], minute: int) -> bool:
    for start, end in windows:
        if (start <= minute < end) if start < end else (minute >= start or minute < end):
            return True
    return False


class AlertRule(StrictModel):
    """One rule: `metric(key) op threshold for for_s` opens an alert of `severity`."""

    id: str = Field(pattern=ID_PATTERN, description="unique rule id")
    enabled: bool = True
    title: str = Field("", max_length=120, description="what staff read; '' = the condition")
    metric: str = Field(description="one of METRICS")
    key: str = Field(pattern=ID_PATTERN, description="name of the zone / queue / loitering / kiosk / shelf the metric is about")
    op: Op | None = Field(None, validate_default=True, description="number metrics only")
    threshold: float | None = Field(None, validate_default=True,
                                    description="number metrics only: compared with `op`, in the metric's unit")
    for_s: float = Field(0.0, ge=0, le=86400, description="seconds the condition must hold before an alert opens")
    clear_threshold: float | None = Field(None, validate_default=True,
                                          description="hysteresis: an open alert clears once `value op "
                                          "clear_threshold` stops holding; default = threshold")
    clear_for_s: float = Field(5.0, ge=0, le=86400, description="seconds it must stay clear before auto-resolve")
    severity: Severity = "warning"
    cooldown_s: float = Field(60.0, ge=0, le=7 * 86400, description="no new alert of the dedup key this long "
                              "after one resolved")
    dedup_key: str = Field("", description="rules sharing a key share one alert at a time; '' = the rule id")
    hours: str = Field("", description="only open alerts in these local-time windows, e.g. '22:00-06:00'")
    quiet_hours: str = Field("", description="never open alerts in these local-time windows")
    escalate_after_s: float | None = Field(None, gt=0, description="re-notify with `escalate_to` when not "
                                           "acknowledged this long after opening")
    escalate_to: Severity | None = Field(None, validate_default=True,
                                         description="default: one level above `severity`")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, v: str) -> str:
        if v not in METRICS:
            raise ValueError(f"unknown metric {v!r} (known: {', '.join(METRICS)})")
        return v

    @field_validator("dedup_key")
    @classmethod
    def _dedup_ok(cls, v: str) -> str:
        if v and not re.match(ID_PATTERN, v):
            raise ValueError(f"dedup_key {v!r} must be 1-64 of A-Z a-z 0-9 _ . -")
        return v

    @field_validator("hours", "quiet_hours")
    @classmethod
    def _hours_ok(cls, v: str) -> str:
        v = v.strip()
        if v:
            parse_hours(v)
        return v

    # Cross-field checks are field validators (fields validate in order, earlier ones are in info.data), so an
    # error names the offending key: alerts.rules.N.threshold, not alerts.rules.N.
    @field_validator("op", mode="after")
    @classmethod
    def _op_fits_metric(cls, v: str | None, info: ValidationInfo) -> str | None:
        spec = METRICS.get(info.data.get("metric", ""))
        if spec is not None and spec.kind == "flag" and v is not None:
            raise ValueError(f"{spec.name} is a flag (fires while true): remove op")
        if spec is not None and spec.kind == "number" and v is None:
            raise ValueError(f"{spec.name} is a number: set op, one of > >= < <=")
        return v

    @field_validator("threshold", mode="after")
    @classmethod
    def _threshold_possible(cls, v: float | None, info: ValidationInfo) -> float | None:
        spec, op = METRICS.get(info.data.get("metric", "")), info.data.get("op")
        if spec is None:
            return v
        if spec.kind == "flag":
            if v is not None:
                raise ValueError(f"{spec.name} is a flag (fires while true): remove threshold")
            return v
        if v is None:
            raise ValueError(f"{spec.name} is a number: set threshold (in {spec.unit or 'units'})")
        if not math.isfinite(v):
            raise ValueError(f"threshold {v} is not a finite number, so the rule never fires or always does "
                             f"(fix: a number in {spec.unit or 'units'}; {spec.name} is {_range(spec)})")
        if op is not None and not _possible(op, v, spec):
            raise ValueError(f"{spec.name} {op} {v:g} can never be true ({spec.name} is {_range(spec)})")
        if op is not None and not _possible(_NEGATE[op], v, spec):
            raise ValueError(f"{spec.name} {op} {v:g} is always true ({spec.name} is {_range(spec)})")
        return v

    @field_validator("clear_threshold", mode="after")
    @classmethod
    def _clear_possible(cls, v: float | None, info: ValidationInfo) -> float | None:
        spec, op, thr = METRICS.get(info.data.get("metric", "")), info.data.get("op"), info.data.get("threshold")
        if v is None or spec is None:
            return v
        if spec.kind == "flag":
            raise ValueError(f"{spec.name} is a flag (fires while true): remove clear_threshold")
        if not math.isfinite(v):
            raise ValueError(f"clear_threshold {v} is not a finite number: the alert would never clear or never "
                             f"stay open (fix: a number in {spec.unit or 'units'}, or remove it to use threshold)")
        if op is None or thr is None:
            return v
        up = op in (">", ">=")
        if (v > thr) if up else (v < thr):
            raise ValueError(f"must be {'at most' if up else 'at least'} threshold {thr:g} (the alert would clear "
                             f"before it fires)")
        if not _possible(_NEGATE[op], v, spec):
            raise ValueError(f"the alert could never clear ({spec.name} {_NEGATE[op]} {v:g} is impossible)")
        return v

    @field_validator("escalate_after_s", mode="after")
    @classmethod
    def _escalation_finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError(f"escalate_after_s {v} is not a finite number: the alert would never escalate "
                             "(fix: seconds, e.g. 300, or remove escalate_after_s and escalate_to)")
        return v

    @field_validator("escalate_to", mode="after")
    @classmethod
    def _escalation_raises(cls, v: str | None, info: ValidationInfo) -> str | None:
        after, severity = info.data.get("escalate_after_s"), info.data.get("severity")
        if v is not None and after is None:
            raise ValueError("set escalate_after_s too (when to escalate)")
        if after is not None and severity is not None:
            i = SEVERITIES.index(severity)
            target = v if v is not None else (SEVERITIES[i + 1] if i + 1 < len(SEVERITIES) else None)
            if target is None or SEVERITIES.index(target) <= i:
                raise ValueError(f"must be above severity {severity!r} (escalation raises the severity; "
                                 f"one of {', '.join(SEVERITIES)})")
        return v

    @property
    def spec(self) -> MetricSpec:
        return METRICS[self.metric]

    @property
    def group(self) -> str:
        """The de-duplication key."""
        return self.dedup_key or self.id

    @property
    def escalation_severity(self) -> str | None:
        if self.escalate_to is not None:
            return self.escalate_to
        i = SEVERITIES.index(self.severity)
        return SEVERITIES[i + 1] if i + 1 < len(SEVERITIES) else None

    def condition(self) -> str:
        """Human form, e.g. `queue_length(checkout) >= 4 for 60s`."""
        text = f"{self.metric}({self.key})"
        if self.op is not None:
            text += f" {self.op} {self.threshold:g}{'s' if self.spec.unit == 's' else ''}"
        if self.for_s:
            text += f" for {self.for_s:g}s"
        return text

    def fires(self, value: float | bool) -> bool:
        """The opening condition."""
        if self.op is None:
            return bool(value)
        return compare(float(value), self.op, self.threshold)

    def holds(self, value: float | bool) -> bool:
        """While an alert is open: still on the firing side of the clear threshold (hysteresis)."""
        if self.op is None:
            return bool(value)
        clear = self.threshold if self.clear_threshold is None else self.clear_threshold
        return compare(float(value), self.op, clear)


def _range(spec: MetricSpec) -> str:
    return f">= {spec.lo:g}" + (f" and <= {spec.hi:g}" if spec.hi is not None else "")


class AlertConfigError(ValueError):
    """Rules refer to things the device does not have. str() lists every problem as `key: what (fix)`."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class AlertsConfig(StrictModel):
    """The `[alerts]` section."""

    enabled: bool = True
    timezone: str = Field("", description="IANA zone for hours/quiet_hours, e.g. 'Europe/Berlin'; '' = device local")
    keep_resolved: int = Field(50, ge=0, le=10_000, description="resolved alerts kept for the page and lookups")
    max_gap_s: float = Field(30.0, gt=0, le=86400, description="a step of stream time longer than this is a gap in "
                             "the data (camera lost, pipeline stalled): for_s and clear_for_s start over, as after "
                             "missing values; cooldown and escalation still count it")
    state_path: str | None = Field(None, description="file that keeps the open and acked alerts across restarts: "
                                   "None = beside the outbox (alert-state-<device>[.<camera>].json), '' = none (a "
                                   "restart forgets them)")
    rules: list[AlertRule] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _tz_ok(cls, v: str) -> str:
        v = v.strip()
        if v:
            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {v!r} (use an IANA name such as 'Europe/Berlin')") from None
        return v

    @field_validator("rules")
    @classmethod
    def _unique_ids(cls, rules: list[AlertRule]) -> list[AlertRule]:
        first: dict[str, int] = {}
        for i, rule in enumerate(rules):
            if rule.id in first:
                raise ValueError(f"rules.{i}.id: duplicate rule id {rule.id!r} (first at rules.{first[rule.id]}.id)")
            first[rule.id] = i
        return rules

    def tz(self) -> tzinfo | None:
        return ZoneInfo(self.timezone) if self.timezone else None

    def zone_name(self) -> str:
        """The IANA name of the zone `hours` use: `timezone`, else the device's local zone (from $TZ or
        /etc/localtime); "" when the local zone has no such name."""
        if self.timezone:
            return self.timezone
        candidates = [os.environ.get("TZ", "").lstrip(":")]
        try:
            target = str(Path("/etc/localtime").resolve())
            candidates.append(target.split("/zoneinfo/", 1)[1] if "/zoneinfo/" in target else "")
        except OSError:
            pass
        for name in candidates:
            try:
                if name and not name.startswith("/"):
                    ZoneInfo(name)
                    return name
            except (ZoneInfoNotFoundError, ValueError):
                continue
        return ""

    def utc_offset_s(self, t_wall: float) -> float:
        """The zone's offset from UTC at `t_wall`, in seconds."""
        return datetime.fromtimestamp(t_wall, self.tz()).astimezone(self.tz()).utcoffset().total_seconds()

    def minute_of_day(self, t_wall: float) -> int:
        d = datetime.fromtimestamp(t_wall, self.tz())
        return d.hour * 60 + d.minute

    def validate_against(self, known: Mapping[str, Iterable[str]], prefix: str = "alerts") -> None:
        """Check that every enabled rule's key exists: `known` maps a key kind ("zone", "queue", "loitering",
        "kiosk", "shelf", "camera") to the names the device defines (a kind left out counts as none). Raises
        AlertConfigError naming each bad key."""
        have = {kind: set(ids) for kind, ids in known.items()}
        problems = []
        for i, rule in enumerate(self.rules):
            kind = rule.spec.key_kind
            ids = have.get(kind, set())
            if rule.enabled and rule.key not in ids:
                fix = f"use one of: {', '.join(sorted(ids))}" if ids else f"define a {kind} {rule.key!r} first"
                problems.append(f"{prefix}.rules.{i}.key: {kind} {rule.key!r} of rule {rule.id!r} is not defined "
                                f"on this device (fix: {fix})")
        if problems:
            raise AlertConfigError(problems)
