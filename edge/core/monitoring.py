"""Three-level monitoring: model (latency, confidence, input statistics and their drift from a baseline), system
(CPU, memory, temperature) and business (shoppers, try-on, zones, queues, alerts) on the Prometheus metrics of
edge.core.metrics; `summarize()` condenses a scrape into the dict that telemetry sends and `edge top` shows.

Foundation code: stages and the application call in with duck-typed objects (sessions, frames, events), never the
other way round. Metric names and labels: docs/MONITORING.md.
"""
from __future__ import annotations

import glob
import json
import logging
import math
import os
import shutil
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from edge.core import metrics as M
from edge.core.files import write_atomic

log = logging.getLogger(__name__)

STATS = ("brightness", "blur", "people")
DRIFT_BINS = 5  # quantile bins of the baseline per statistic (few bins: a stable PSI from a few hundred samples)
PSI_EPS = 1e-4


# ---------------------------------------------------------------------------------------------- model level
def instrument_session(session, model: str) -> None:
    """Time every `session.run` into edge_model_latency_ms (and count raised errors); idempotent. The backend and
    precision labels are those of the session that answered (a guarded session may have fallen back)."""
    if getattr(session, "_edge_monitored", False):
        return
    run = session.run
    errors = M.MODEL_ERRORS.labels(model)
    children: dict[tuple[str, str], object] = {}

    def timed_run(feeds):
        t0 = time.perf_counter()
        try:
            out = run(feeds)
        except Exception:
            errors.inc()
            raise
        ms = (time.perf_counter() - t0) * 1e3
        info = session.info
        key = (info.backend, info.precision)
        hist = children.get(key)
        if hist is None:
            hist = children[key] = M.MODEL_LATENCY.labels(model, *key)
        hist.observe(ms)
        return out

    session.run = timed_run
    session._edge_monitored = True


def observe_pose(people, model: str) -> None:
    """Confidence (presence score) and mean landmark presence of each person of a pose result."""
    conf, pres = M.MODEL_CONFIDENCE.labels(model), M.MODEL_PRESENCE.labels(model)
    for p in people:
        conf.observe(float(p.score))
        lm = p.landmarks
        if lm is not None and lm.shape[-1] >= 5:
            pres.observe(float(np.mean(lm[:, 4])))


def observe_scores(scores, model: str) -> None:
    """Detection scores of one frame of a detector."""
    conf = M.MODEL_CONFIDENCE.labels(model)
    for s in np.asarray(scores, dtype=np.float64).ravel():
        conf.observe(float(s))


def image_stats(image_bgr: np.ndarray) -> tuple[float, float]:
    """(brightness 0-255, blur = variance of the Laplacian) on a grey copy at most 320 px wide."""
    import cv2

    h, w = image_bgr.shape[:2]
    if w > 320:
        image_bgr = cv2.resize(image_bgr, (320, max(1, round(h * 320 / w))), interpolation=cv2.INTER_AREA)
    grey = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY) if image_bgr.ndim == 3 else image_bgr
    return float(grey.mean()), float(cv2.Laplacian(grey, cv2.CV_32F).var())


