"""`edge bench latency [--json PATH]`: the product's latency budgets, measured on a real Mosquitto while the try-on
mirror runs in the same process.

Set-up (shared with `edge bench sync`): mosquitto (sync/mosquitto/dev.conf) on a free loopback port and the
reference consumer as its own process (`edge sync consumer`). The device is the real runtime (`edge run`'s
Runtime) on the mirror config with the demo source at camera pace, its [sync] pointed at that broker.

Phases, interleaved (`--rounds` x idle then load, so both see the same machine):
- idle: the mirror and the device's own events only; motion-to-photon (m2p) of every mirror frame;
- load: besides the mirror, events (`--event-rate`/s) and alerts (`--alert-rate`/s) into the device's outbox, and
  `ping` commands one at a time from a cloud-side requester; m2p again;
- burst: `--burst` pings published at once; each one's round trip (and the mirror's m2p over the 2 s from it);
- TCP_NODELAY before/after: two bare devices (no mirror), one with TCP_NODELAY off, one on, pinged alternately;
  then the burst again on the one with TCP_NODELAY (the burst without the mirror beside it).

Latencies: event/alert emitted (Event.ts, wall clock) → stored by the consumer (its received_ts, same clock on
loopback); command round trip = publish of the command → its result received by the requester, which runs in its
own process (like the cloud, it never shares the device's interpreter).
"""
from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time

import numpy as np

log = logging.getLogger(__name__)

TARGET_P99_MS = 500.0  # the product's stated budget for every p99
TARGET_CMD_P50_MS = 10.0


def add_arguments(p) -> None:
    p.add_argument("--config", default="", help="device TOML of the mirror (default: device_configs/tryon-mirror.toml)")
    p.add_argument("--phase-s", type=float, default=8.0, help="seconds per idle and per load phase")
    p.add_argument("--rounds", type=int, default=3, help="idle/load alternations")
    p.add_argument("--warmup-s", type=float, default=5.0, help="mirror running before the first phase")
    p.add_argument("--event-rate", type=float, default=20.0, help="events/s emitted during load phases")
    p.add_argument("--alert-rate", type=float, default=2.0, help="alerts/s emitted during load phases")
    p.add_argument("--ping-gap-ms", type=float, default=20.0, help="pause between single pings (one outstanding)")
    p.add_argument("--burst", type=int, default=1000, help="pings published at once in the burst phase (0 = skip)")
    p.add_argument("--nagle-pings", type=int, default=100,
                   help="pings per setting in the TCP_NODELAY before/after phase (0 = skip)")


def pct(values, *qs) -> dict:
    """{"p50": .., "p99": ..} in ms (rounded), plus n and max; empty input gives None values."""
    a = np.asarray(values, dtype=np.float64)
    out = {f"p{q}": (round(float(np.percentile(a, q)), 2) if a.size else None) for q in qs}
    out.update(n=int(a.size), max=round(float(a.max()), 2) if a.size else None)
    return out


class Pinger:
    """A cloud-side requester that records when each result arrives (paho's thread), by command id."""

    def __init__(self, port: int, store: str, device: str):
        from sync.client import ClientOptions
        from sync.request import Requester, device_reply_filter

        self.topic = f"retail/v1/{store}/{device}/cmd/ping"
        self.req = Requester(ClientOptions(host="127.0.0.1", port=port), [device_reply_filter(store, device)])
        self.arrived: dict[str, float] = {}
        self.sent: dict[str, float] = {}
        self._cv = threading.Condition()
        handler = self.req.client.on_message

        def on_message(msg):
            t = time.perf_counter()
            try:
                cid = json.loads(msg.payload).get("id")
            except ValueError:
                cid = None
            with self._cv:
                if cid is not None:
                    self.arrived.setdefault(str(cid), t)
                self._cv.notify_all()
            handler(msg)

        self.req.client.on_message = on_message

    def __enter__(self) -> Pinger:
        self.req.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.req.__exit__(*exc)

    def send(self, cid: str) -> None:
        self.sent[cid] = time.perf_counter()
        self.req.send(self.topic, {"echo": cid}, cmd_id=cid)

    def wait(self, ids: list[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._cv:
            while any(i not in self.arrived for i in ids):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.5))
        return True

    def rtts_ms(self, ids: list[str]) -> list[float]:
        return [(self.arrived[i] - self.sent[i]) * 1e3 for i in ids if i in self.arrived]

    def single(self, n: int | None, gap_s: float, until: float | None = None, prefix: str = "s") -> list[str]:
        """Pings one at a time (each waits for its result, then `gap_s`) until n are done or `until` passes."""
        ids: list[str] = []
        while (n is None or len(ids) < n) and (until is None or time.monotonic() < until):
            cid = f"{prefix}{len(self.sent)}"
            self.send(cid)
            self.wait([cid], 10.0)
            ids.append(cid)
            time.sleep(gap_s)
        return ids


