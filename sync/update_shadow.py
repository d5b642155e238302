"""Shadow evaluation of a model update (docs/MODEL_UPDATES.md#shadow-evaluation).

An update that passed its self-test is not activated at once: its artefact (the one for the backend and precision
the device runs the model on) is loaded beside the active model, and a `fraction` of the active model's live calls
are copied to it — the same input tensors, on the update worker's thread, after the live call returned, so the
output the device uses never changes. Over `frames` compared samples it measures

* agreement with the active model, by a comparer the runtime gives per model (`ShadowTarget.compare`): landmark
  drift (mean landmark distance, as a fraction of the model's input side) and pose-presence agreement for a
  landmark model; detection recall (and precision) against the active model's detections for a detector;
* latency: the candidate's median against the active model's, side by side: a second instance of the active
  model's artefact runs on the same samples on the same thread, alternating with the candidate, so both see the
  same load (`max_latency_ratio`); the live calls' own latency is reported beside it;
* error rate: runs that raised or returned non-finite numbers.

The verdict goes into the job (`job.shadow`, so into the retained update status and the events); a failed or
inconclusive evaluation stops the update before activation. This module knows no stage: the runtime maps model
names to the live session and its comparer (`ShadowHost`, edge/app/shadow.py).
"""
from __future__ import annotations

import logging
import queue
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from edge.core.config_base import StrictModel

log = logging.getLogger(__name__)

QUEUE_MAX = 2  # sampled calls waiting for the candidate; more are dropped (counted), the live path never waits


class ShadowConfig(StrictModel):
    """`[shadow]`: shadow evaluation of model updates (needs a running pipeline that uses the model)."""

    enabled: bool = Field(True, description="run updates in shadow before activating them")
    fraction: float = Field(0.5, gt=0, le=1, description="share of the active model's live calls also run on "
                                                          "the update")
    frames: int = Field(50, ge=1, le=1_000_000, description="compared samples needed for a verdict")
    timeout_s: float = Field(900.0, gt=0, le=7 * 86400, description="without enough samples by then the "
                                                                    "evaluation is inconclusive: the update fails")
    max_landmark_drift: float = Field(0.02, gt=0, le=1, description="mean landmark distance to the active "
                                                                    "model's, as a fraction of the input side")
    min_presence_agreement: float = Field(0.9, ge=0, le=1, description="samples where both agree a person is "
                                                                       "there (or not)")
    min_recall: float = Field(0.9, ge=0, le=1, description="share of the active model's detections the update "
                                                           "finds (IoU >= 0.5), and of its detections the active "
                                                           "model confirms")
    max_latency_ratio: float = Field(1.5, gt=0, description="update median latency / active median latency")
    max_error_rate: float = Field(0.0, ge=0, le=1, description="runs that raised or gave non-finite outputs")


@dataclass
class ShadowTarget:
    """A model the runtime runs: its live session (whose `run` is tapped), how it runs it, and
    `compare(active_outputs, candidate_outputs) -> metrics` for one sample (see ShadowStats.add)."""

    session: Any
    backend: str
    precision: str
    threads: int
    compare: Callable[[dict, dict], dict]
    outputs: list[str] | None = None
    path: str | None = None  # the active artefact: a twin of it is timed beside the candidate


ShadowHost = Callable[[str], "ShadowTarget | None"]  # model name -> its live target, None if not run here


@dataclass
class ShadowStats:
    """What the samples showed. A comparer returns, for one call, any of: `drift` (landmark drift of the samples
    with a person: a float or a list), `flag_agree` (bool or list), `active` / `candidate` (detections of each
    answer), `matched_active` / `matched_candidate` (of those, matched by the other answer)."""

    compared: int = 0
    errors: int = 0
    dropped: int = 0
    last_error: str | None = None
    drift: list[float] = field(default_factory=list)
    flags: list[bool] = field(default_factory=list)
    dets: dict[str, int] = field(default_factory=lambda: {"active": 0, "candidate": 0, "matched_active": 0,
                                                          "matched_candidate": 0})
    active_ms: list[float] = field(default_factory=list)  # the active model's twin, beside the candidate
    candidate_ms: list[float] = field(default_factory=list)
    live_ms: list[float] = field(default_factory=list)  # the live calls (other thread, other load)

    def add(self, m: dict) -> None:
        self.compared += 1
        self.drift += [float(x) for x in _many(m.get("drift"))]
        self.flags += [bool(x) for x in _many(m.get("flag_agree"))]
        for k in self.dets:
            self.dets[k] += int(m.get(k, 0))


