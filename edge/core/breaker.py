"""Circuit breakers per pipeline and per model: `closed` → `open` → `half_open` → `closed`.

A breaker is fed samples (`record()`): confidence signals (pose presence, landmark visibility, detector scores)
against thresholds, latency against a budget, and backend errors. It opens when, over a sliding `window_s`,
observed for at least `window_s`, the share of low-confidence (or over-budget) samples reaches `open_fraction`
(at least `min_samples` of them), or when `max_errors` errors happen within `window_s`. While open, the owner
uses its declared fallback (`allow()` is False). After `open_s` it is half-open: the primary path runs again as
a probe; `probe_samples` good samples of the kind that opened it close it, any bad sample opens it again. A failed
probe of an error- or latency-opened breaker doubles the open time (up to `max_open_s`): those probes cost a
call or a slow frame; low confidence is re-checked every `open_s`.

`GuardedSession` puts a model's backend session behind a breaker with a chain of fallback sessions (previous
version, FP32, another backend; the application builds the chain). `BreakerBoard` owns the breakers of a runtime
and turns every transition into a log line, an `edge_circuit_*` metric, a decision-log record and an event.
"""
from __future__ import annotations

import logging
import math
import statistics
import threading
import time
import typing
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, create_model, model_validator
from pydantic.fields import FieldInfo

from edge.core import decisions
from edge.core.config_base import StrictModel
from edge.core.events import Event

log = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
STATE_VALUE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
# confidence signal -> the policy threshold it is compared with (a sample below it is "low")
CONFIDENCE = {"presence": "min_presence", "visibility": "min_visibility", "detector_score": "min_detector_score"}
PIPELINES = ("mirror", "analytics")
MODELS = ("pose_detector", "pose_landmarks", "person_detector")
FALLBACKS = ("previous_version", "fp32", "other_backend")


class BreakerPolicy(StrictModel):
    """Thresholds of one breaker (the `[breaker]` defaults, or merged with a per-pipeline / per-model table)."""

    window_s: float = Field(5.0, gt=0, le=3600, description="signals are judged over this sliding window")
    min_samples: int = Field(15, ge=1, le=100_000, description="fewer samples in the window: no verdict")
    open_fraction: float = Field(0.8, gt=0, le=1, description="share of bad samples in the window that opens")
    max_errors: int = Field(3, ge=1, le=100_000, description="backend errors within window_s that open")
    open_s: float = Field(3.0, gt=0, le=3600, description="open this long, then half-open probes")
    max_open_s: float = Field(300.0, gt=0, le=86400, description="cap of the doubled open time after failed probes")
    probe_samples: int = Field(10, ge=1, le=100_000, description="good half-open samples that close")
    min_presence: float = Field(0.5, ge=0, le=1, description="pose presence (pose flag) below this is low")
    min_visibility: float = Field(0.5, ge=0, le=1, description="torso landmark visibility below this is low")
    min_detector_score: float = Field(0.3, ge=0, le=1, description="mean detection score below this is low "
                                      "(NanoDet scores real people 0.3-0.6: its own default threshold is 0.3)")
    latency_budget_ms: float = Field(0.0, ge=0, le=60_000, description="0: the stream's own budget (pipelines), "
                                     "no latency check (models)")

    @model_validator(mode="after")
    def _cap_not_below_open_s(self):
        if self.max_open_s < self.open_s:  # a failed probe would shorten the open time instead of doubling it
            raise ValueError(f"max_open_s {self.max_open_s:g} is below open_s {self.open_s:g} (fix: raise max_open_s "
                             "to at least open_s, or lower open_s)")
        return self


def _optional(f: FieldInfo) -> tuple:
    info = FieldInfo.merge_field_infos(f, default=None)
    return typing.Optional[f.annotation], info  # noqa: UP007 - runtime type construction


PolicyOverride = create_model(
    "PolicyOverride", __base__=StrictModel, __module__=__name__,
    __doc__="A per-pipeline or per-model `[breaker.pipelines.<name>]` / `[breaker.models.<name>]` table: any "
            "BreakerPolicy key; the others keep the `[breaker]` value.",
    **{n: _optional(f) for n, f in BreakerPolicy.model_fields.items()})


