"""`edge run` as a systemd service (deploy/systemd/storefront-edge.service, docs/OPERATIONS.md#service).

* The sd_notify protocol, implemented here (no dependency): one datagram per message to `$NOTIFY_SOCKET` (a path,
  or an abstract socket name written with a leading `@`). `READY=1` after the first processed frame,
  `WATCHDOG=1` every half `$WATCHDOG_USEC` **only while every enabled stream makes progress**, `STATUS=...` lines,
  `STOPPING=1` on shutdown. Without `$NOTIFY_SOCKET` (a terminal, a test) nothing is sent; stall detection and the
  RSS budget work all the same.
* Progress: a stream that processed no frame for `[service] stall_s` while its reader reports no error is stalled
  (a hung driver call, inference or render); the pings stop, so systemd's `WatchdogSec=` kills and `Restart=`
  restarts the process. Stalls are logged, recorded in the decision log (`service`) and exported
  (`edge_stream_stalled`). A stream whose reader knows its source is lost (unplugged, unreachable; it reconnects)
  is not a stall: a restart cannot bring a camera back. It is reported as `source lost` (log, decision, /healthz)
  and the pings go on.
* The RSS budget (`[service] rss_budget_mb`), checked once the service is ready: over budget on `rss_over_checks`
  checks in a row → log, decision record and a graceful stop with exit status `EXIT_RSS_BUDGET`, which
  `Restart=on-failure` restarts (the unit's `MemoryMax=` is the hard limit above it).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from pydantic import Field

from edge.core import decisions
from edge.core.config_base import StrictModel

log = logging.getLogger(__name__)

EXIT_RSS_BUDGET = 75  # EX_TEMPFAIL: a clean exit that asks for a restart (the unit restarts on failure)
NOTIFY_ENV = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
RETRY_S = 0.5  # a supervisor probe that raised (progress, status, RSS) is retried after this long (at most)


class ServiceConfig(StrictModel):
    """`[service]`: watchdog, stall detection, RSS budget, graceful stop, compiled-model cache."""

    watchdog: bool = Field(True, description="send WATCHDOG=1 while the pipelines make progress (when systemd "
                                             "sets WATCHDOG_USEC, i.e. the unit has WatchdogSec=)")
    stall_s: float = Field(10.0, gt=0, le=3600, description="a stream with no processed frame for this long is "
                                                            "stalled (unless its reader lost its source and "
                                                            "reconnects): the watchdog pings stop")
    status_interval_s: float = Field(5.0, gt=0, le=3600, description="STATUS= line to systemd every this often")
    rss_budget_mb: float = Field(0.0, ge=0, description="resident memory budget; over it the process exits for a "
                                                        "restart; 0 = no budget")
    rss_check_s: float = Field(5.0, gt=0, le=3600, description="how often the RSS is checked")
    rss_over_checks: int = Field(3, ge=1, le=1000, description="checks in a row over budget before exiting (a "
                                                               "short spike passes)")
    stop_flush_s: float = Field(5.0, ge=0, le=120, description="graceful stop: time the outbox gets to flush to "
                                                               "the broker and cloud before the offline state")
    openvino_cache: bool = Field(True, description="OpenVINO compiled-model cache at <model cache>/openvino for "
                                                   "every model (a model's own [models.X.openvino] cache_dir wins)")


# ---------------------------------------------------------------------------------------------- sd_notify
def notify_address(value: str | None) -> str | None:
    """The socket address of a `$NOTIFY_SOCKET` value: a path, or `@name` = the abstract socket `\\0name`; None
    when unset or of a kind not supported here (vsock)."""
    if not value:
        return None
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    log.warning("NOTIFY_SOCKET=%r is not a unix socket path or @abstract name: sd_notify disabled", value)
    return None


def watchdog_interval(env: Mapping[str, str], pid: int | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings: half of `$WATCHDOG_USEC` (as sd_watchdog_enabled(3) recommends), or None
    when the service manager expects none (unset, 0, malformed, or `$WATCHDOG_PID` names another process)."""
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not an integer: watchdog disabled", env.get("WATCHDOG_USEC"))
        return None
    wpid = env.get("WATCHDOG_PID")
    if usec <= 0 or (wpid and wpid.strip() != str(pid if pid is not None else os.getpid())):
        return None
    return usec / 2e6