def _many(v) -> list:
    """A comparer's value for one call: None, one value, or one per sample of a batch."""
    return [] if v is None else list(v) if isinstance(v, (list, tuple)) else [v]


class Sampler:
    """Takes exactly `fraction` of the calls, spread evenly (deterministic: every 1/fraction-th call)."""

    def __init__(self, fraction: float):
        self.fraction, self._acc = fraction, 0.0

    def take(self) -> bool:
        self._acc += self.fraction
        if self._acc >= 1.0 - 1e-9:
            self._acc -= 1.0
            return True
        return False


class Tap:
    """Wraps a live session's `run` (on the instance, like edge.core.monitoring.instrument_session): a sampled call
    puts a copy of its inputs and outputs, and its latency, into a bounded queue after returning. The caller's
    result is never touched and never delayed by the candidate; a full queue drops the sample."""

    def __init__(self, session, fraction: float, model: str):
        from edge.core.metrics import SHADOW_SAMPLES

        self.session, self.sampler = session, Sampler(fraction)
        self.queue: queue.Queue = queue.Queue(QUEUE_MAX)
        self.dropped, self.live = 0, True
        self._had_own = "run" in vars(session)
        self._orig = session.run
        self._dropped_metric = SHADOW_SAMPLES.labels(model, "dropped")
        orig = self._orig

        def run(feeds):
            t0 = time.perf_counter()
            out = orig(feeds)
            if self.live:
                ms = (time.perf_counter() - t0) * 1e3
                try:
                    if self.sampler.take():
                        self.queue.put_nowait(({k: np.array(v, copy=True) for k, v in feeds.items()},
                                               {k: np.array(v, copy=True) for k, v in out.items()}, ms))
                except queue.Full:
                    self.dropped += 1
                    self._dropped_metric.inc()
                except Exception:  # noqa: BLE001 - the shadow must never break the live call
                    log.exception("shadow tap")
            return out
        self._run = run
        session.run = run

    def remove(self) -> None:
        self.live = False
        if getattr(self.session, "run", None) is self._run:  # nobody wrapped it since
            if self._had_own:
                self.session.run = self._orig
            else:
                del self.session.run


def pick_artifact(payload: dict, backend: str, precision: str, usable: set[str]) -> dict | None:
    """The update's artefact for the backend/precision the device runs the model on; else the same backend at
    another precision; else None (shadowing another runtime would compare runtimes, not models)."""
    arts = [a for a in payload.get("artifacts", []) if a.get("backend") in usable and not a.get("report_only")]
    for a in arts:
        if a["backend"] == backend and a["precision"] == precision:
            return a
    return next((a for a in arts if a["backend"] == backend), None)


