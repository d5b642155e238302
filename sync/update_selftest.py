"""Self-test of a staged model update: load each artefact on its backend, compare with the shipped golden
outputs (edge.backends.parity, within the tolerance the signed payload carries), and time one sample against the
manifest's latency budget."""
from __future__ import annotations

import logging
import statistics
import time
from dataclasses import replace
from pathlib import Path

from edge.backends import parity
from edge.backends.registry import available_backends, load_session
from models.golden import GoldenError, load_golden
from sync.update_manifest import GOLDEN, UpdateError

log = logging.getLogger(__name__)


def _golden(path: Path) -> tuple[dict, dict]:
    try:
        return load_golden(path)
    except GoldenError as e:
        raise UpdateError(f"self-test: {e}") from None


def _tolerance(payload: dict, precision: str, score_logits: tuple[str, ...] = ()) -> parity.Tolerance:
    """The version's own tolerance (the payload's `tolerance` table from its model manifest, else the generic
    default), with `selftest.tolerance.<precision>` max_err/mean_err overriding it when the publisher set them;
    `score_logits` outputs are compared as probabilities."""
    st = payload.get("selftest", {})
    base = parity.tolerance_for(payload, precision)
    over = st.get("tolerance", {}).get(precision) or {}
    return replace(base, max_err=float(over.get("max_err", base.max_err)),
                   mean_err=float(over.get("mean_err", base.mean_err)), sigmoid=tuple(score_logits))


def self_test(staging: Path, payload: dict, *, backends: list[str] | None = None, threads: int = 1,
              runs: int = 5, score_logits: tuple[str, ...] = ()) -> dict:
    """Returns a report {file: {backend, precision, passed, errors, latency_ms, reason}}.

    score_logits: outputs compared as probabilities, as at build time (the device's manifest of the model:
    edge.backends.parity.score_logits; a payload carries no output table). Artefacts whose backend is not
    installed (or not in `backends`) are skipped. Raises UpdateError when one tested artefact fails or none could
    be tested.
    """
    ins, golden = _golden(staging / payload.get("selftest", {}).get("golden", GOLDEN))
    budget = payload.get("selftest", {}).get("latency_ms")
    usable = {b for b, (ok, _) in available_backends().items() if ok and (backends is None or b in backends)}
    report: dict[str, dict] = {}
    for a in payload["artifacts"]:
        r = report[a["file"]] = {"backend": a["backend"], "precision": a["precision"]}
        if a["backend"] not in usable or a.get("report_only"):
            r["skipped"] = "backend not used on this device" if a["backend"] not in usable else "report only"
            continue
        try:
            sess = load_session(a["backend"], staging / a["file"], threads=threads, precision=a["precision"])
            try:
                ok, errs, why = parity.check(sess, ins, golden, _tolerance(payload, a["precision"], score_logits))
                feed = {k: v[:1] for k, v in ins.items()}
                sess.run(feed)  # warm-up
                times = []
                for _ in range(runs):
                    t = time.perf_counter()
                    sess.run(feed)
                    times.append((time.perf_counter() - t) * 1e3)
            finally:
                sess.close()
        except Exception as e:  # noqa: BLE001 - BackendError, a runtime's own errors
            r.update(passed=False, reason=f"does not load/run: {e}")
            continue
        r.update(passed=ok, errors=errs, latency_ms=round(statistics.median(times), 3))
        if not ok:
            r["reason"] = f"golden outputs differ: {why}"
        elif budget is not None and r["latency_ms"] > float(budget):
            r.update(passed=False, reason=f"latency {r['latency_ms']} ms over the {budget} ms budget")
    tested = {f: r for f, r in report.items() if "passed" in r}
    failed = {f: r["reason"] for f, r in tested.items() if not r["passed"]}
    if failed:
        raise UpdateError("self-test failed: " + "; ".join(f"{f}: {why}" for f, why in failed.items()), report)
    if not tested:
        raise UpdateError(f"self-test: no artefact runs on this device's backends {sorted(usable)}", report)
    log.info("self-test of %s@%s passed: %s", payload["name"], payload["version"],
             {f: r.get("latency_ms") for f, r in tested.items()})
    return report
