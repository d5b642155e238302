"""The alert engine's state file: its open and acked alerts survive a restart, kill -9 included (docs/ALERTS.md).

One small JSON file per engine, rewritten atomically (`write_atomic`) on every transition: each unresolved alert as
its last event shows it, how long it had been open, its event ids; the dedup keys in cooldown; and the transition
events written but perhaps not yet handed to the sink (re-emitted at the next start, with the same event ids).
Durations are seconds of the engine clock left / spent at `saved_at` (a wall time): stream time starts over in a
new process, so the restarted engine counts the time it was down (wall time) as passed, as it does for a gap.
An unreadable or damaged file is logged and moved aside; the engine then starts with no alerts. The engine never
writes NaN or infinities: a file with one is damaged (an infinite cooldown would silence its rule for good).
"""
from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from edge.alerts.config import ID_PATTERN, Severity
from edge.core.files import write_atomic

log = logging.getLogger(__name__)

STATE_VERSION = 1


class StoredView(BaseModel):
    """An unresolved alert as its last transition event showed it; the fields a restart needs are checked, the rest
    (title, condition, ...) kept as they are for the `alert_resolved` of an alert whose rule is gone."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    alert_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    rule: str = Field(pattern=ID_PATTERN)
    metric: str
    key: str
    state: Literal["open", "acked"]
    severity: Severity
    value: Any
    current_value: Any
    peak_value: Any
    held_s: float
    evidence: dict[str, Any]
    duplicates: list[str]
    opened_t: float
    opened_at: float
    escalated_t: float | None
    escalated_at: float | None
    acked_t: float | None
    acked_at: float | None
    acked_by: str | None
    ack_note: str | None
    ack_via: str | None

    @field_validator("value", "current_value", "peak_value")
    @classmethod
    def _a_value(cls, v: Any) -> Any:
        """A number or a flag, as the engine writes them (a null or text value would break its comparisons)."""
        if isinstance(v, int) or (isinstance(v, float) and math.isfinite(v)):  # bool is an int
            return v
        raise ValueError(f"{v!r} is not a finite number or a flag")


class StoredAlert(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    alert: StoredView
    open_for_s: float = Field(ge=0, description="engine seconds it had been open at saved_at")
    event_ids: list[str]


class PendingEvent(BaseModel):
    """A transition event saved before it was handed to the sink."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kind: str
    stream: str
    ts: float
    event_id: str
    data: dict[str, Any]


class AlertState(BaseModel):
    """The state file's content."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    v: Literal[1]
    saved_at: float = Field(description="wall time of the save")
    alerts: list[StoredAlert] = Field(default_factory=list)
    cooldowns: dict[str, float] = Field(default_factory=dict, description="dedup key -> seconds left at saved_at")
    pending: list[PendingEvent] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_alert_per_rule(self) -> AlertState:
        ids = [a.alert.alert_id for a in self.alerts]
        rules = [a.alert.rule for a in self.alerts]
        if len(set(ids)) != len(ids) or len(set(rules)) != len(rules):
            raise ValueError("an alert id or a rule appears twice")
        return self


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not strict JSON (the engine never writes it)")


class StateFile:
    """Load / save one engine's AlertState; never raises (the device keeps running with alerts in memory)."""

    def __init__(self, path: str | Path):
        self.path = Path(path).expanduser()
        self._failing = False

    @property
    def failing(self) -> bool:
        """Whether the last save failed (the file may hold an older state)."""
        return self._failing

    def load(self) -> AlertState | None:
        """The saved state; None if there is none, or if it is damaged (then it is moved aside)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            log.error("alert state %s unreadable: %s; starting with no alerts", self.path, e)
            return None
        try:
            state = AlertState.model_validate_json(raw)
            json.loads(raw, parse_constant=_no_constant)  # a NaN in evidence or a pending event: strict JSON only
            return state
        except ValidationError as e:
            why = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'file'}: {err['msg']}" for err in e.errors()[:3])
        except ValueError as e:
            why = str(e)
        aside = self.path.with_name(f"{self.path.name}.damaged-{time.strftime('%Y%m%dT%H%M%S')}")
        try:
            self.path.replace(aside)
            where = f"moved to {aside}"
        except OSError as e:
            where = f"could not be moved aside ({e})"
        log.error("alert state %s is damaged (%s): %s; starting with no alerts (the alerts open before the restart "
                  "are not continued: resolve them in the cloud)", self.path, why, where)
        return None

    def save(self, state: dict[str, Any]) -> bool:
        """Write `state` (an AlertState as a dict) atomically; False (logged once until it works again) if not."""
        try:
            write_atomic(self.path, json.dumps(state, allow_nan=False, separators=(",", ":")).encode())
        except (OSError, ValueError, TypeError) as e:
            if not self._failing:
                log.error("alert state %s not saved: %s (open alerts would be lost at a restart)", self.path, e)
            self._failing = True
            return False
        if self._failing:
            log.info("alert state %s saved again", self.path)
            self._failing = False
        return True