class Notifier:
    """Sends sd_notify messages (one datagram each, newline-separated assignments) to the service manager.
    A no-op without an address; send errors are logged once and counted, never raised."""

    def __init__(self, address: str | None):
        self.address = address
        self.sent = 0
        self.errors = 0
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Notifier:
        return cls(notify_address(env.get("NOTIFY_SOCKET")))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *assignments: str) -> bool:
        """Send `READY=1`, `WATCHDOG=1`, `STATUS=...`, ... in one datagram; True if it was sent."""
        if self.address is None:
            return False
        msg = "\n".join(a.replace("\n", " ") for a in assignments).encode("utf-8", "replace")
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(msg, self.address)
            except OSError as e:
                self.errors += 1
                if self.errors == 1:
                    log.warning("sd_notify to %r failed: %s (further failures are counted, not logged)",
                                self.address.replace("\0", "@"), e)
                return False
        self.sent += 1
        return True

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


# ---------------------------------------------------------------------------------------------- process figures
def rss_bytes() -> int:
    """Resident set size of this process (/proc/self/statm)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def process_age_s() -> float | None:
    """Seconds since this process started (the kernel's start time, so interpreter start-up and imports count);
    None where /proc does not say."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def take_notify_env(env: dict = os.environ) -> dict[str, str]:
    """Remove the sd_notify variables from the environment and return them (as sd_notify(3)'s unset_environment:
    child processes must not talk to systemd as if they were the service)."""
    return {k: env.pop(k) for k in NOTIFY_ENV if k in env}


def apply_openvino_cache(cfg) -> Path | None:
    """`[service] openvino_cache`: every model's OpenVINO options get `cache_dir = <model cache>/openvino` unless its
    `[models.X.openvino]` table sets cache_dir itself. Returns the folder (None when off)."""
    if not cfg.service.openvino_cache:
        return None
    from edge.backends.registry import BACKENDS, backend_class
    from edge.core.paths import cache_dir

    if "openvino" not in BACKENDS:
        return None
    folder = cache_dir(cfg.models.cache_dir or None) / "openvino"
    options_model = backend_class("openvino").options_model
    for key in ("pose_detector", "pose_landmarks", "face_detector", "person_detector", "hand_detector",
                "hand_landmarks"):
        ref = getattr(cfg.models, key)
        if ref is None:
            continue
        opts = getattr(ref, "openvino", None)
        if opts is None:
            ref.openvino = options_model(cache_dir=str(folder))
        elif "cache_dir" not in opts.model_fields_set:
            opts.cache_dir = str(folder)
    return folder


# ---------------------------------------------------------------------------------------------- the supervisor
class ServiceSupervisor:
    """Talks to systemd for one `edge run` and watches it from its own thread.

    `progress()` -> {stream: monotonic time of its last processed frame, or None if none yet}; streams that ended
    (a file without loop) are left out. A stream with none yet is judged from the time READY was sent. `lost()` ->
    {stream: its reader's error} for the streams whose reader knows it lost its source and reconnects: not stalls;
    such a stream stays `source lost` until it processes a frame again, or until it has been reconnected for
    stall_s without one (then it is judged as a stall from the reconnect). `stop` is
    the run's stop event: the RSS budget sets it (and `exit_code`). `process_start`: the cold start is counted from
    the process's start (`edge run`: interpreter and imports included), else from this supervisor's start (a
    runtime inside a longer-lived process: tests, benches)."""

    def __init__(self, cfg: ServiceConfig, progress: Callable[[], dict[str, float | None]], stop: threading.Event, *,
                 env: Mapping[str, str] | None = None, status: Callable[[], str] | None = None,
                 clock: Callable[[], float] = time.monotonic, process_start: bool = False,
                 lost: Callable[[], dict[str, str]] | None = None):
        env = os.environ if env is None else env
        self.process_start = process_start
        self.cfg, self._progress, self._stop, self._status = cfg, progress, stop, status
        self._lost = lost
        self.notifier = Notifier.from_env(env)
        self.ping_s = watchdog_interval(env) if cfg.watchdog else None
        self._unwanted_watchdog = not cfg.watchdog and watchdog_interval(env) is not None
        self.clock = clock
        self._t0 = clock()
        self.exit_code = 0
        self.stop_reason: str | None = None  # why the supervisor stopped the run (RSS budget)
        self.ready_at: float | None = None  # monotonic
        self.cold_start_s: float | None = None
        self.pings = 0
        self.stalled: dict[str, float] = {}  # stream -> seconds without a frame (while stalled)
        self.lost: dict[str, dict] = {}  # stream -> {error, since, back} while its source is lost (not a stall)
        self.rss = 0
        self._over = 0
        self._stopping = False
        self.probe_errors = 0  # probes (progress, status, RSS) that raised
        self._last_error, self._last_error_t = "", 0.0
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="service", daemon=True)

    def start(self) -> ServiceSupervisor:
        if self.notifier.enabled:
            log.info("systemd notify socket %s; watchdog %s", self.notifier.address.replace("\0", "@"),
                     f"ping every {self.ping_s:g} s while frames flow" if self.ping_s else "off")
        if self._unwanted_watchdog:
            log.warning("the unit has WatchdogSec= but [service] watchdog = false: systemd will kill the service "
                        "after WatchdogSec (fix: remove WatchdogSec= from the unit, or set watchdog = true)")
        self.notifier.notify("STATUS=starting: sync and decision log")
        self._thread.start()
        return self

    # -- called by the runtime --------------------------------------------------------------------------------
    def starting(self, what: str) -> None:
        """A start-up phase, as a STATUS line (e.g. "opening the camera")."""
        self.notifier.notify(f"STATUS=starting: {what}")

    def ready(self) -> None:
        """The first frame was processed: READY=1, and the cold start time is recorded."""
        if self.ready_at is not None:
            return
        self.ready_at = self.clock()
        age = process_age_s() if self.process_start else None
        self.cold_start_s = age if age is not None else self.ready_at - self._t0
        since = "process start" if age is not None else "run start"
        from edge.core.metrics import SERVICE_START_SECONDS

        SERVICE_START_SECONDS.set(self.cold_start_s)
        msg = f"first frame processed {self.cold_start_s:.2f} s after {since}"
        self.notifier.notify("READY=1", f"STATUS=running: {msg}")
        log.info("ready: %s", msg)
        decisions.record("service", "ready", {"cold_start_s": round(self.cold_start_s, 3), "since": since,
                                              "pid": os.getpid(),
                                              "watchdog_s": self.ping_s, "notify": self.notifier.enabled},
                         reason=msg)
        self._wake.set()

    def stopping(self, reason: str) -> None:
        """Shutdown begins: STOPPING=1 (pings go on, unconditionally, until close(): a slow flush is no stall)."""
        if self._stopping:
            return
        self._stopping = True
        self.notifier.notify("STOPPING=1", f"STATUS=stopping ({reason}): flushing the outbox")
        log.info("stopping (%s)", reason)

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.notifier.close()

    def health(self) -> dict:
        """For /healthz: ready, cold start, watchdog, stalled streams, lost sources, RSS against the budget."""
        return {"ready": self.ready_at is not None, "cold_start_s": _r(self.cold_start_s), "notify":
                self.notifier.enabled, "watchdog_s": self.ping_s, "pings": self.pings,
                "stalled": {k: round(v, 1) for k, v in self.stalled.items()},
                "source_lost": {k: {"error": v["error"], "for_s": round(self.clock() - v["since"], 1)}
                                for k, v in self.lost.items()}, "rss_mb": round((self.rss or rss_bytes()) / 2**20, 1),
                "rss_budget_mb": self.cfg.rss_budget_mb or None}

    # -- the thread -----------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        now = self.clock()
        next_ping = next_status = next_rss = now
        while not self._closed.is_set():
            now = self.clock()
            try:
                if self.ready_at is not None and now >= next_ping:
                    self._watch(now)
                    next_ping = now + (self.ping_s or min(1.0, self.cfg.stall_s / 4))
                if self.ready_at is not None and not self._stopping and now >= next_status:
                    self._send_status()
                    next_status = now + self.cfg.status_interval_s
                if self.cfg.rss_budget_mb and self.ready_at is not None and now >= next_rss:
                    self._check_rss()
                    next_rss = now + self.cfg.rss_check_s
            except Exception as e:  # noqa: BLE001 - the supervisor must outlive any bug in a probe
                self._probe_failed(e)
                # the failed task's time stays in the past: retry it (and what was due after it) in RETRY_S (or the
                # ping interval if shorter), not in a 10 ms loop; no ping is sent meanwhile (the progress is unknown)
                retry = now + min(RETRY_S, self.ping_s or RETRY_S)
                next_ping, next_status, next_rss = (max(t, retry) for t in (next_ping, next_status, next_rss))
            deadlines = [now + 0.5] + ([next_ping] if self.ready_at is not None else []) + \
                ([next_rss] if self.cfg.rss_budget_mb else [])
            self._wake.wait(max(0.01, min(deadlines) - self.clock()))
            self._wake.clear()

    def _probe_failed(self, e: Exception) -> None:
        """Log a failing probe: with its traceback when the error is new, else at most once a minute."""
        self.probe_errors += 1
        key, now = f"{type(e).__name__}: {e}", self.clock()
        if key != self._last_error or now - self._last_error_t >= 60:
            log.exception("service supervisor: %s (%d failures so far; retried every %g s; no watchdog ping while "
                          "the progress probe fails)", key, self.probe_errors, RETRY_S)
            self._last_error, self._last_error_t = key, now

    def _watch(self, now: float) -> None:
        """Ping when every enabled stream processed a frame within stall_s or has lost its source; else stop pinging
        (and say why)."""
        if self._stopping:
            self._ping()
            return
        stalled, lost = {}, {}
        progress = self._progress()
        errors = self._lost() if self._lost is not None else {}
        for stream, last in progress.items():
            was = self.lost.get(stream)
            if stream in errors:  # its reader knows the source is lost and reconnects: not a stall
                lost[stream] = {"error": errors[stream], "since": was["since"] if was else now, "back": None}
                continue
            since = last if last is not None else self.ready_at
            if was is not None and since <= was["since"]:  # reconnected, no frame yet: stall_s from the reconnect
                back = was["back"] or now
                if now - back <= self.cfg.stall_s:
                    lost[stream] = {**was, "back": back}
                    continue
                since = back
            if now - since > self.cfg.stall_s:
                stalled[stream] = now - since
        self._lost_changed(lost, stalled, set(progress))
        self._stalls_changed(stalled, set(progress) - set(lost))
        if not stalled:
            self._ping()

    def _ping(self) -> None:
        if self.ping_s and self.notifier.notify("WATCHDOG=1"):
            self.pings += 1
            from edge.core.metrics import WATCHDOG_PINGS

            WATCHDOG_PINGS.inc()

    def _stalls_changed(self, stalled: dict[str, float], watched: set[str] | None = None) -> None:
        """Log, record and export stalls as they begin and end. Each stream that processes frames again is recorded
        as `recovered`, also while others stay stalled; a stream no longer watched (its source ended) is not."""
        from edge.core.metrics import STREAM_STALLED

        new, gone = set(stalled) - set(self.stalled), set(self.stalled) - set(stalled)
        for s in set(stalled) | set(self.stalled):
            STREAM_STALLED.labels(s).set(1 if s in stalled else 0)
        if new:
            what = ", ".join(f"{s} no frame for {stalled[s]:.1f} s" for s in sorted(stalled))
            action = "watchdog pings stop: systemd restarts the service" if self.ping_s else \
                "no watchdog configured (WatchdogSec=): nothing restarts it"
            log.error("stalled: %s (stall_s %g); %s", what, self.cfg.stall_s, action)
            self.notifier.notify(f"STATUS=stalled: {what}")
            decisions.record("service", "stall", {"streams": {s: round(a, 2) for s, a in stalled.items()},
                                                  "stall_s": self.cfg.stall_s, "watchdog_s": self.ping_s},
                             reason=f"stalled: {what}; {action}")
        back = sorted(gone if watched is None else gone & watched)
        if back:
            still = ", ".join(sorted(stalled))
            then = f"still stalled: {still}" if still else "watchdog pings resume"
            log.warning("streams %s process frames again; %s", ", ".join(back), then)
            decisions.record("service", "recovered", {"streams": back, "still_stalled": sorted(stalled)},
                             reason=f"{', '.join(back)} process frames again; {then}")
        self.stalled = stalled

    def _lost_changed(self, lost: dict[str, dict], stalled: dict[str, float], watched: set[str]) -> None:
        """Log and record each stream's source loss once when it begins and once when it ends (frames again, a
        reconnected source without frames: stalled, or the source ended)."""
        new, gone = sorted(set(lost) - set(self.lost)), sorted(set(self.lost) - set(lost))
        if new:
            what = ", ".join(f"{s} ({lost[s]['error']})" for s in new)
            log.warning("source lost: %s; the reader reconnects; not a stall: watchdog pings go on", what)
            decisions.record("service", "source_lost", {"streams": {s: lost[s]["error"] for s in new}},
                             reason=f"source lost: {what}; not a stall (a restart cannot bring it back)")
        if gone:
            now = self.clock()
            then = {s: "ended" if s not in watched else "stalled" if s in stalled else "frames" for s in gone}
            what = ", ".join(f"{s} after {now - self.lost[s]['since']:.1f} s ({then[s]})" for s in gone)
            log.warning("source lost no more: %s", what)
            decisions.record("service", "source_back", {"streams": {s: round(now - self.lost[s]["since"], 2)
                                                                    for s in gone}, "then": then},
                             reason=f"source lost no more: {what}")
        self.lost = lost

    def _send_status(self) -> None:
        if not self.notifier.enabled or self._status is None:
            return
        line = self._status()
        if self.lost:
            line = "source lost: " + ", ".join(self.lost) + "; " + line
        if self.stalled:
            line = "stalled: " + ", ".join(f"{s} {a:.0f} s" for s, a in self.stalled.items()) + "; " + line
        self.notifier.notify(f"STATUS={line}")

    def _check_rss(self) -> None:
        self.rss = rss_bytes()
        budget = self.cfg.rss_budget_mb * 2**20
        self._over = self._over + 1 if self.rss > budget else 0
        if self._over < self.cfg.rss_over_checks or self._stop.is_set():
            return
        rss_mb, why = self.rss / 2**20, f"RSS {self.rss / 2**20:.0f} MB over the {self.cfg.rss_budget_mb:g} MB budget"
        log.error("%s on %d checks in a row: stopping for a restart (exit status %d)", why, self._over,
                  EXIT_RSS_BUDGET)
        decisions.record("service", "rss_budget", {"rss_mb": round(rss_mb, 1), "budget_mb": self.cfg.rss_budget_mb,
                                                   "checks": self._over, "exit_status": EXIT_RSS_BUDGET},
                         reason=f"{why}: graceful stop, exit {EXIT_RSS_BUDGET} for a restart")
        self.exit_code, self.stop_reason = EXIT_RSS_BUDGET, "RSS budget"
        self.stopping(why)
        self._stop.set()


def _r(x: float | None, n: int = 3) -> float | None:
    return None if x is None else round(x, n)