class RemotePinger:
    """A Pinger in its own process, as the cloud side is: it never shares the device's interpreter (GIL) with the
    mirror. `single` and `burst` return (round trips in ms, unanswered commands)."""

    def __init__(self, port: int, store: str, device: str, *, nodelay: bool = True):
        import multiprocessing

        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_pinger_main, args=(child, port, store, device, nodelay), daemon=True,
                                name=f"bench-pinger-{device}")

    def __enter__(self) -> RemotePinger:
        self.proc.start()
        self._reply(60)
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.conn.send(("close",))
            self.proc.join(10)
        finally:
            if self.proc.is_alive():
                self.proc.terminate()
                self.proc.join(5)

    def _reply(self, timeout: float):
        try:
            if not self.conn.poll(timeout):
                raise RuntimeError(f"{self.proc.name}: no answer within {timeout:.0f} s")
            msg = self.conn.recv()
        except EOFError:
            raise RuntimeError(f"{self.proc.name} exited (code {self.proc.exitcode})") from None
        if msg[0] == "error":
            raise RuntimeError(f"{self.proc.name}: {msg[1]}")
        return msg[1:]

    def single(self, n: int | None, gap_s: float, seconds: float | None = None) -> tuple[list[float], int]:
        """Pings one at a time until n are answered or `seconds` have passed."""
        self.conn.send(("single", n, gap_s, seconds))
        return self._reply((seconds or 0) + 120)

    def burst(self, n: int) -> tuple[list[float], int, float]:
        """n pings published at once; also the seconds until the last result."""
        self.conn.send(("burst", n))
        return self._reply(180)


def _pinger_main(conn, port: int, store: str, device: str, nodelay: bool) -> None:
    """The pinger process: serves single / burst requests from the bench over `conn`."""
    import sync.client as client

    client.TCP_NODELAY = nodelay  # read when the socket opens
    try:
        with Pinger(port, store, device) as p:
            conn.send(("ready",))
            while True:
                msg = conn.recv()
                if msg[0] == "close":
                    return
                if msg[0] == "single":
                    _, n, gap_s, seconds = msg
                    ids = p.single(n, gap_s, time.monotonic() + seconds if seconds else None)
                    rtts = p.rtts_ms(ids)
                    conn.send(("ok", rtts, len(ids) - len(rtts)))
                elif msg[0] == "burst":
                    ids = [f"b{len(p.sent) + i}" for i in range(msg[1])]
                    t0 = time.perf_counter()
                    for cid in ids:
                        p.send(cid)
                    p.wait(ids, 120)
                    rtts = p.rtts_ms(ids)
                    conn.send(("ok", rtts, len(ids) - len(rtts), time.perf_counter() - t0))
    except Exception as e:  # noqa: BLE001 - reported to the bench
        conn.send(("error", f"{type(e).__name__}: {e}"))


class Producer:
    """Emits paced events and alerts into an outbox on its own thread (the way stages emit)."""

    def __init__(self, outbox, event_rate: float, alert_rate: float):
        self.outbox, self.event_rate, self.alert_rate = outbox, event_rate, alert_rate
        self.emitted = {"bench_event": 0, "alert_opened": 0}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Producer:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="bench-producer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        from edge.core.events import Event

        t0 = time.monotonic()
        ne = na = 0
        while not self._stop.is_set():
            now = time.monotonic() - t0
            if ne < now * self.event_rate:
                self.outbox.emit(Event("bench_event", {"i": self.emitted["bench_event"], "zone": "entrance",
                                                       "dwell_s": 4.2, "conf": 0.91}))
                self.emitted["bench_event"] += 1
                ne += 1
            elif self.alert_rate and na < now * self.alert_rate:
                i = self.emitted["alert_opened"]
                self.outbox.emit(Event("alert_opened", {"alert_id": f"bench-{i}", "rule": "bench", "severity":
                                                        "warning", "value": 1.0, "evidence": {"bench": True}},
                                       stream="alerts"))
                self.emitted["alert_opened"] += 1
                na += 1
            else:
                self._stop.wait(0.002)


