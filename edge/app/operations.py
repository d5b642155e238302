"""Operations wiring of a runtime (docs/OPERATIONS.md): the decision log, the circuit breakers of the pipelines and
models with their declared fallbacks, and the daily decision summary.

Fallbacks: a model breaker switches to the first of `[breaker] model_fallbacks` that exists (the previous version
kept by the update agent, the FP32 artefact of an INT8 model, another installed backend); the mirror's breaker shows
the plain camera with `[breaker] mirror_hint`; the analytics breaker marks analytics events `degraded` and holds the
alert rules on people-based metrics.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from edge.core import decisions
from edge.core.breaker import CLOSED, OPEN, BreakerBoard, GuardedSession, Transition
from edge.core.decisions import DecisionLog

log = logging.getLogger(__name__)

# "the stream's own budget" of a pipeline whose [breaker] latency_budget_ms is 0: the mirror's motion-to-photon
# (3x its p95 target of 80 ms: clearly unusable) and the main camera's capture -> analytics done
STREAM_BUDGET_MS = {"mirror": 250.0, "analytics": 1000.0}
# alert metrics computed from person detections (held while the analytics breaker is open); shelf facings and
# camera_moved come from the image itself and are not held
PEOPLE_METRICS = ("queue_length", "queue_wait", "occupancy", "dwell", "loitering", "help_requested")
HOLD_KEY = "breaker:analytics"


def decision_log_dir(cfg) -> Path:
    """`[decisions] path`, else beside the outbox: <outbox folder>/decisions-<device id>."""
    if cfg.decisions.path:
        return Path(cfg.decisions.path).expanduser()
    return cfg.sync.resolved_outbox_path(cfg.device.id).parent / f"decisions-{cfg.device.id}"


def landmark_confidence(out: dict) -> dict:
    """The pose landmark model's own confidence: its pose flag (`Identity_1`, a probability), lowest of the batch."""
    flag = out.get("Identity_1")
    return {} if flag is None else {"presence": float(np.min(flag))}


CONFIDENCE_OF = {"pose_landmarks": landmark_confidence}