class BaselineStore:
    """Input-statistics baselines of one device (per stream: mean and std of each stat), one JSON file on disk.

    Taken once, on the first run after install, from the first `samples` sampled frames of each stream; later runs
    load it. Delete the file to take a new one (e.g. after moving a camera)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self.streams: dict[str, dict] = {}
        if self.path.is_file():
            try:
                doc = json.loads(self.path.read_text())
                self.streams = {k: v for k, v in doc.get("streams", {}).items()
                                if all({"mean", "edges", "expected"} <= set(v["stats"].get(s, {})) for s in STATS)}
            except (OSError, ValueError, AttributeError, KeyError, TypeError) as e:
                log.warning("input baseline %s unreadable (%s); a new one will be taken", self.path, e)

    def get(self, stream: str) -> dict | None:
        with self._lock:
            return self.streams.get(stream)

    def put(self, stream: str, baseline: dict) -> None:
        with self._lock:
            self.streams[stream] = baseline
            doc = {"v": 1, "streams": self.streams}
            write_atomic(self.path, json.dumps(doc, indent=1).encode())
        log.info("input baseline of stream %s taken (%d samples), means %s", stream, baseline["samples"],
                 {k: round(v["mean"], 2) for k, v in baseline["stats"].items()})


class InputMonitor:
    """Input statistics of one camera stream: every `every`-th frame, brightness, blur and people present feed the
    histograms, a rolling window (`window` samples) and, once a baseline exists, the drift gauges (PSI of the
    window against the baseline's bins)."""

    def __init__(self, stream: str, store: BaselineStore, *, every: int = 5, window: int = 300,
                 baseline_samples: int = 300):
        self.stream, self.store, self.every = stream, store, max(1, every)
        self.baseline_samples = baseline_samples
        self._n = 0
        self._last_seq: int | None = None
        self._window = {s: deque(maxlen=window) for s in STATS}
        self._pending = {s: [] for s in STATS}  # samples towards the baseline (first run only)
        self.baseline = store.get(stream)
        self._m = {"brightness": M.INPUT_BRIGHTNESS.labels(stream), "blur": M.INPUT_BLUR.labels(stream),
                   "sampled": M.INPUT_SAMPLED.labels(stream), "people": M.INPUT_WITH_PEOPLE.labels(stream)}
        if self.baseline is not None:
            self._publish_baseline()

    def observe(self, image: np.ndarray, seq: int, has_people: bool) -> bool:
        """Feed one frame (seq: its frame number, so a frame seen twice counts once); True if it was sampled."""
        if seq == self._last_seq:
            return False
        self._last_seq = seq
        self._n += 1
        if (self._n - 1) % self.every:
            return False
        brightness, blur = image_stats(image)
        sample = {"brightness": brightness, "blur": blur, "people": 1.0 if has_people else 0.0}
        self._m["brightness"].observe(brightness)
        self._m["blur"].observe(blur)
        self._m["sampled"].inc()
        if has_people:
            self._m["people"].inc()
        for s, v in sample.items():
            self._window[s].append(v)
            M.INPUT_STAT.labels(self.stream, s).set(float(np.mean(self._window[s])))
        if self.baseline is None:
            for s, v in sample.items():
                self._pending[s].append(v)
            if len(self._pending["brightness"]) >= self.baseline_samples:
                self._take_baseline()
        else:
            self._publish_drift()
        return True

    def _take_baseline(self) -> None:
        stats = {}
        for s, v in self._pending.items():
            edges = bin_edges(s, v)
            stats[s] = {"mean": float(np.mean(v)), "std": float(np.std(v)), "edges": edges,
                        "expected": proportions(v, edges)}
        self.baseline = {"taken_at": time.time(), "samples": len(self._pending["brightness"]), "every": self.every,
                         "stats": stats}
        self._pending = {s: [] for s in STATS}
        try:
            self.store.put(self.stream, self.baseline)
        except OSError as e:  # kept in memory for this run; the next run tries again
            log.warning("cannot persist the input baseline %s: %s", self.store.path, e)
        self._publish_baseline()
        self._publish_drift()

    def _publish_baseline(self) -> None:
        for s in STATS:
            M.INPUT_BASELINE.labels(self.stream, s).set(self.baseline["stats"][s]["mean"])

    def _publish_drift(self) -> None:
        for s in STATS:
            if self._window[s]:
                base = self.baseline["stats"][s]
                M.INPUT_DRIFT.labels(self.stream, s).set(psi(list(self._window[s]), base["edges"], base["expected"]))


def bin_edges(stat: str, values) -> list[float]:
    """Inner bin edges of a statistic's baseline: quantiles (duplicates merged); "people" is yes/no."""
    if stat == "people":
        return [0.5]
    qs = np.quantile(np.asarray(values, dtype=np.float64), np.linspace(0, 1, DRIFT_BINS + 1)[1:-1])
    return sorted({round(float(q), 6) for q in qs})


def proportions(values, edges: list[float]) -> list[float]:
    """Share of values in each bin of `edges` (len(edges) + 1 bins; a value equal to an edge goes right)."""
    idx = np.searchsorted(np.asarray(edges, dtype=np.float64), np.asarray(values, dtype=np.float64), side="right")
    return (np.bincount(idx, minlength=len(edges) + 1) / max(1, len(values))).tolist()


def psi(values, edges: list[float], expected: list[float]) -> float:
    """Population stability index of `values` against the baseline's bins: sum (a - e) * ln(a / e). Below 0.1:
    stable; 0.1-0.25: moderate shift; above 0.25: the input has changed (direction: edge_input_stat vs
    edge_input_baseline)."""
    a = np.clip(np.asarray(proportions(values, edges)), PSI_EPS, None)
    e = np.clip(np.asarray(expected, dtype=np.float64), PSI_EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


# ---------------------------------------------------------------------------------------------- business level
class _AlertBook:
    """Unresolved alerts by id (severity, state), from the alert lifecycle events."""

    def __init__(self):
        self.open: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()
        self._seen: set[tuple[str, str]] = set()

    def update(self, kind: str, d: dict) -> None:
        aid, sev = str(d.get("alert_id")), str(d.get("severity") or "unknown")
        with self._lock:
            if kind == "alert_opened":
                M.ALERTS_OPENED.labels(str(d.get("rule")), sev).inc()
                self.open[aid] = (sev, "open")
            elif kind == "alert_escalated" and aid in self.open:
                self.open[aid] = (sev, self.open[aid][1])
            elif kind == "alert_acked":
                self.open[aid] = (sev, "acked")
                took = _ack_delay(d)
                if took is not None:
                    M.ALERT_ACK_S.labels(sev).observe(took)
            elif kind == "alert_resolved":
                self.open.pop(aid, None)
            counts: dict[tuple[str, str], int] = {}
            for key in self.open.values():
                counts[key] = counts.get(key, 0) + 1
            for key in self._seen | set(counts):
                M.ALERTS_OPEN.labels(*key).set(counts.get(key, 0))
            self._seen |= set(counts)


def _ack_delay(d: dict) -> float | None:
    """Opening to acknowledgement: on the engine clock when both are there, else wall times."""
    for a, b in (("opened_t", "acked_t"), ("opened_at", "acked_at")):
        opened, acked = _number(d, a), _number(d, b)
        if opened is not None and acked is not None:
            return max(0.0, acked - opened)
    return None


_ALERTS = _AlertBook()


def _number(d: dict, key: str) -> float | None:
    """d[key] as a finite float, else None: a NaN or infinite value would poison a histogram's sum or a gauge for
    the rest of the run."""
    v = d.get(key)
    if isinstance(v, (int, float)) and math.isfinite(v):
        return float(v)
    return None


def observe_event(event) -> None:
    """Count one emitted event (edge_events_total) and update the business metrics it carries (values that are
    not finite numbers are skipped)."""
    M.EVENTS.labels(event.kind).inc()
    d = event.data if isinstance(event.data, dict) else {}
    kind = event.kind
    try:
        if kind == "person_entered":
            M.SHOPPERS.labels(str(d.get("source") or "default")).inc()
        elif kind == "tryon_session":
            M.TRYON_SESSIONS.inc()
            M.TRYON_GARMENTS.inc(max(1, len(d.get("colours") or [])))
            if (duration := _number(d, "duration_s")) is not None:
                M.TRYON_SESSION_S.observe(duration)
        elif kind == "zone_left":
            zone = str(d.get("zone"))
            M.ZONE_VISITS.labels(zone).inc()
            if (dwell := _number(d, "dwell_s")) is not None:
                M.ZONE_DWELL.labels(zone).observe(dwell)
        elif kind == "queue_changed":
            q = str(d.get("queue"))
            if (length := _number(d, "length")) is not None:
                M.SHOPPER_QUEUE_LENGTH.labels(q).set(length)
            if (wait := _number(d, "wait_estimate_s")) is not None:
                M.SHOPPER_QUEUE_WAIT.labels(q).set(wait)
        elif kind.startswith("alert_"):
            _ALERTS.update(kind, d)
    except (TypeError, ValueError):  # a malformed event must never break the emitting stage
        log.debug("business metrics skipped %s", kind, exc_info=True)


# ---------------------------------------------------------------------------------------------- system level
class SystemCollector:
    """CPU (this process, % of one core; the machine, % of all cores), load, free disk and temperatures (where
    /sys/class/thermal exposes them), read at scrape time. RSS is prometheus_client's
    process_resident_memory_bytes."""

    def __init__(self, disk_path: str | Path = ".", thermal_root: str | Path = "/sys/class/thermal"):
        self.disk_path, self.thermal_root = str(disk_path), Path(thermal_root)
        self._lock = threading.Lock()
        self._prev = (time.monotonic(), _proc_cpu_s(), _sys_jiffies(), None)  # (t, cpu s, jiffies, last result)

    def cpu_percent(self) -> tuple[float, float | None]:
        """(process % of one core, machine % busy or None) over the time since the previous reading (readings
        closer than 0.5 s apart repeat the last result, so two scrapers do not shorten each other's window)."""
        with self._lock:
            t0, c0, j0, last = self._prev
            now, cpu, j1 = time.monotonic(), _proc_cpu_s(), _sys_jiffies()
            if last is not None and now - t0 < 0.5:
                return last
            # a first reading soon after start divides clock-tick-granular CPU time by a short window: bound it
            pct = min(100.0 * (cpu - c0) / max(now - t0, 1e-3), 100.0 * (os.cpu_count() or 1))
            busy = None
            if j0 is not None and j1 is not None and j1[0] > j0[0]:
                busy = 100.0 * (1.0 - (j1[1] - j0[1]) / (j1[0] - j0[0]))
            last = (pct, busy)
            self._prev = (now, cpu, j1, last) if now - t0 >= 0.5 else (t0, c0, j0, last)
            return last

    def temperatures(self) -> dict[str, float]:
        out = {}
        for zone in sorted(glob.glob(str(self.thermal_root / "thermal_zone*"))):
            try:
                milli = float(Path(zone, "temp").read_text().strip())
                kind = Path(zone, "type").read_text().strip() or Path(zone).name
            except (OSError, ValueError):
                continue
            name = kind if kind not in out else f"{kind}-{Path(zone).name}"
            out[name] = milli / 1000.0
        return out

    def collect(self):
        pct, spct = self.cpu_percent()
        yield GaugeMetricFamily("edge_process_cpu_percent", "CPU of this process, % of one core", value=pct)
        if spct is not None:
            yield GaugeMetricFamily("edge_system_cpu_percent", "CPU busy of the whole machine, % of all cores",
                                    value=spct)
        try:
            yield GaugeMetricFamily("edge_load1", "1-minute load average", value=os.getloadavg()[0])
        except OSError:
            pass
        try:
            free = shutil.disk_usage(self.disk_path).free
            yield GaugeMetricFamily("edge_disk_free_bytes", "Free disk where the outbox lives", value=free)
        except OSError:
            pass
        temp = GaugeMetricFamily("edge_temperature_celsius", "Thermal zone temperature (where the device exposes "
                                 "/sys/class/thermal)", labels=["zone"])
        for zone, c in self.temperatures().items():
            temp.add_metric([zone], c)
        yield temp

    def register(self) -> SystemCollector:
        REGISTRY.register(self)
        return self

    def unregister(self) -> None:
        REGISTRY.unregister(self)


def _proc_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


def _sys_jiffies() -> tuple[int, int] | None:
    """(total, idle + iowait) jiffies of all CPUs from /proc/stat; None where it does not exist."""
    try:
        with open("/proc/stat") as f:
            parts = f.readline().split()
    except OSError:
        return None
    if not parts or parts[0] != "cpu":
        return None
    v = [int(x) for x in parts[1:]]
    return sum(v[:8]), v[3] + (v[4] if len(v) > 4 else 0)


def stream_frames_family(counts: dict[str, tuple[int, int, int]]):
    """edge_stream_frames_{in,processed,dropped}_total families from {stream: (in, processed, dropped)}."""
    fams = [CounterMetricFamily(f"edge_stream_frames_{k}", h, labels=["stream"]) for k, h in (
        ("in", "Frames a camera stream delivered (processed + dropped)"),
        ("processed", "Frames a camera stream processed"),
        ("dropped", "Frames dropped by latest-frame back-pressure (a slow stage skips stale frames)"))]
    for stream, values in counts.items():
        for fam, v in zip(fams, values):
            fam.add_metric([stream], v)
    return fams


# ---------------------------------------------------------------------------------------------- summary
def registry_samples(registry=REGISTRY) -> dict[str, list[tuple[dict, float]]]:
    """sample name -> [(labels, value)] of a live registry."""
    return samples_of(registry.collect())


def parse_samples(text: str) -> dict[str, list[tuple[dict, float]]]:
    """sample name -> [(labels, value)] of a /metrics scrape (Prometheus text format)."""
    from prometheus_client.parser import text_string_to_metric_families

    return samples_of(text_string_to_metric_families(text))


def samples_of(families) -> dict[str, list[tuple[dict, float]]]:
    out: dict[str, list[tuple[dict, float]]] = {}
    for fam in families:
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
    return out


def _by(samples, name: str, label: str) -> dict[str, float]:
    """{label value: summed value} of one sample name."""
    out: dict[str, float] = {}
    for labels, v in samples.get(name, []):
        k = labels.get(label, "")
        out[k] = out.get(k, 0.0) + v
    return out


def _one(samples, name: str, default=None):
    vals = samples.get(name)
    return vals[0][1] if vals else default


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """histogram_quantile over cumulative (upper bound, count) buckets, linear inside a bucket."""
    buckets = sorted(buckets)
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank, prev_le, prev_n = q * buckets[-1][1], 0.0, 0.0
    for le, n in buckets:
        if n >= rank:
            if math.isinf(le):
                return prev_le
            return prev_le + (le - prev_le) * ((rank - prev_n) / (n - prev_n) if n > prev_n else 1.0)
        prev_le, prev_n = le, n
    return prev_le


def _hist_raw(samples, name: str, keys: tuple[str, ...]) -> dict[tuple, dict]:
    """Per label tuple (of `keys`; other labels summed): cumulative buckets {le: n}, count and sum (a bucket
    without a numeric `le` is skipped)."""
    raw: dict[tuple, dict] = {}
    for suffix in ("_bucket", "_count", "_sum"):
        for labels, v in samples.get(name + suffix, []):
            a = raw.setdefault(tuple(labels.get(k, "") for k in keys), {"b": {}, "count": 0.0, "sum": 0.0})
            if suffix == "_bucket":
                try:
                    le = float(labels["le"])
                except (KeyError, ValueError):
                    continue
                a["b"][le] = a["b"].get(le, 0.0) + v
            else:
                a[suffix[1:]] += v
    return raw


def _hist(samples, name: str, keys: tuple[str, ...], prev=None) -> dict[tuple, dict]:
    """Per label tuple: count, mean, p50, p95 of a histogram (minus `prev` when given: the change since then; a
    count lower than in `prev` means the process restarted, and then all of it is new, as in PromQL's rate)."""
    out: dict[tuple, dict] = {}
    base = _hist_raw(prev, name, keys) if prev is not None else {}
    for key, a in _hist_raw(samples, name, keys).items():
        b0 = base.get(key)
        if b0 is not None and a["count"] >= b0["count"]:
            a = {"b": {le: n - b0["b"].get(le, 0.0) for le, n in a["b"].items()},
                 "count": a["count"] - b0["count"], "sum": a["sum"] - b0["sum"]}
        bk = list(a["b"].items())
        out[key] = {"count": _int(a["count"]), "mean": (a["sum"] / a["count"]) if a["count"] > 0 else None,
                    "p50": quantile(0.5, bk), "p95": quantile(0.95, bk)}
    return out


def _r(x, n=1):
    """x rounded; None for None, NaN and infinities (a summary is sent as strict JSON and shown as a number)."""
    return None if x is None or not math.isfinite(x) else round(x, n)


def _int(x, default=None):
    """x as an int; `default` for None, NaN and infinities."""
    return default if x is None or not math.isfinite(x) else int(x)


def summarize(samples: dict, prev: dict | None = None, dt: float | None = None) -> dict:
    """The three levels of one scrape as a small dict (telemetry's `monitor`, `edge top`). With `prev` (an earlier
    scrape, `dt` seconds before) distributions and rates cover only the time in between; else since start."""
    model: dict = {"models": {}, "inputs": {}}
    lat = _hist(samples, "edge_model_latency_ms", ("model", "backend", "precision"), prev)
    conf = _hist(samples, "edge_model_confidence", ("model",), prev)
    pres = _hist(samples, "edge_model_presence", ("model",), prev)
    errs = _by(samples, "edge_model_errors_total", "model")
    for (name, backend, precision), h in lat.items():
        model["models"][name] = {"backend": backend, "precision": precision, "runs": h["count"],
                                 "p50_ms": _r(h["p50"]), "p95_ms": _r(h["p95"]),
                                 "errors": _int(errs.get(name, 0))}
    for (name,), h in conf.items():
        model["models"].setdefault(name, {})["confidence_mean"] = _r(h["mean"], 3)
    for (name,), h in pres.items():
        model["models"].setdefault(name, {})["presence_mean"] = _r(h["mean"], 3)
    for labels, v in samples.get("edge_input_stat", []):
        model["inputs"].setdefault(labels.get("stream", ""), {})[labels.get("stat", "")] = _r(v, 3)
    for labels, v in samples.get("edge_input_drift", []):
        model["inputs"].setdefault(labels.get("stream", ""), {}).setdefault("drift", {})[labels.get("stat", "")] = \
            _r(v, 3)
    for s, v in model["inputs"].items():
        v["baseline"] = "drift" in v

    streams: dict = {}
    for kind in ("in", "processed", "dropped"):
        for s, v in _by(samples, f"edge_stream_frames_{kind}_total", "stream").items():
            streams.setdefault(s, {})[kind] = _int(v)
            if prev is not None and dt and kind == "processed":
                before = _by(prev, "edge_stream_frames_processed_total", "stream").get(s)
                if before is not None:  # fewer than before: the process restarted, all of them are new
                    streams[s]["fps"] = _r(((v - before) if v >= before else v) / dt)
    rss = _one(samples, "process_resident_memory_bytes")
    system = {"cpu_pct": _r(_one(samples, "edge_process_cpu_percent")),
              "machine_cpu_pct": _r(_one(samples, "edge_system_cpu_percent")),
              "rss_mb": None if rss is None else _r(rss / 2**20), "load1": _r(_one(samples, "edge_load1"), 2),
              "temp_c": {lb.get("zone", ""): _r(v) for lb, v in samples.get("edge_temperature_celsius", [])},
              "streams": streams,
              "queues": {k: _int(v) for k, v in _by(samples, "edge_sync_queue_depth", "queue").items()},
              "outbox": {"depth": {k: _int(v) for k, v in _by(samples, "edge_outbox_depth", "stream").items()},
                         "oldest_age_s": _r(_one(samples, "edge_outbox_oldest_age_seconds")),
                         "connected": bool(_one(samples, "edge_mqtt_connected", 0))}}

    events = _by(samples, "edge_events_total", "kind")
    dwell = _hist(samples, "edge_zone_dwell_seconds", ("zone",), prev)
    acks = _hist(samples, "edge_alert_ack_seconds", (), prev).get((), {"count": 0, "p50": None})
    alerts_open: dict[str, int] = {}
    for labels, v in samples.get("edge_alerts_open", []):
        if _int(v, 0):
            state = labels.get("state", "")
            alerts_open[state] = alerts_open.get(state, 0) + int(v)
    business = {
        "people_now": _int(_one(samples, "edge_people", 0), 0),
        "shoppers": _int(sum(_by(samples, "edge_shoppers_total", "source").values()), 0),
        "tryon_sessions": _int(_one(samples, "edge_tryon_sessions_total", 0), 0),
        "garments_tried": _int(_one(samples, "edge_tryon_garments_tried_total", 0), 0),
        "zones": {z: {"visits": h["count"], "dwell_p50_s": _r(h["p50"]), "dwell_mean_s": _r(h["mean"])}
                  for (z,), h in dwell.items()},
        "queues": {q: {"length": _int(v)} for q, v in _by(samples, "edge_shopper_queue_length", "queue").items()},
        "alerts_open": alerts_open,
        "alerts_opened": _int(sum(v for _, v in samples.get("edge_alerts_opened_total", [])), 0),
        "acks": acks["count"],
        "ack_p50_s": _r(acks["p50"]),
        "events": {k: _int(v, 0) for k, v in events.items()},
    }
    for q, v in _by(samples, "edge_shopper_queue_wait_seconds", "queue").items():
        business["queues"].setdefault(q, {})["wait_s"] = _r(v)
    return {"model": model, "system": system, "business": business}