def evaluate(name: str, files: Path, payload: dict, target: ShadowTarget | None, cfg: ShadowConfig, *,
             cancelled: Callable[[], str | None], progress: Callable[[int, int], None] | None = None,
             clock: Callable[[], float] = time.monotonic) -> dict:
    """Run the staged update in shadow until `cfg.frames` samples are compared (or timeout / cancel) and judge it.
    Returns the report (`passed`, `reasons`, figures); `cancelled()` returning a reason raises ShadowCanceled."""
    from edge.backends.registry import available_backends, load_session
    from edge.core.metrics import SHADOW_SAMPLES

    if target is None:
        return {"passed": True, "skipped": f"{name} is not run by this device's pipelines: nothing to compare"}
    usable = {b for b, (ok, _) in available_backends().items() if ok}
    art = pick_artifact(payload, target.backend, target.precision, usable)
    base = {"backend": target.backend, "precision": target.precision, "fraction": cfg.fraction,
            "target": cfg.frames}
    if art is None:
        return {**base, "passed": False, "reasons": [f"the update has no {target.backend} artefact (the device runs "
                                                     f"{name} on {target.backend}/{target.precision})"]}
    base.update(artifact=art["file"], precision=art["precision"])
    try:
        cand = load_session(art["backend"], files / art["file"], threads=target.threads, precision=art["precision"],
                            outputs=target.outputs)
    except Exception as e:  # noqa: BLE001 - BackendError, a runtime's own errors
        return {**base, "passed": False, "reasons": [f"does not load: {e}"]}
    twin = None
    if target.path:
        try:
            twin = load_session(target.backend, Path(target.path), threads=target.threads, precision=target.precision,
                                outputs=target.outputs)
        except Exception as e:  # noqa: BLE001 - then latency is compared with the live calls
            log.warning("shadow %s: the active model does not load a second time (%s): latency compared with the "
                        "live calls", name, e)
    base["latency_reference"] = "twin" if twin is not None else "live"
    stats, t0 = ShadowStats(), clock()
    ok_metric, err_metric = SHADOW_SAMPLES.labels(name, "compared"), SHADOW_SAMPLES.labels(name, "error")
    tap = Tap(target.session, cfg.fraction, name)
    log.info("shadow %s@%s: %s beside the active model on %g of its calls, %d samples", name,
             payload.get("version"), art["file"], cfg.fraction, cfg.frames)
    try:
        last_tick = clock()
        while stats.compared + stats.errors < cfg.frames:
            why = cancelled()
            if why:
                raise ShadowCanceled(why)
            if clock() - t0 > cfg.timeout_s:
                break
            try:
                feeds, active_out, active_ms = tap.queue.get(timeout=0.2)
            except queue.Empty:
                continue
            (ok_metric if _one(cand, twin, target, feeds, active_out, active_ms, stats) else err_metric).inc()
            if progress is not None and clock() - last_tick >= 1.0:
                last_tick = clock()
                progress(stats.compared + stats.errors, cfg.frames)
    finally:
        tap.remove()
        stats.dropped = tap.dropped
        for sess in (cand, twin):
            try:
                if sess is not None:
                    sess.close()
            except Exception:  # noqa: BLE001
                pass
    report = judge(stats, cfg)
    report.update(base, seconds=round(clock() - t0, 2))
    log.log(logging.INFO if report["passed"] else logging.WARNING, "shadow %s@%s in %.1f s: %s%s", name,
            payload.get("version"), report["seconds"], summary(report),
            "" if report["passed"] else " (" + "; ".join(report["reasons"]) + ")")
    return report


class ShadowCanceled(Exception):
    """The job was canceled (fleet rollback, newer offer, agent stopping) while in shadow."""


def _timed(session, feeds: dict) -> tuple[dict, float]:
    t = time.perf_counter()
    out = _run(session, feeds)
    return out, (time.perf_counter() - t) * 1e3


def _twin_ms(twin, feeds: dict) -> float | None:
    """Latency of the active model's twin on the sample (None: no twin, or it failed: not the update's fault)."""
    if twin is None:
        return None
    try:
        return _timed(twin, feeds)[1]
    except Exception:  # noqa: BLE001
        return None


def _one(cand, twin, target: ShadowTarget, feeds: dict, active_out: dict, live_ms: float, stats: ShadowStats) -> bool:
    """Run the candidate (and the active model's twin, in alternating order) on one sample and compare with the
    live answer; False when the candidate raised or gave non-finite outputs."""
    twin_first = stats.compared % 2 == 1
    ref_ms = _twin_ms(twin, feeds) if twin_first else None
    try:
        out, ms = _timed(cand, feeds)
        if not twin_first:
            ref_ms = _twin_ms(twin, feeds)
        bad = [k for k, v in out.items() if not np.all(np.isfinite(v))]
        if bad:
            raise ValueError(f"non-finite values in {bad}")
        metrics = target.compare(active_out, out)
    except Exception as e:  # noqa: BLE001 - a failing candidate is what the error rate measures
        stats.errors += 1
        stats.last_error = f"{type(e).__name__}: {e}"[:300]
        return False
    stats.live_ms.append(live_ms)
    stats.active_ms.append(live_ms if ref_ms is None else ref_ms)
    stats.candidate_ms.append(ms)
    stats.add(metrics)
    return True