class Operations:
    """The decision log, the breaker board and the summary loop of one runtime."""

    def __init__(self, cfg, sink=None, *, clock=time.monotonic):
        self.cfg = cfg
        self.board = BreakerBoard(cfg.breaker, sink=sink, clock=clock)  # clock: breaker windows (tests pass one)
        self.log: DecisionLog | None = None
        self.folder = decision_log_dir(cfg)
        self._summary = None
        self.log_error: str | None = None

    def open(self) -> Operations:
        if self.cfg.decisions.enabled:
            try:
                self.log = DecisionLog.from_config(self.cfg.decisions, self.folder).open()
            except OSError as e:  # the store keeps running without it; /healthz and the log say why
                log.error("decision log disabled: cannot open %s: %s (fix: [decisions] path)", self.folder, e)
                self.log_error = str(e)
                return self
            decisions.set_default(self.log)
            log.info("decision log in %s", self.folder)
        return self

    def start_summary(self, emit) -> None:
        """A `decision_summary` telemetry event for each completed (UTC) day."""
        if self.log is None or not self.cfg.decisions.daily_summary:
            return
        from sync.telemetry import DecisionSummaryLoop

        self._summary = DecisionSummaryLoop(emit, self.folder).start()

    def close_summary(self) -> None:
        """Stop the summary loop (before the outbox it emits into closes)."""
        if self._summary is not None:
            self._summary.stop()
            self._summary = None

    def close(self) -> None:
        self.close_summary()
        if self.log is not None:
            if decisions.get_default() is self.log:
                decisions.set_default(None)
            self.log.close()

    def health(self) -> dict:
        out = {"circuits": self.board.health(), "degraded": self.board.degraded()}
        if self.log_error:
            out["decision_log_error"] = self.log_error
        return out

    # ------------------------------------------------------------------ models
    def open_pose(self, zoo, why: str = "start"):
        """The pose pipeline on guarded sessions (detector and landmarks behind their model breakers)."""
        from edge.pose.pipeline import PosePipeline, landmark_outputs, open_sessions

        cfg = self.cfg
        det, lmk = open_sessions(cfg.models, zoo, cfg.pose)
        det = self.guard(zoo, "pose_detector", cfg.models.pose_detector, det, why=why)
        lmk = self.guard(zoo, "pose_landmarks", cfg.models.pose_landmarks, lmk, why=why,
                         outputs=landmark_outputs(cfg.pose))
        return PosePipeline(cfg, zoo, sessions=(det, lmk))

    def guard(self, zoo, role: str, ref, session, *, why: str = "start", outputs=None) -> GuardedSession:
        """Record the selection of `session` for model `role`, and put it behind the model's breaker with its
        fallback chain."""
        record_selection(zoo, role, ref, session, why)
        breaker = self.board.get("model", role)
        chain = fallback_chain(zoo, ref, session, self.cfg.breaker.model_fallbacks, outputs)
        log.info("model %s: fallbacks %s", role, [label for label, _ in chain] or "none")
        return GuardedSession(session, breaker, chain, confidence=CONFIDENCE_OF.get(role))

    # ------------------------------------------------------------------ pipelines
    def mirror_breaker(self):
        return self.board.get("pipeline", "mirror", budget_ms=STREAM_BUDGET_MS["mirror"])

    def watch_behaviour(self, behaviour):
        """Wire the analytics breaker to a BehaviourStage: hold people-based alert rules while open. Returns
        observe(frame, pose_result), to call after each processed frame (detection scores, latency)."""
        breaker = self.board.get("pipeline", "analytics", budget_ms=STREAM_BUDGET_MS["analytics"])
        engine = behaviour.engine

        def on_transition(tr: Transition) -> None:
            if not self.cfg.breaker.hold_alerts:
                return
            if tr.new == OPEN:
                engine.hold(HOLD_KEY, f"analytics circuit open: {tr.summary}", PEOPLE_METRICS)
            elif tr.new == CLOSED:
                engine.release(HOLD_KEY)
        breaker.listeners.append(on_transition)

        def observe(frame, pose_result=None) -> None:
            tracked = behaviour.analytics.tracked
            score = None
            if tracked is not None and len(tracked):
                score = float(np.mean(tracked.score))
            # latency only on live sources: recorded media read as fast as possible queues by design, and a
            # busy replay must not hold alerts (it is judged on confidence and backend errors alone)
            latency = (time.monotonic() - frame.t_capture) * 1e3 if frame.clock == "capture" else None
            breaker.record(detector_score=score, latency_ms=latency)
        return observe

    def analytics_sink(self, sink):
        """The analytics' event sink: events emitted while the analytics breaker is not closed carry
        `degraded: true` (and the breaker's last reason)."""
        return DegradedMarkingSink(sink, lambda: self.board.get("pipeline", "analytics",
                                                                budget_ms=STREAM_BUDGET_MS["analytics"]))

    def reload_recorded(self, path: str, result: dict) -> None:
        from edge.core.files import sha256_file

        try:
            digest = sha256_file(path)
        except OSError:
            digest = None
        decisions.record("config_reload", str(path), {**result, "sha256": digest},
                         reason=f"{result.get('status')}: " + (", ".join(result.get("applied", [])) + " applied"
                                                               if result.get("status") == "ok"
                                                               else str(result.get("reason", ""))[:300]))


class DegradedMarkingSink:
    """EventSink wrapper: while `breaker()` is not closed, events get `degraded: true` and `degraded_reason`."""

    def __init__(self, sink, breaker):
        self.sink, self._breaker = sink, breaker

    def emit(self, event) -> None:
        b = self._breaker()
        if b.state != CLOSED and event.stream != "alerts":
            event.data = {**event.data, "degraded": True,
                          "degraded_reason": b.last_open.summary if b.last_open is not None else b.state}
        self.sink.emit(event)


# ---------------------------------------------------------------------- model selection and fallbacks
def auto_choice(zoo, name: str, info) -> dict | None:
    """The cached `backend = "auto"` measurement that chose this backend/precision (newest), or None."""
    from edge.backends.auto import default_cache_path

    try:
        data = json.loads(default_cache_path(zoo).read_text())
    except (OSError, ValueError):
        return None
    hits = [e for e in data.values() if isinstance(e, dict) and e.get("model") == name
            and e.get("backend") == info.backend and e.get("precision") == info.precision]
    if not hits:
        return None

    def when(e: dict) -> float:  # an entry auto reuses may lack the fields it only reports (another version, edits)
        t = e.get("chosen_at")
        return float(t) if isinstance(t, (int, float)) and not isinstance(t, bool) else 0.0

    e = max(hits, key=when)
    median = e.get("median_ms")
    return {"median_ms": median if isinstance(median, dict) else None, "reasons": e.get("reasons"),
            "chosen_at": e.get("chosen_at"), "cpu": e.get("cpu")}