class BreakerConfig(BreakerPolicy):
    """`[breaker]`: default thresholds, the fallbacks, and per-pipeline / per-model overrides."""

    enabled: bool = True
    mirror_hint: str = Field("Step into view", min_length=1, max_length=80,
                             description="shown on the plain camera view while the mirror's breaker is open")
    model_fallbacks: list[Literal[FALLBACKS]] = Field(
        default_factory=lambda: list(FALLBACKS),
        description="what an open model breaker switches to, first that exists and loads wins")
    hold_alerts: bool = Field(True, description="hold people-based alerts while the analytics breaker is open")
    pipelines: dict[Literal[PIPELINES], PolicyOverride] = Field(default_factory=dict)
    models: dict[Literal[MODELS], PolicyOverride] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _overrides_make_valid_policies(self):
        """A per-pipeline / per-model table merged with the defaults must be a valid policy (checked here, at config
        check, not when its breaker is first made)."""
        from pydantic import ValidationError

        for scope, tables in (("pipeline", self.pipelines), ("model", self.models)):
            for name in tables:
                try:
                    self.policy(scope, name)
                except ValidationError as e:
                    msg = "; ".join(err["msg"].removeprefix("Value error, ") for err in e.errors())
                    raise ValueError(f"{scope}s.{name}: {msg}") from None
        return self

    def policy(self, scope: str, name: str) -> BreakerPolicy:
        """The defaults merged with the `[breaker.pipelines.<name>]` / `[breaker.models.<name>]` table."""
        table = (self.pipelines if scope == "pipeline" else self.models).get(name)
        base = {k: getattr(self, k) for k in BreakerPolicy.model_fields}
        if table is not None:
            base.update(table.model_dump(exclude_none=True))
        return BreakerPolicy(**base)


@dataclass(frozen=True)
class Transition:
    """One state change, with the numbers that caused it (`inputs`)."""

    breaker: str
    scope: str  # "pipeline" | "model"
    old: str
    new: str
    reason: str  # low_confidence | latency | backend_errors | cooldown | probe_failed | probes_ok
    summary: str  # one line for people
    inputs: dict = field(default_factory=dict)
    t_wall: float = 0.0
    opens: int = 0  # times this breaker opened so far
    open_for_s: float | None = None  # when opening: how long before the next probe

    def to_dict(self) -> dict:
        return {"breaker": self.breaker, "scope": self.scope, "from": self.old, "to": self.new,
                "reason": self.reason, "summary": self.summary, "inputs": self.inputs, "t_wall": self.t_wall,
                "opens": self.opens, "open_for_s": self.open_for_s}