def _run(session, feeds: dict) -> dict:
    """session.run, one sample at a time when the live call was a batch bigger than the candidate takes."""
    n = int(next(iter(feeds.values())).shape[0]) if feeds else 1
    if n <= max(1, int(getattr(session, "max_batch", 1))):
        return session.run(feeds)
    parts = [session.run({k: v[i:i + 1] for k, v in feeds.items()}) for i in range(n)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _pct(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 4) if values else None


def judge(stats: ShadowStats, cfg: ShadowConfig) -> dict:
    """The report of a shadow run and its verdict: every measured figure against its threshold; fewer compared
    samples than `cfg.frames` is inconclusive (a failure: no promotion without evidence)."""
    reasons: list[str] = []
    runs = stats.compared + stats.errors
    rep: dict[str, Any] = {"samples": stats.compared, "errors": stats.errors, "dropped": stats.dropped,
                           "error_rate": round(stats.errors / runs, 4) if runs else None}
    if runs < cfg.frames:
        reasons.append(f"inconclusive: {runs} of {cfg.frames} samples within {cfg.timeout_s:g} s (no live traffic "
                       "for this model?)")
    if runs and stats.errors / runs > cfg.max_error_rate:
        reasons.append(f"error rate {stats.errors / runs:.3f} > {cfg.max_error_rate:g} ({stats.last_error})")
    if stats.candidate_ms:
        a50, c50 = statistics.median(stats.active_ms), statistics.median(stats.candidate_ms)
        ratio = c50 / a50 if a50 > 0 else None  # None: too fast to time (never JSON's non-standard Infinity)
        rep["latency_ms"] = {"active_p50": round(a50, 3), "active_p95": _pct(stats.active_ms, 95),
                             "candidate_p50": round(c50, 3), "candidate_p95": _pct(stats.candidate_ms, 95),
                             "ratio": None if ratio is None else round(ratio, 3)}
        if stats.live_ms:
            rep["latency_ms"]["live_p50"] = round(statistics.median(stats.live_ms), 3)
        if ratio is not None and ratio > cfg.max_latency_ratio:
            reasons.append(f"latency p50 {c50:.1f} ms is {ratio:.2f}x the active model's {a50:.1f} ms "
                           f"(> {cfg.max_latency_ratio:g}x)")
    if stats.drift:
        mean = float(np.mean(stats.drift))
        rep["landmark_drift"] = {"mean": round(mean, 5), "p95": _pct(stats.drift, 95),
                                 "max": round(max(stats.drift), 5), "samples": len(stats.drift)}
        if mean > cfg.max_landmark_drift:
            reasons.append(f"landmark drift {mean:.4f} > {cfg.max_landmark_drift:g} of the input side")
    if stats.flags:
        agree = sum(stats.flags) / len(stats.flags)
        rep["presence_agreement"] = round(agree, 4)
        if agree < cfg.min_presence_agreement:
            reasons.append(f"presence agreement {agree:.3f} < {cfg.min_presence_agreement:g}")
    d = stats.dets
    if d["active"] or d["candidate"]:
        rep["detections"] = dict(d)
        recall = d["matched_active"] / d["active"] if d["active"] else None
        precision = d["matched_candidate"] / d["candidate"] if d["candidate"] else None
        rep["recall"] = None if recall is None else round(recall, 4)
        rep["precision"] = None if precision is None else round(precision, 4)
        if recall is not None and recall < cfg.min_recall:
            reasons.append(f"detection recall {recall:.3f} < {cfg.min_recall:g} ({d['matched_active']} of the active "
                           f"model's {d['active']} detections found)")
        if precision is not None and precision < cfg.min_recall:
            reasons.append(f"detection precision {precision:.3f} < {cfg.min_recall:g} "
                           f"({d['candidate'] - d['matched_candidate']} detections the active model does not make)")
    rep["passed"] = not reasons
    rep["reasons"] = reasons
    return rep


def summary(shadow: dict | None) -> str:
    """One line for `edge fleet status`: verdict, samples and the figures that were measured (the reasons of a
    failure are in the job's reason). The report comes from a device's retained status, which that device writes
    itself: fields that are not numbers where numbers belong are left out, never raised."""
    if not isinstance(shadow, dict) or not shadow:
        return ""
    if shadow.get("skipped"):
        return "shadow skipped"

    def num(obj, key: str) -> float | None:
        v = obj.get(key) if isinstance(obj, dict) else None
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    def count(key: str, default: str) -> str:
        v = shadow.get(key)
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else default
    parts = [f"shadow {'passed' if shadow.get('passed') is True else 'FAILED'} {count('samples', '0')}/"
             f"{count('target', '?')}"]
    drift = num(shadow.get("landmark_drift"), "mean")
    if drift is not None:
        parts.append(f"drift {drift:.4f}")
    if num(shadow, "recall") is not None:
        parts.append(f"recall {num(shadow, 'recall'):.2f}")
    lat = shadow.get("latency_ms")
    if isinstance(lat, dict) and lat:
        parts.append(f"p50 {num(lat, 'candidate_p50') or 0:.1f}/{num(lat, 'active_p50') or 0:.1f} ms")
    if num(shadow, "error_rate"):
        parts.append(f"errors {num(shadow, 'error_rate'):.1%}")
    return " ".join(parts)