def record_selection(zoo, role: str, ref, session, why: str) -> None:
    """A `model_selected` decision: which model, version, backend and precision, and why (auto's numbers)."""
    info = session.info
    data = {"role": role, "model": ref.name, "version": zoo.model_dir(ref.name).name, "backend": info.backend,
            "precision": info.precision, "threads": ref.threads, "file": Path(info.path).name,
            "runtime": info.runtime_version, "requested": {"backend": ref.backend, "precision": ref.precision}}
    if ref.backend == "auto":
        choice = auto_choice(zoo, ref.name, info)
        data["auto"] = choice
        times = ", ".join(f"{b} {ms} ms" for b, ms in ((choice or {}).get("median_ms") or {}).items())
        reason = f"auto: fastest backend passing golden parity ({times or 'measurement not found'})"
    else:
        reason = f"configured backend {ref.backend}, precision {ref.precision}"
    decisions.record("model_selected", role, data,
                     reason=f"{why}: {ref.name} {data['version']} on {info.backend}/{info.precision}; {reason}")


def previous_version(zoo, name: str) -> str | None:
    """The version the update agent keeps to roll back to (`previous` in <cache>/updates/agent.json, see
    sync.update_installer.ModelStore), or None. Read only: the runtime never writes the agent's state."""
    try:
        state = json.loads((Path(zoo.cache) / "updates" / "agent.json").read_text())
        prev = state["models"][name].get("previous")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return prev if isinstance(prev, str) else None


def _pinned_zoo(zoo, name: str, version: str):
    """A view of `zoo` where model `name` is at `version` (its artefacts, not the active ones)."""
    from models.zoo import ModelZoo

    class PinnedZoo(ModelZoo):
        def __init__(self):  # noqa: D107 - shares the zoo's state
            self.__dict__.update(zoo.__dict__)

        def model_dir(self, n: str) -> Path:
            return self.cache / "models" / n / version if n == name else super().model_dir(n)
    return PinnedZoo()


def _has(zoo, name: str, backend: str, precision: str) -> bool:
    try:
        zoo.artifact(name, backend, precision)
        return True
    except (LookupError, KeyError):
        return False


def fallback_chain(zoo, ref, session, order, outputs=None) -> list[tuple[str, object]]:
    """(label, factory) of the fallbacks of a model in `order` that have an artefact here; factories open the
    session only when called (the first time the breaker needs one)."""
    from edge.backends.auto import open_model
    from edge.backends.registry import available_backends

    info, name = session.info, ref.name
    options = ref.backend_options()
    mb = int(getattr(session, "max_batch", 1))
    batch = {"max_batch": mb} if mb > 1 else {}  # ask the fallback for the primary's batching

    def opener(z, backend: str, precision: str):
        r = ref.model_copy(update={"backend": backend, "precision": precision})
        return lambda: open_model(z, r, options=options, outputs=outputs, **batch)

    chain: list[tuple[str, object]] = []
    for kind in order:
        if kind == "previous_version":
            prev, now = previous_version(zoo, name), zoo.model_dir(name).name
            if prev and prev != now:
                pz = _pinned_zoo(zoo, name, prev)
                if _has(pz, name, info.backend, info.precision):
                    chain.append((f"previous_version {prev} {info.backend}/{info.precision}",
                                  opener(pz, info.backend, info.precision)))
        elif kind == "fp32":
            if info.precision != "fp32" and _has(zoo, name, info.backend, "fp32"):  # int8*, bf16
                chain.append((f"fp32 {info.backend}/fp32", opener(zoo, info.backend, "fp32")))
        elif kind == "other_backend":
            for b, (ok, _) in available_backends().items():
                if not ok or b == info.backend:
                    continue
                p = "fp32" if _has(zoo, name, b, "fp32") else None
                if p is None:
                    try:
                        p = zoo.default_precision(name, b)
                    except KeyError:
                        continue
                    if not _has(zoo, name, b, p):
                        continue
                chain.append((f"other_backend {b}/{p}", opener(zoo, b, p)))
                break
    return chain
