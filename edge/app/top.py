"""`edge top`: the three monitoring levels (model, system, business) of a running `edge run`, live in the terminal.

Reads the local HTTP server's /metrics and /healthz (loopback by default) and redraws every `--interval` seconds
(plain ANSI, no curses); rates and distributions cover the time since the previous refresh. `--once` prints one
snapshot (since start) and exits; `--json` prints the summary as JSON instead of the table.
"""
from __future__ import annotations

import http.client
import json
import logging
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

log = logging.getLogger(__name__)

CLEAR = "\x1b[H\x1b[2J"
BOLD, DIM, RED, RESET = "\x1b[1m", "\x1b[2m", "\x1b[31m", "\x1b[0m"
DRIFT_WARN = 0.25  # drift (PSI) at which an input statistic is flagged as changed
MAX_SECONDS = 86400  # --interval / --timeout: a day


def add_arguments(p) -> None:
    p.add_argument("--url", default="", help="base URL of the device's local HTTP server "
                   "(default: from --config [http], else http://127.0.0.1:8080)")
    p.add_argument("--config", default="", help="device TOML whose [http] host and port to read")
    p.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    p.add_argument("--once", action="store_true", help="print one snapshot and exit (scripts, tests)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--timeout", type=float, default=3.0, help="HTTP timeout in seconds")


def base_url(args) -> str:
    """The device's base URL; ValueError for a --url that can never name one (http(s)://HOST:PORT; a bare
    HOST:PORT is taken as http)."""
    if args.url:
        url = args.url.strip()
        url = (url if "://" in url else "http://" + url).rstrip("/")
        try:
            parts = urllib.parse.urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number or out of range
        except ValueError as e:
            raise ValueError(f"edge top: --url {args.url}: {e} (use http://HOST:PORT, the port a number up to "
                             "65535)") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"edge top: --url {args.url}: use http://HOST:PORT (e.g. http://127.0.0.1:8080)")
        return url
    if args.config:
        from edge.app.config import load_config

        cfg = load_config(args.config)
        host = "127.0.0.1" if cfg.http.host in ("0.0.0.0", "::", "") else cfg.http.host
        return f"http://{host}:{cfg.http.port}"
    return "http://127.0.0.1:8080"


# what reading a device that is down, restarting or not an `edge run` raises: refused / timed out (OSError), a cut
# or non-HTTP answer (http.client.HTTPException), a body that is not metrics or JSON (ValueError)
SCRAPE_ERRORS = (OSError, http.client.HTTPException, ValueError)


def scrape(url: str, timeout: float) -> tuple[dict, dict]:
    """(samples of /metrics, /healthz body); raises one of SCRAPE_ERRORS when the server cannot be read."""
    from edge.core.monitoring import parse_samples

    with urllib.request.urlopen(url + "/metrics", timeout=timeout) as r:
        samples = parse_samples(r.read().decode())
    try:
        with urllib.request.urlopen(url + "/healthz", timeout=timeout) as r:
            health = json.load(r)
    except urllib.error.HTTPError as e:  # 503 = degraded, still a JSON body
        health = json.load(e)
    if not isinstance(health, dict):
        raise ValueError(f"{url}/healthz answered {type(health).__name__}, not the JSON object of `edge run`")
    return samples, health


def run(args) -> int:
    for name in ("interval", "timeout"):
        v = getattr(args, name)
        if not 0 < v <= MAX_SECONDS:  # also NaN; inf and 1e12 overflow time.sleep and the socket's timeout
            log.error("edge top: --%s %s: use a number of seconds above 0 (at most %d)", name, v, MAX_SECONDS)
            return 2
    try:
        url = base_url(args)
    except Exception as e:  # noqa: BLE001 - config errors are reported, not raised
        log.error("%s", e)
        return 2
    try:
        return _loop(args, url)
    except KeyboardInterrupt:  # Ctrl-C ends the live view wherever it waits (a scrape of a device that is down)
        return 0
    except BrokenPipeError:  # `edge top | head`: the reader has what it wanted
        from edge.app.log_cli import stdout_gone

        stdout_gone()
        return 0


def _loop(args, url: str) -> int:
    from edge.core.monitoring import summarize

    prev = prev_t = None
    tty = sys.stdout.isatty() and not args.once
    while True:
        try:
            samples, health = scrape(url, args.timeout)
        except SCRAPE_ERRORS as e:
            msg = f"cannot read {url}/metrics: {type(e).__name__}: {e} (is `edge run` running with [http] enabled?)"
            if args.once:
                log.error("%s", msg)
                return 1
            print((CLEAR if tty else "") + msg, flush=True)
            time.sleep(args.interval)
            continue
        now = time.monotonic()
        summary = summarize(samples, prev, (now - prev_t) if prev_t else None)
        if args.json:
            text = json.dumps({"url": url, "health": health, **summary}, default=str)
        else:
            text = render(summary, health, url, window=None if prev is None else now - prev_t, color=tty)
        print((CLEAR if tty else "") + text, flush=True)
        if args.once:
            return 0
        prev, prev_t = samples, now
        time.sleep(args.interval)