def stored_latencies(db: str, device: str) -> dict[str, list[float]]:
    """kind -> [stored - emitted in ms] for the bench's events and alerts of `device` in the consumer database."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        rows = con.execute("SELECT kind, ts, received_ts FROM events WHERE device=? AND kind IN "
                           "('bench_event', 'alert_opened')", (device,)).fetchall()
    finally:
        con.close()
    out: dict[str, list[float]] = {"bench_event": [], "alert_opened": []}
    for kind, ts, rx in rows:
        out[kind].append((rx - ts) * 1e3)
    return out


def start_mirror(cfg_path: str, port: int, work: str):
    """The real runtime on the mirror config, synced to the bench broker; returns (runtime, stop, thread)."""
    from devtools.bench.tryon import _device_config
    from edge.app.runner import Runtime

    cfg = _device_config(cfg_path)
    cfg.sync.broker, cfg.sync.port = "127.0.0.1", port
    cfg.sync.outbox_path = os.path.join(work, "mirror.sqlite")
    cfg.http.port = 0
    cfg.source.realtime = True  # the demo at camera pace: frames that are late are dropped, as with a camera
    rt = Runtime(cfg)
    stop = threading.Event()
    th = threading.Thread(target=rt.run, args=(stop,), name="bench-runtime", daemon=True)
    th.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        m = rt.mirror
        if m is not None and m.frames_out > 30 and rt.sync is not None and rt.sync.client is not None \
                and rt.sync.client.connected:
            return rt, stop, th
        if not th.is_alive():
            break
        time.sleep(0.2)
    stop.set()
    raise RuntimeError("the mirror runtime did not start (frames, broker connection) within 120 s")


def m2p_phase(mirror, seconds: float, during=None) -> tuple[list[float], float]:
    """m2p of every mirror frame over `seconds` (running `during(until)` meanwhile); returns (m2p ms, fps)."""
    mirror.m2p_ms.clear()
    n0, t0 = mirror.frames_out, time.monotonic()
    until = t0 + seconds
    if during is not None:
        during(until)
    left = until - time.monotonic()
    if left > 0:
        time.sleep(left)
    return list(mirror.m2p_ms), (mirror.frames_out - n0) / (time.monotonic() - t0)


def nagle_comparison(bench, n: int, gap_s: float, burst: int = 0) -> dict:
    """Command round trips of two bare devices (no mirror), TCP_NODELAY off and on (device and requester), pinged
    alternately; then `burst` pings at once to the one with TCP_NODELAY (the burst without the mirror's load)."""
    import sync.client as client

    out, pairs = {}, []
    try:
        for setting in (False, True):
            client.TCP_NODELAY = setting  # read when each socket opens
            name = "d-nodelay" if setting else "d-nagle"
            svc = bench.device(name)
            pairs.append((setting, svc, RemotePinger(bench.broker.port, "bench", name, nodelay=setting).__enter__()))
    finally:
        client.TCP_NODELAY = True
    try:
        rtts: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(n):
            for setting, _svc, pinger in pairs:
                rtts[setting] += pinger.single(1, gap_s)[0]
        for setting, _svc, _pinger in pairs:
            out["on" if setting else "off"] = pct(rtts[setting], 50, 95, 99)
        if burst:
            out["burst_on"] = pct(pairs[1][2].burst(burst)[0], 50, 95, 99)
    finally:
        for _setting, svc, pinger in pairs:
            pinger.__exit__(None, None, None)
            svc.stop()
    return out


def run(args) -> int:
    from devtools.bench.sync import _Bench, _environment

    res: dict = {"config": args.config or "device_configs/tryon-mirror.toml", "phase_s": args.phase_s,
                 "rounds": args.rounds, "event_rate": args.event_rate, "alert_rate": args.alert_rate,
                 "loadavg_start": round(os.getloadavg()[0], 2)}
    bench = _Bench.setup()
    unanswered = lost = 0
    unanswered_single = [0]
    try:
        rt, stop, th = start_mirror(args.config, bench.broker.port, bench.work)
        device, store = rt.cfg.device.id, rt.cfg.device.store
        mirror = rt.mirror
        try:
            with RemotePinger(bench.broker.port, store, device) as pinger:
                pinger.single(20, 0.01)  # warm-up: connections, caches, the mirror's first frames
                time.sleep(args.warmup_s)
                m2p = {"idle": [], "load": []}
                fps = {"idle": [], "load": []}
                per_round = {"idle": [], "load": []}
                singles: list[float] = []
                producer = Producer(rt.sync.outbox, args.event_rate, args.alert_rate)
                for r in range(args.rounds):
                    for phase in ("idle", "load"):
                        during = None
                        if phase == "load":
                            producer.start()

                            def during(until):
                                rtts, missing = pinger.single(None, args.ping_gap_ms / 1e3, until - time.monotonic())
                                singles.extend(rtts)
                                unanswered_single[0] += missing
                        values, f = m2p_phase(mirror, args.phase_s, during)
                        if phase == "load":
                            producer.stop()
                        m2p[phase] += values
                        fps[phase].append(f)
                        per_round[phase].append(pct(values, 95)["p95"])
                        log.info("round %d %s: m2p p95 %s ms, %.1f fps", r, phase, per_round[phase][-1], f)
                bursts: list[float] = []
                burst_m2p: list[float] = []
                burst_s = None
                if args.burst:
                    mirror.m2p_ms.clear()
                    bursts, missing, burst_s = pinger.burst(args.burst)
                    unanswered_single[0] += missing
                    time.sleep(max(0.0, 2.0 - burst_s))  # the mirror's frames of the 2 s from the burst on
                    burst_m2p = list(mirror.m2p_ms)
                unanswered = unanswered_single[0]
            # everything the producer emitted must reach the consumer
            want = dict(producer.emitted)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                lat = stored_latencies(bench.db, device)
                if all(len(lat[k]) >= want[k] for k in want):
                    break
                time.sleep(0.5)
            lost = sum(max(0, want[k] - len(lat[k])) for k in want)
            state = rt.sync.metrics()
        finally:
            stop.set()
            th.join(60)
        ev, al = pct(lat["bench_event"], 50, 95, 99), pct(lat["alert_opened"], 50, 95, 99)
        cmd, burst = pct(singles, 50, 95, 99), pct(bursts, 50, 95, 99)
        idle, load, bm = pct(m2p["idle"], 50, 95), pct(m2p["load"], 50, 95), pct(burst_m2p, 50, 95)
        res.update({
            "event_to_cloud_p50_ms": ev["p50"], "event_to_cloud_p99_ms": ev["p99"],
            "alert_to_cloud_p50_ms": al["p50"], "alert_to_cloud_p99_ms": al["p99"],
            "command_rtt_p50_ms": cmd["p50"], "command_rtt_p99_ms": cmd["p99"],
            "burst_rtt_p50_ms": burst["p50"], "burst_rtt_p95_ms": burst["p95"], "burst_rtt_p99_ms": burst["p99"],
            "burst_commands_per_s": round(len(bursts) / burst_s, 1) if burst_s else None,
            "m2p_p50_ms": load["p50"], "m2p_p95_ms": load["p95"],
            "m2p_p50_ms_idle": idle["p50"], "m2p_p95_ms_idle": idle["p95"],
            "m2p_p95_ms_burst": bm["p95"],
            "m2p_p95_ms_rounds": per_round,
            "mirror_fps_idle": round(float(np.median(fps["idle"])), 1) if fps["idle"] else None,
            "mirror_fps_load": round(float(np.median(fps["load"])), 1) if fps["load"] else None,
            "detail": {"event_to_cloud_ms": ev, "alert_to_cloud_ms": al, "command_rtt_ms": cmd,
                       "burst_rtt_ms": burst, "m2p_idle_ms": idle, "m2p_load_ms": load, "m2p_burst_ms": bm},
            "emitted": want, "lost": lost, "unanswered_commands": unanswered,
            "device_sync": {k: state.get(k) for k in ("sent", "messages", "go_backs", "acks_refused", "commands")},
        })
        if args.nagle_pings:
            bare = nagle_comparison(bench, args.nagle_pings, args.ping_gap_ms / 1e3, args.burst)
            res["burst_rtt_p95_ms_no_mirror"] = bare.pop("burst_on", {}).get("p95")
            res["command_rtt_p50_ms_no_nodelay"] = bare["off"]["p50"]
            res["command_rtt_p50_ms_no_mirror"] = bare["on"]["p50"]
            res["tcp_nodelay_command_rtt_ms"] = bare
    finally:
        bench.close()
    res["targets"] = targets(res)
    res["env"] = _environment()
    text = json.dumps(res, indent=1)
    print(text)  # noqa: T201 - the command's output
    if getattr(args, "json", None):
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0 if lost == 0 and unanswered == 0 else 1


def targets(res: dict) -> dict:
    """Each budget with its measured value and whether it holds. The mirror's m2p p95 under sync load counts as
    unchanged when it differs from idle by no more than the idle rounds differ among themselves (or 5 %)."""
    out = {}
    for k in ("event_to_cloud_p99_ms", "alert_to_cloud_p99_ms", "command_rtt_p99_ms", "burst_rtt_p99_ms"):
        v = res.get(k)
        out[k] = {"value": v, "budget": TARGET_P99_MS, "ok": v is not None and v <= TARGET_P99_MS}
    v = res.get("command_rtt_p50_ms")
    out["command_rtt_p50_ms"] = {"value": v, "budget": TARGET_CMD_P50_MS, "ok": v is not None and v <= TARGET_CMD_P50_MS}
    idle = [x for x in res.get("m2p_p95_ms_rounds", {}).get("idle", []) if x is not None]
    if idle and res.get("m2p_p95_ms") is not None and res.get("m2p_p95_ms_idle") is not None:
        noise = max(max(idle) - min(idle), 0.05 * res["m2p_p95_ms_idle"])
        delta = res["m2p_p95_ms"] - res["m2p_p95_ms_idle"]
        out["m2p_p95_unchanged"] = {"delta_ms": round(delta, 2), "noise_ms": round(noise, 2), "ok": delta <= noise}
    return out
