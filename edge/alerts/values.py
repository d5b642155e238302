"""What the alert engine is fed: named analytics values, each with the evidence behind it."""
from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

MAX_TRACKS = 50  # evidence lists are capped so an alert event stays small
MAX_DETAIL_BYTES = 4096

MetricKey = tuple[str, str]  # (metric, key), e.g. ("queue_length", "checkout")


@dataclass(frozen=True)
class Reading:
    """One analytics value and its evidence: the tracks involved, per-track durations (s), the models that
    produced it (name -> version) and any other JSON-able detail (camera, shelf row, ...)."""

    value: float | int | bool
    track_ids: tuple[int | str, ...] = ()
    durations_s: Mapping[int | str, float] = field(default_factory=dict)
    models: Mapping[str, str] = field(default_factory=dict)
    detail: Mapping[str, Any] = field(default_factory=dict)

    def usable(self) -> bool:
        """False for a value that is not a number or flag, or is NaN or infinite (the engine treats that as 'no
        data': no analytics value is really infinite, and an alert event must stay strict JSON)."""
        return isinstance(self.value, (numbers.Real, np.bool_)) and math.isfinite(float(self.value))

    def evidence(self) -> dict[str, Any]:
        """Strict-JSON evidence (no NaN, lists capped at MAX_TRACKS, detail at MAX_DETAIL_BYTES), so the outbox
        never refuses an alert event because of it."""
        out: dict[str, Any] = {}
        if self.track_ids:
            out["track_ids"] = [plain_json(t) for t in self.track_ids[:MAX_TRACKS]]
        if self.durations_s:
            out["durations_s"] = {str(k): round(float(v), 3) for k, v in list(self.durations_s.items())[:MAX_TRACKS]
                                  if math.isfinite(float(v))}
        if self.models:
            out["models"] = {str(k): str(v) for k, v in self.models.items()}
        if self.detail:
            detail = plain_json(dict(self.detail))
            out["detail"] = detail if len(json.dumps(detail)) <= MAX_DETAIL_BYTES else {"truncated": True}
        return out


def plain_json(obj: Any, depth: int = 0) -> Any:
    """Strict JSON: numpy scalars to numbers, NaN/inf to None, unknown objects to str, at most 6 levels."""
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, float) or (hasattr(obj, "__float__") and not hasattr(obj, "__index__")):
        f = float(obj)
        return f if math.isfinite(f) else None
    if hasattr(obj, "__index__"):
        return int(obj)
    if depth < 6 and isinstance(obj, Mapping):
        return {str(k): plain_json(v, depth + 1) for k, v in obj.items()}
    if depth < 6 and isinstance(obj, (list, tuple, set, frozenset)):
        return [plain_json(v, depth + 1) for v in obj]
    return str(obj)


Values = Mapping[MetricKey, Union[Reading, float, int, bool]]


def as_reading(v: Reading | float | int | bool | None) -> Reading | None:
    """A bare number or flag becomes a Reading without evidence; None, NaN and infinities become None (no data)."""
    if v is None:
        return None
    r = v if isinstance(v, Reading) else Reading(v)
    return r if r.usable() else None