def _f(x, fmt="{:.1f}", none="-") -> str:
    return none if x is None else fmt.format(x)


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def render(s: dict, health: dict, url: str, *, window: float | None = None, color: bool = False) -> str:
    """The text view of one summary (see edge.core.monitoring.summarize)."""
    b = (lambda t: f"{BOLD}{t}{RESET}") if color else (lambda t: t)
    warn = (lambda t: f"{RED}{t}{RESET}") if color else (lambda t: t + " !")
    m, y, z = s["model"], s["system"], s["business"]
    span = "since start" if window is None else f"last {window:.0f} s"
    out = [b(f"storefront-edge top  {health.get('device', '?')} ({health.get('kind', '?')})  "
             f"status {health.get('status', '?')}  {url}  [{span}]  {time.strftime('%H:%M:%S')}"), ""]

    out.append(b("MODEL"))
    rows = [["model", "backend/precision", "runs", "p50 ms", "p95 ms", "confidence", "presence", "errors"]]
    for name, v in sorted(m["models"].items()):
        rows.append([name, f"{v.get('backend', '-')}/{v.get('precision', '-')}", _f(v.get("runs"), "{}"),
                     _f(v.get("p50_ms")), _f(v.get("p95_ms")), _f(v.get("confidence_mean"), "{:.2f}"),
                     _f(v.get("presence_mean"), "{:.2f}"), _f(v.get("errors"), "{}")])
    out += _table(rows) if len(rows) > 1 else ["  (no inference yet)"]
    rows = [["input", "brightness", "blur", "people", "drift (PSI) b/blur/people"]]
    for stream, v in sorted(m["inputs"].items()):
        d = v.get("drift")
        ds = "baseline pending" if d is None else "/".join(_f(d.get(k), "{:.2f}") for k in ("brightness", "blur",
                                                                                             "people"))
        if d and any(x is not None and x >= DRIFT_WARN for x in d.values()):
            ds = warn(ds)
        rows.append([stream, _f(v.get("brightness")), _f(v.get("blur"), "{:.0f}"), _f(v.get("people"), "{:.2f}"),
                     ds])
    out += _table(rows) if len(rows) > 1 else []

    out += ["", b("SYSTEM")]
    temps = "  ".join(f"{k} {_f(v, '{:.0f}')}°C" for k, v in y["temp_c"].items()) or "not exposed"
    out.append(f"  cpu {_f(y['cpu_pct'], '{:.0f}')}% of a core (machine {_f(y['machine_cpu_pct'], '{:.0f}')}%)  "
               f"rss {_f(y['rss_mb'], '{:.0f}')} MB  load {_f(y['load1'], '{:.2f}')}  temperature {temps}")
    rows = [["stream", "in", "processed", "dropped", "fps"]]
    for stream, v in sorted(y["streams"].items()):
        rows.append([stream, _f(v.get("in"), "{}"), _f(v.get("processed"), "{}"), _f(v.get("dropped"), "{}"),
                     _f(v.get("fps"))])
    out += _table(rows) if len(rows) > 1 else []
    ob = y["outbox"]
    depth = " ".join(f"{k} {_f(v, '{}')}" for k, v in sorted(ob["depth"].items()))
    queues = " ".join(f"{k} {_f(v, '{}')}" for k, v in sorted(y["queues"].items()))
    out.append(f"  sync {'connected' if ob['connected'] else 'not connected'}  outbox {depth or '-'}  "
               f"oldest undelivered {_f(ob['oldest_age_s'])} s  queues {queues or '-'}")

    out += ["", b("BUSINESS")]
    out.append(f"  people now {z['people_now']}  shoppers {z['shoppers']}  try-on sessions {z['tryon_sessions']} "
               f"(garments tried {z['garments_tried']})")
    for zone, v in sorted(z["zones"].items()):
        out.append(f"  zone {zone}: visits {v['visits']}  dwell p50 {_f(v['dwell_p50_s'])} s  "
                   f"mean {_f(v['dwell_mean_s'])} s")
    for q, v in sorted(z["queues"].items()):
        out.append(f"  queue {q}: length {_f(v.get('length'), '{}')}  wait {_f(v.get('wait_s'))} s")
    open_ = " ".join(f"{k} {v}" for k, v in sorted(z["alerts_open"].items())) or "none"
    out.append(f"  alerts open: {open_}  opened {z['alerts_opened']}  acknowledged {z['acks']} "
               f"(p50 {_f(z['ack_p50_s'], '{:.0f}')} s)")
    return "\n".join(out)