class CircuitBreaker:
    """One breaker; thread-safe (samples may come from several stage threads). Listeners get each Transition,
    outside the breaker's lock."""

    def __init__(self, name: str, scope: str = "pipeline", policy: BreakerPolicy | None = None, *,
                 budget_ms: float | None = None, enabled: bool = True, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time):
        self.name, self.scope = name, scope
        self.policy = policy or BreakerPolicy()
        budget = budget_ms if budget_ms is not None else self.policy.latency_budget_ms
        self.budget_ms = budget if budget and budget > 0 else None
        self.enabled = enabled
        self._clock, self._wall = clock, wall
        self._lock = threading.Lock()
        self._state = CLOSED
        self._since = clock()
        self._observing: float | None = None  # first sample since the breaker last closed
        self._open_for = self.policy.open_s
        self._opened_on = ""  # confidence | latency | errors: the sample kind probes must show good
        self._probes = 0
        self._conf: deque = deque()  # (t, bad: tuple[str, ...], values)
        self._lat: deque = deque()  # (t, bad, ms)
        self._errs: deque = deque()  # (t, message)
        self.opens = 0
        self.last: Transition | None = None
        self.last_open: Transition | None = None  # the transition that last opened it (why it is degraded)
        self.listeners: list[Callable[[Transition], None]] = []

    # ------------------------------------------------------------------ reading
    @property
    def state(self) -> str:
        with self._lock:
            tr = self._tick()
            st = self._state
        self._notify(tr)
        return st

    def allow(self) -> bool:
        """True when the primary path should run (closed, or half-open: a probe); False: use the fallback."""
        return self.state != OPEN

    def snapshot(self) -> dict:
        st = self.state
        last = self.last
        opened = self.last_open
        return {"state": st, "since_s": round(self._clock() - self._since, 1), "opens": self.opens,
                "reason": last.reason if last else None, "summary": last.summary if last else None,
                "opened_because": opened.summary if opened is not None and st != CLOSED else None}

    # ------------------------------------------------------------------ feeding
    def record(self, *, ok: bool = False, error: BaseException | str | None = None, latency_ms: float | None = None,
               **confidence: float | None) -> None:
        """One sample: a successful call (`ok`), a backend `error`, a latency, and/or confidence signals
        (presence=, visibility=, detector_score=; None = not measured; NaN = a broken output, so low)."""
        unknown = set(confidence) - set(CONFIDENCE)
        if unknown:
            raise TypeError(f"unknown confidence signal(s) {sorted(unknown)}; known: {sorted(CONFIDENCE)}")
        if not self.enabled:
            return
        conf = {k: float(v) for k, v in confidence.items() if v is not None}
        with self._lock:
            trs = [self._tick()]
            now = self._clock()
            p = self.policy
            low = tuple(k for k, v in conf.items() if not v >= getattr(p, CONFIDENCE[k]))  # NaN is low
            slow = latency_ms is not None and self.budget_ms is not None and latency_ms > self.budget_ms
            if self._state == CLOSED:
                if self._observing is None:
                    self._observing = now
                if conf:
                    self._conf.append((now, low, conf))
                if latency_ms is not None and self.budget_ms is not None:
                    self._lat.append((now, slow, float(latency_ms)))
                if error is not None:
                    self._errs.append((now, _describe(error)))
                trs.append(self._check_open(now))
            elif self._state == HALF_OPEN:
                bad = [f"low {k}" for k in low] + (["latency"] if slow else []) + (["error"] if error is not None
                                                                                     else [])
                if bad:
                    trs.append(self._reopen(now, bad, conf, latency_ms, error))
                else:
                    good = {"errors": ok, "confidence": bool(conf), "latency": latency_ms is not None
                            and self.budget_ms is not None}[self._opened_on]
                    self._probes += int(good)
                    if self._probes >= p.probe_samples:
                        trs.append(self._move(CLOSED, "probes_ok", f"{self._probes} good probe samples",
                                              {"probes": self._probes}))
        self._notify(*trs)

    # ------------------------------------------------------------------ state machine (under the lock)
    def _tick(self) -> Transition | None:
        if self._state == OPEN and self._clock() - self._since >= self._open_for:
            self._probes = 0
            return self._move(HALF_OPEN, "cooldown", f"open {self._open_for:g}s: probing", {})
        return None

    def _prune(self, now: float) -> None:
        cut = now - self.policy.window_s
        for q in (self._conf, self._lat, self._errs):
            while q and q[0][0] < cut:
                q.popleft()

    def _check_open(self, now: float) -> Transition | None:
        p = self.policy
        self._prune(now)
        if len(self._errs) >= p.max_errors:
            msgs = [m for _, m in self._errs]
            inputs = {"errors": len(msgs), "window_s": p.window_s, "max_errors": p.max_errors, "last_error": msgs[-1]}
            return self._open(now, "errors", "backend_errors",
                              f"{len(msgs)} backend errors in {p.window_s:g}s (last: {msgs[-1]})", inputs)
        if self._observing is None or now - self._observing < p.window_s:
            return None  # not observed for a whole window yet: nothing is "sustained"
        if len(self._conf) >= p.min_samples:
            n = len(self._conf)
            bad = sum(1 for _, b, _ in self._conf if b)
            if bad / n >= p.open_fraction:
                means, worst = {}, []
                for k in CONFIDENCE:
                    vals = [v[k] for _, _, v in self._conf if k in v]
                    if not vals:
                        continue
                    real = [x for x in vals if math.isfinite(x)]  # inputs stay strict JSON (event, decision log)
                    m = means[k] = {"mean": round(statistics.fmean(real), 3) if real else None,
                                    "min": round(min(real), 3) if real else None,
                                    "threshold": getattr(p, CONFIDENCE[k])}
                    if len(real) < len(vals):
                        m["not_a_number"] = len(vals) - len(real)
                        worst.append(f"{k} not a number")
                    elif m["mean"] < m["threshold"]:
                        worst.append(f"{k} {m['mean']:.2f} < {m['threshold']:g}")
                worst = ", ".join(worst) or "low confidence"
                inputs = {"samples": n, "low": bad, "fraction": round(bad / n, 3), "window_s": p.window_s,
                          "open_fraction": p.open_fraction, "signals": means}
                return self._open(now, "confidence", "low_confidence",
                                  f"{worst} in {bad}/{n} samples over {p.window_s:g}s", inputs)
        if len(self._lat) >= p.min_samples:
            n = len(self._lat)
            bad = sum(1 for _, b, _ in self._lat if b)
            if bad / n >= p.open_fraction:
                ms = sorted(v for _, _, v in self._lat)
                p50, p95 = ms[n // 2], ms[min(n - 1, int(n * 0.95))]
                inputs = {"samples": n, "over_budget": bad, "fraction": round(bad / n, 3), "budget_ms": self.budget_ms,
                          "p50_ms": round(p50, 1), "p95_ms": round(p95, 1), "window_s": p.window_s}
                return self._open(now, "latency", "latency",
                                  f"latency p50 {p50:.0f} ms / p95 {p95:.0f} ms over the {self.budget_ms:g} ms budget "
                                  f"in {bad}/{n} samples", inputs)
        return None

    def _open(self, now: float, kind: str, reason: str, summary: str, inputs: dict) -> Transition:
        self._opened_on = kind
        self._open_for = self.policy.open_s
        self.opens += 1
        return self._move(OPEN, reason, summary, inputs)

    def _reopen(self, now: float, bad: list[str], conf: dict, latency_ms, error) -> Transition:
        p = self.policy
        if self._opened_on in ("errors", "latency"):
            self._open_for = min(self._open_for * 2, p.max_open_s)
        self.opens += 1
        signals = {k: v if math.isfinite(v) else None for k, v in conf.items()}
        inputs = {"failed_on": bad, "probes_before": self._probes, **({"signals": signals} if signals else {}),
                  **({"latency_ms": round(latency_ms, 1)} if latency_ms is not None else {}),
                  **({"error": _describe(error)} if error is not None else {})}
        return self._move(OPEN, "probe_failed", f"probe failed ({', '.join(bad)})", inputs)

    def _move(self, new: str, reason: str, summary: str, inputs: dict) -> Transition:
        old, self._state, self._since = self._state, new, self._clock()
        if new in (OPEN, CLOSED):
            self._conf.clear()
            self._lat.clear()
            self._errs.clear()
        if new == CLOSED:
            self._observing = None
            self._open_for = self.policy.open_s
        tr = Transition(self.name, self.scope, old, new, reason, summary, inputs, self._wall(), self.opens,
                        self._open_for if new == OPEN else None)
        self.last = tr
        if new == OPEN:
            self.last_open = tr
        return tr

    def _notify(self, *trs: Transition | None) -> None:
        for tr in trs:
            if tr is None:
                continue
            for fn in list(self.listeners):
                try:
                    fn(tr)
                except Exception:  # noqa: BLE001 - a listener must not break the pipeline that fed the sample
                    log.exception("breaker %s listener failed", self.name)


def _describe(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error[:300]
    return f"{type(error).__name__}: {error}"[:300]


class CircuitOpen(RuntimeError):
    """A guarded model's breaker is open and it has no fallback that loads."""


class GuardedSession:
    """A backend Session behind a model breaker (duck-typed: run / inputs / outputs / info / close).

    Closed or half-open: the primary session runs; its errors, latency (against the breaker's budget) and, with a
    `confidence(outputs) -> {signal: value}` extractor, its confidence are recorded; a failing call is answered by
    the fallback so the frame is not lost. Open: the fallback answers. `fallbacks` are (label, factory) pairs tried
    in order the first time one is needed (a factory that fails to load or a fallback that fails to run is skipped,
    and recorded). No fallback left: the primary's error, or CircuitOpen, goes to the caller.
    """

    def __init__(self, primary, breaker: CircuitBreaker, fallbacks: list[tuple[str, Callable[[], Any]]] = (), *,
                 confidence: Callable[[dict], dict] | None = None):
        self.primary, self.breaker = primary, breaker
        self._pending = list(fallbacks)
        self._confidence = confidence
        self.fallback = None
        self.fallback_label: str | None = None
        self.inputs, self.outputs = primary.inputs, primary.outputs
        self.fallback_calls = 0

    @property
    def info(self):
        """The info of the session answering now (the primary's while the breaker lets it run)."""
        return self.fallback.info if self.fallback is not None and not self.breaker.allow() else self.primary.info

    @property
    def max_batch(self) -> int:
        """Samples per run() of the session answering now (a fallback may batch less; see _run_fallback)."""
        s = self.fallback if self.fallback is not None and not self.breaker.allow() else self.primary
        return max(1, int(getattr(s, "max_batch", 1)))

    @property
    def active(self) -> str:
        return "primary" if self.breaker.allow() or self.fallback is None else self.fallback_label

    def run(self, feeds):
        if not self.breaker.allow():
            return self._run_fallback(feeds, None)
        t0 = time.perf_counter()
        try:
            out = self.primary.run(feeds)
        except Exception as e:  # noqa: BLE001 - any backend failure counts; the caller gets the fallback's answer
            self.breaker.record(error=e)
            return self._run_fallback(feeds, e)
        ms = (time.perf_counter() - t0) * 1e3
        conf = {}
        if self._confidence is not None:
            try:
                conf = self._confidence(out)
            except Exception:  # noqa: BLE001 - an extractor bug must not drop the frame
                log.exception("confidence of %s", self.breaker.name)
        self.breaker.record(ok=True, latency_ms=ms, **conf)
        return out

    def _run_fallback(self, feeds, error: BaseException | None):
        while True:
            fb = self._fallback_session()
            if fb is None:
                if error is not None:
                    raise error
                last = self.breaker.last
                raise CircuitOpen(f"model {self.breaker.name}: circuit open ({last.summary if last else ''}) and "
                                  "no fallback loads")
            try:
                out = _run_in_chunks(fb, feeds)
                self.fallback_calls += 1
                return out
            except Exception as e:  # noqa: BLE001
                log.error("fallback %s of %s failed: %s; trying the next one", self.fallback_label,
                          self.breaker.name, e)
                decisions.record("model_fallback", self.breaker.name,
                                 {"fallback": self.fallback_label, "action": "failed", "error": _describe(e)},
                                 reason=f"fallback {self.fallback_label} failed to run: {_describe(e)}")
                self.fallback, self.fallback_label = None, None

    def _fallback_session(self):
        while self.fallback is None and self._pending:
            label, factory = self._pending.pop(0)
            t0 = time.perf_counter()
            try:
                self.fallback = factory()
            except Exception as e:  # noqa: BLE001 - not built, not installed, corrupt: try the next one
                log.warning("model %s: fallback %s does not load: %s", self.breaker.name, label, e)
                decisions.record("model_fallback", self.breaker.name,
                                 {"fallback": label, "action": "unavailable", "error": _describe(e)},
                                 reason=f"fallback {label} does not load: {_describe(e)}")
                continue
            self.fallback_label = label
            info = getattr(self.fallback, "info", None)
            load_ms = round((time.perf_counter() - t0) * 1e3, 1)
            log.warning("model %s: switched to fallback %s (loaded in %.0f ms)", self.breaker.name, label, load_ms)
            decisions.record("model_fallback", self.breaker.name,
                             {"fallback": label, "action": "loaded", "load_ms": load_ms,
                              "backend": getattr(info, "backend", None), "precision": getattr(info, "precision", None),
                              "file": str(getattr(info, "path", "")).rsplit("/", 1)[-1],
                              "primary": {"backend": self.primary.info.backend,
                                          "precision": self.primary.info.precision}},
                             reason=f"{self.breaker.name} falls back to {label}")
        return self.fallback

    def close(self) -> None:
        for s in (self.primary, self.fallback):
            if s is not None:
                s.close()


def _run_in_chunks(session, feeds):
    """session.run(feeds), split along the batch axis when the feeds stack more samples than the session takes."""
    import numpy as np

    n = min((len(v) for v in feeds.values()), default=1)
    mb = max(1, int(getattr(session, "max_batch", 1)))
    if n <= mb:
        return session.run(feeds)
    parts = [session.run({k: v[i:i + mb] for k, v in feeds.items()}) for i in range(0, n, mb)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


class BreakerBoard:
    """The breakers of one runtime: created from `[breaker]`, each transition logged, counted, recorded in the
    decision log and emitted as a `circuit_transition` event into `sink` (if given)."""

    def __init__(self, config: BreakerConfig | None = None, *, sink=None, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time):
        self.config = config or BreakerConfig()
        self.sink = sink
        self._clock, self._wall = clock, wall
        self.breakers: dict[tuple[str, str], CircuitBreaker] = {}

    def get(self, scope: str, name: str, *, budget_ms: float | None = None) -> CircuitBreaker:
        """The breaker of a pipeline ("pipeline", "mirror") or a model ("model", "pose_landmarks"), created on
        first use. budget_ms: the stream's own latency budget, used when the policy's is 0."""
        key = (scope, name)
        if key not in self.breakers:
            from edge.core.metrics import CIRCUIT_STATE

            policy = self.config.policy(scope, name)
            budget = policy.latency_budget_ms or budget_ms
            b = CircuitBreaker(name, scope, policy, budget_ms=budget or 0.0, enabled=self.config.enabled,
                               clock=self._clock, wall=self._wall)
            b.listeners.append(self._on_transition)
            self.breakers[key] = b
            CIRCUIT_STATE.labels(name, scope).set(0)
        return self.breakers[key]

    def _on_transition(self, tr: Transition) -> None:
        from edge.core.metrics import CIRCUIT_STATE, CIRCUIT_TRANSITIONS

        level = logging.WARNING if tr.new == OPEN else logging.INFO
        log.log(level, "circuit %s/%s: %s -> %s: %s", tr.scope, tr.breaker, tr.old, tr.new, tr.summary)
        CIRCUIT_STATE.labels(tr.breaker, tr.scope).set(STATE_VALUE[tr.new])
        CIRCUIT_TRANSITIONS.labels(tr.breaker, tr.scope, tr.new, tr.reason).inc()
        decisions.record("circuit", f"{tr.scope}/{tr.breaker}", tr.to_dict(),
                         reason=f"{tr.old} -> {tr.new}: {tr.summary}")
        if self.sink is not None:
            try:
                self.sink.emit(Event("circuit_transition", {"v": 1, **tr.to_dict()}, ts=tr.t_wall))
            except Exception:  # noqa: BLE001 - the transition stands even if the sink fails
                log.exception("could not emit circuit transition of %s", tr.breaker)

    def health(self) -> dict:
        return {f"{s}/{n}": b.snapshot() for (s, n), b in list(self.breakers.items())}  # get() may add one

    def degraded(self) -> list[str]:
        """Breakers that are not closed."""
        return [f"{s}/{n}" for (s, n), b in list(self.breakers.items()) if b.state != CLOSED]
