"""`edge run --config FILE`: source → pose → (try-on) → analytics events → outbox/MQTT, until stopped."""
from __future__ import annotations

import logging
import signal
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

DEMO_SCENE = {"tryon-mirror": "mirror", "kiosk": "mirror", "shelf-camera": "shelf"}


def add_arguments(p) -> None:
    p.add_argument("--config", required=True, help="device TOML (see device_configs/)")
    p.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0 = run until stopped)")
    p.add_argument("--duration", type=float, default=0.0, help="stop after S seconds (0 = run until stopped)")
    p.add_argument("--no-http", action="store_true", help="do not start the local HTTP server")
    p.add_argument("--reselect-backends", action="store_true",
                   help="forget cached backend='auto' choices and benchmark the backends again")


def run(args) -> int:
    from edge.app.config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        log.error("invalid config:\n%s", e)
        return 2
    for note in cfg.migrations:
        log.warning("%s: %s", args.config, note)
    from edge.app.doctor import unsuited_uses

    for note in unsuited_uses(cfg):
        log.warning("%s: %s", args.config, note)
    if getattr(args, "log_level", None) is None:  # an explicit `edge --log-level` wins over the config
        logging.getLogger().setLevel(cfg.logging.level)
    if args.reselect_backends:
        forget_auto_choices(cfg)
    from edge.app.service import take_notify_env

    rt = Runtime(cfg, config_path=args.config, http=not args.no_http, notify_env=take_notify_env())
    rt.owns_process = True  # the cold start counts from the process's start
    stop = threading.Event()

    def on_signal(signum, _frame) -> None:  # graceful stop: flush the outbox, publish offline (Runtime._shutdown)
        rt.stop_reason = rt.stop_reason or signal.Signals(signum).name
        stop.set()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    from edge.backends.base import BackendError
    from models.zoo import ModelNotBuilt

    try:
        return rt.run(stop, max_frames=args.max_frames, duration=args.duration)
    except StartError as e:
        log.error("cannot start: %s", e)
        return 2
    except (ModelNotBuilt, BackendError) as e:  # a model not built, damaged, or its backend not usable here
        log.error("cannot start: %s (`edge doctor --config %s` checks every model of the config)", e, args.config)
        return 2


RUN_LOCK_WAIT_S = 30.0  # a start waits this long for another holder of the run lock (a purge) before it gives up
ALERTS_OPEN_WAIT_S = 30.0  # an ack_alert that comes before the alert engines are open waits this long for them


def mirror_behind(mirror, reader, fps: float) -> bool:
    """The try-on mirror (after its first 30 frames) is below 95 % of the rate its camera delivers: `[source] fps`,
    or what the main reader sees the camera deliver where that is less (a camera slower at night: throttling the
    analytics cameras would not make it faster); a reader without drops delivers what is taken, so there it is fps."""
    from edge.app.streams import delivered_rate

    return mirror.frames_out > 30 and mirror.fps() < 0.95 * delivered_rate(fps, reader)


class StartError(RuntimeError):
    """`edge run` could not start (the message names the config key and the fix)."""


class _StopDuringStart(Exception):
    """A stop was requested before this start-up phase (the message)."""


def forget_auto_choices(cfg) -> None:
    from edge.backends.auto import default_cache_path
    from models.zoo import ModelZoo

    path = default_cache_path(ModelZoo(cfg.models.cache_dir or None))
    path.unlink(missing_ok=True)
    log.info("forgot cached backend choices (%s)", path)


def wants_behaviour(cfg) -> bool:
    """True when the device config asks for shopper analytics, shelf facings or alert rules (main camera or
    `[[cameras]]`)."""
    return bool(cfg.cameras) or main_has_analytics(cfg)


def main_has_analytics(cfg) -> bool:
    from edge.app.config import has_analytics

    return has_analytics(cfg.analytics)


class CountingSink:
    """Wraps an EventSink: counts events per kind for metrics and health."""

    def __init__(self, sink):
        from edge.core.monitoring import observe_event

        self.sink, self._observe, self.count = sink, observe_event, 0

    def emit(self, event) -> None:
        self.count += 1
        self._observe(event)  # edge_events_total and the business metrics
        self.sink.emit(event)


class PoseStage:
    """Pose plus presence events for one stream, then shopper behaviour (analytics and alerts) when configured:
    process(frame) -> PoseResult (None when pose is disabled)."""

    def __init__(self, pose, presence, behaviour=None):
        self.pose, self.presence, self.behaviour = pose, presence, behaviour
        self.monitor = None  # edge.app.monitor.RuntimeMonitor, set by Runtime.run
        self.watch = None  # observe(frame, result) of the analytics circuit breaker (edge.app.operations)
        self.last_wall = 0.0
        self.last_t: float | None = None  # stream time of the last frame (media time for recorded media)
        self.last_clock = "capture"
        self.keep_frame = False  # [privacy] snapshots: keep a reference to the newest frame for the snapshot command
        self.last_frame = None

    def process(self, frame):
        from edge.core.metrics import PEOPLE, STAGE_MS

        result = None
        if self.pose is not None:
            result = self.pose.process(frame)
            STAGE_MS.labels("pose").observe(sum(result.timings_ms.values()))
            PEOPLE.set(len(result.people))
            self.presence.update(result, frame.t_wall)
        self.last_wall, self.last_t, self.last_clock = frame.t_wall, frame.t, frame.clock
        if self.keep_frame:
            self.last_frame = frame
        if self.behaviour is not None:
            t0 = time.perf_counter()
            self.behaviour.process(frame, result)
            STAGE_MS.labels("analytics").observe((time.perf_counter() - t0) * 1e3)
        if self.monitor is not None:
            self.monitor.observe_pose(frame, result, self.pose)
        if self.watch is not None:
            self.watch(frame, result)
        return result

    def swap_pose(self, fresh) -> None:
        """Use a freshly loaded pipeline from the next frame on (after a model update); the old one may still be
        finishing a frame on the pipeline thread, so it is left to the garbage collector."""
        self.pose = fresh

    def close(self) -> None:
        """People still present leave when the run ends, so every entered event has its left event."""
        if self.behaviour is not None:
            self.behaviour.close()
        if self.pose is None:
            return
        from edge.pose.types import PoseResult

        if self.last_t is None:  # no frame was processed
            self.presence.update(PoseResult(-1, time.monotonic(), (0, 0)), time.time())
        else:  # on the stream clock, so dwell times of recorded media stay media durations
            self.presence.update(PoseResult(-1, self.last_t, (0, 0), clock=self.last_clock), self.last_wall)
        self.pose.close()


class ReaderFrames:
    """Iterate a LatestFrameReader until `done()` or the source ends (the mirror's capture stage)."""

    def __init__(self, reader, done):
        self.reader, self.done = reader, done

    def __iter__(self):
        while not self.done():
            frame = self.reader.get(timeout=0.5)
            if frame is not None:
                yield frame
            elif self.reader.ended:
                return


class Runtime:
    """Wires the configured parts together; data flows one way."""

    def __init__(self, cfg, *, config_path: str | None = None, http: bool = True, notify_env: dict | None = None):
        self.cfg = cfg
        self.notify_env = notify_env or {}  # NOTIFY_SOCKET / WATCHDOG_USEC of systemd (edge run passes them)
        self.service = None  # edge.app.service.ServiceSupervisor while running
        self.stop_reason: str | None = None  # e.g. the signal that stopped the run
        self.owns_process = False  # `edge run`: this runtime is the process (set by run())
        self.config_path = config_path
        self.want_http = http and cfg.http.enabled
        self.last_frame_t: float | None = None
        self.fps = 0.0
        self.frames = 0
        self.frame_errors, self.last_frame_error, self._frame_error_logged = 0, None, -1e9  # frames skipped (raised)
        self.sync = None
        self.reader = None
        self.http = None
        self.stage = None
        self.streams = None  # extra cameras ([[cameras]])
        self._people = None  # the shared person detector (main camera and extra cameras)
        self._people_lock = threading.Lock()
        self._meter = None  # RateMeter while running
        self.mirror = None  # the try-on pipeline while running
        self.ops = None  # edge.app.operations.Operations while running: decision log, circuit breakers
        self.monitor = None  # edge.app.monitor.RuntimeMonitor while running
        self.snapshots = None  # edge.app.snapshots.Snapshots (the `snapshot` command)
        self.retention = None  # edge.app.data_cli.RetentionLoop while running ([privacy] retention)
        self._engines: dict = {}  # camera id (None: main) -> its AlertEngine, open before the models load
        self._alerts_open = threading.Event()  # set once _open_alert_engines ran (acks wait for it)

    # -- commands from the cloud -------------------------------------------------------------
    def _cmd_ack_alert(self, args: dict) -> dict:
        """`ack_alert` from the cloud: the same transition as the staff page's Acknowledge button."""
        from edge.alerts import ack_command_handler
        from sync.commands import CommandError

        self._alerts_open.wait(ALERTS_OPEN_WAIT_S)  # sync starts first: a queued ack may come before the engines
        engines = self._alert_engines()
        if engines is None:
            raise CommandError("not ready: the alert engines have not started")
        return ack_command_handler(engines, error=CommandError)(args)

    def _planograms(self) -> dict:
        """camera id -> shelf facings object, over the main camera and the extra cameras."""
        out = {}
        behaviours = [self.stage.behaviour] if self.stage is not None and self.stage.behaviour is not None else []
        behaviours += [s.behaviour for s in self.streams.streams] if self.streams is not None else []
        for b in behaviours:
            out.update(b.analytics.planograms)
        return out

    def _cmd_shelf_reference(self, args: dict) -> dict:
        """`shelf_reference` from the cloud: retake the restock reference of one facing or all of a camera."""
        from edge.analytics.facings import shelf_reference_handler
        from sync.commands import CommandError

        return shelf_reference_handler(self._planograms, error=CommandError)(args)

    def _retake_reference(self, facing=None, *, by: str = "", via: str = "page") -> list[str]:
        """The staff page's "Retake reference" button: the facing's camera retakes it (None: every facing); KeyError
        (the page answers 404) for a facing no camera has."""
        planograms = self._planograms()
        if facing is not None and not any(facing in p.facings for p in planograms.values()):
            known = ", ".join(fid for p in planograms.values() for fid in p.facings)
            raise KeyError(f"no facing {facing!r} on this device (facings: {known or 'none'})")
        pending: list[str] = []
        for p in planograms.values():
            if facing is None or facing in p.facings:
                pending += p.retake_reference(facing, by=by, via=via)
        return pending

    def _alert_engines(self):
        """The alert engine of the main camera, or a group of it and the extra cameras' engines; None if none."""
        main, cams = self._engines.get(None), [e for k, e in self._engines.items() if k is not None]
        if not cams:
            return main
        from edge.app.streams import EngineGroup

        return EngineGroup([main, *cams], config=self.cfg.alerts)

    def _open_alert_engines(self, sink) -> None:
        """The alert engines, restored from their state files, before the models load: an ack the cloud queued
        while the device was down finds its alert at once. A state file of a camera or a main [analytics] the
        config no longer has is resolved (`rule_removed`) and removed, so the cloud closes its alerts."""
        from edge.alerts import AlertEngine, AlertsConfig
        from edge.app.behaviour import alert_state_path, open_alert_engine

        cfg = self.cfg
        try:
            opened = [(None, cfg.alerts, self.ops.analytics_sink(sink))] if main_has_analytics(cfg) else []
            opened += [(cam.id, cam.alerts, sink) for cam in cfg.cameras]
            mine = set()  # the state files of the engines opened here
            for camera, alerts, to in opened:
                self._engines[camera] = open_alert_engine(cfg, alerts, to, camera)
                if (path := alert_state_path(cfg, alerts, camera)) is not None:
                    mine.add(path.resolve())
            folder = alert_state_path(cfg, AlertsConfig()).parent
            dev = cfg.device.id
            for orphan in sorted([*folder.glob(f"alert-state-{dev}.json"), *folder.glob(f"alert-state-{dev}.*.json")]):
                if orphan.resolve() not in mine:
                    log.warning("alert state %s belongs to no camera of this config: its alerts are resolved",
                                orphan)
                    AlertEngine(AlertsConfig(), sink, state_path=orphan)  # no rules: every alert is resolved
                    orphan.unlink(missing_ok=True)
        finally:
            self._alerts_open.set()

    def _live_counts(self) -> dict:
        """Live counts for the staff page: the main camera's, and each extra camera's under `cameras`."""
        main = self.stage.behaviour if self.stage is not None and self.stage.behaviour is not None else None
        out = main.live() if main is not None else {}
        if self.streams is not None:
            out["cameras"] = {s.id: s.behaviour.live() for s in self.streams.streams}
        return out

    def _cmd_reload_config(self, args: dict) -> dict:
        from edge.app.config import ConfigError, load_config

        if not self.config_path:
            return {"status": "error", "reason": "runtime was not started from a config file"}
        try:
            new = load_config(self.config_path)
        except ConfigError as e:
            if self.ops is not None:
                self.ops.reload_recorded(self.config_path, {"status": "error", "reason": str(e)})
            return {"status": "error", "reason": str(e)}
        logging.getLogger().setLevel(new.logging.level)
        self.cfg.logging = new.logging
        result = {"status": "ok", "applied": ["logging"], "note": "other sections apply on restart"}
        if self.ops is not None:
            self.ops.reload_recorded(self.config_path, result)
        return result

    def _start_model_updates(self, stage):
        """The OTA agent; an activated pose model is reloaded and must run before the update counts as healthy."""
        from models.zoo import ModelZoo
        from sync.model_update import ModelUpdateAgent, UpdateOptions

        cfg = self.cfg

        def on_activated(name: str, version: str) -> bool:
            if stage.pose is None or name not in (cfg.models.pose_detector.name, cfg.models.pose_landmarks.name):
                return True
            fresh = self.ops.open_pose(ModelZoo(cfg.models.cache_dir or None),
                                       why=f"model update {name} {version} activated")
            fresh.tracker.step(np.zeros((cfg.source.height, cfg.source.width, 3), np.uint8), time.monotonic())
            stage.swap_pose(fresh)
            log.info("pose now runs %s %s", name, version)
            return True

        from edge.app.shadow import RuntimeShadow

        opts = UpdateOptions.from_sync_config(cfg.sync)
        opts.shadow = cfg.shadow  # updates run beside the live models before activation (docs/MODEL_UPDATES.md)
        return ModelUpdateAgent(cfg.device, ModelZoo(cfg.models.cache_dir or None), self.sync, on_activated,
                                opts, shadow=RuntimeShadow(self),
                                offer_max_age_s=cfg.sync.update_offer_max_age_s).start()

    def _guard_boot(self) -> None:
        """Before any model loads: count this start against a model update swapped in and never health-checked,
        and go back to the previous version after MAX_CHECK_ATTEMPTS such starts (a version that kills the
        process on load must not crash-loop the device; sync.update_installer.ModelStore.guard_boot)."""
        from models.zoo import ModelZoo
        from sync.update_installer import ModelStore

        try:
            back = ModelStore(ModelZoo(self.cfg.models.cache_dir or None)).guard_boot()
        except OSError as e:
            log.warning("model update boot check skipped: %s", e)
            return
        for name in back:
            log.error("model %s: back on its previous version (the update crashed the runtime on every start)", name)

    def health(self) -> tuple[bool, dict]:
        age = None if self.last_frame_t is None else time.monotonic() - self.last_frame_t
        src_err = self.reader.error if self.reader else None
        ok = src_err is None and age is not None and age < 5.0
        errors, last_error = self.frame_errors, self.last_frame_error
        if self.mirror is not None:  # mirror mode: pose runs on the mirror's pose thread, which counts its own
            errors += self.mirror.frame_errors
            last_error = self.mirror.last_frame_error or last_error
        body = {"status": "ok" if ok else "degraded", "device": self.cfg.device.id, "kind": self.cfg.device.kind,
                "frames": self.frames, "fps": round(self.current_fps(), 1), "last_frame_age_s": age,
                "source_error": src_err, "frame_errors": errors, "last_frame_error": last_error}
        if self.sync is not None:
            body["sync"] = self.sync.metrics()
        if self.streams is not None:
            body["streams"] = self.streams.health()
            if any(v["state"] == "error" for v in body["streams"].values()):
                body["status"] = "degraded"
        if self.ops is not None:
            body.update(self.ops.health())  # circuits; an open one degrades the status, not liveness
            if body["degraded"]:
                body["status"] = "degraded"
        if self.service is not None:
            body["service"] = self.service.health()  # cold start, watchdog, stalled streams, RSS
            if body["service"]["stalled"]:
                body["status"] = "degraded"
        return ok, body

    def run(self, stop: threading.Event, *, max_frames: int = 0, duration: float = 0.0) -> int:
        """Run until `stop` is set or after `max_frames` frames / `duration` s; returns the exit status (0, or
        EXIT_RSS_BUDGET), 2 if the source cannot be opened. A stop set while starting ends the start at its next
        phase (while waiting for the run lock: at once, nothing opened); a start that fails stops what it started
        and raises."""
        from edge.core.http_server import RateMeter

        from edge.app.operations import Operations
        from edge.app.service import ServiceSupervisor, apply_openvino_cache

        cfg = self.cfg
        try:
            self._take_run_lock(stop)
        except _StopDuringStart:  # SIGTERM while a purge holds the lock: a stop, nothing was opened
            self.stop_reason = self.stop_reason or "stop requested"
            log.info("stop requested while waiting for the run lock (%s): nothing was started", self.stop_reason)
            return 0
        try:
            apply_openvino_cache(cfg)
        except BaseException:
            self._run_lock.release()
            raise
        self._t_run = time.monotonic()
        self.service = ServiceSupervisor(cfg.service, self._progress, stop, env=self.notify_env,
                                         status=self._status_line, process_start=self.owns_process,
                                         lost=self._lost_sources).start()
        try:
            collector, sink = self._open_sync()
        except (OSError, sqlite3.Error, ValueError) as e:  # outbox file, TLS / password files: `edge doctor` names them
            self._abandon_sync_start()
            raise StartError(f"cannot start sync: {type(e).__name__}: {e} (check [sync] outbox_path, ca_file, "
                             "cert_file, key_file and password_file; `edge doctor` names the problem)") from e
        self.ops = Operations(cfg, sink).open()
        self._open_alert_engines(sink)
        source = self._open_source()
        if source is None:
            collector.unregister()
            self.sync.stop()
            self.ops.close()
            self.service.close()
            self._run_lock.release()
            return 2
        self.ops.start_summary(self.sync.outbox.emit)
        self._start_retention()
        stage = mirror = updates = None
        ota = bool(cfg.sync.broker and cfg.sync.model_updates)  # model updates over MQTT

        def phase(what: str) -> None:  # a stop requested while starting (SIGTERM during a model load) ends it here
            if stop.is_set():
                raise _StopDuringStart(what)
            self.service.starting(what)
        try:
            phase("loading models")
            if ota:
                self._guard_boot()
            stage = self.stage = self._build_pose_stage(sink, source.name)
            updates = self._start_model_updates(stage) if ota else None
            phase("try-on renderer and cameras")
            mirror = self._build_mirror(stage, sink)
            self._build_streams(sink, mirror)
            from edge.app.monitor import RuntimeMonitor

            self.mirror, self.monitor = mirror, RuntimeMonitor(self).start(source.name)
            stage.monitor = self.monitor
            self._start_http(mirror)
            phase("waiting for the first frame")
            self._start_reader(source)
            if self.streams is not None:
                self.streams.start()
        except _StopDuringStart as e:
            self.stop_reason = self.stop_reason or self.service.stop_reason or "stop requested"
            log.info("stop requested while starting: skipped %r and what follows", str(e))
            self.service.stopping(self.stop_reason)
            self._shutdown(mirror, stage, updates, collector)
            return self.service.exit_code
        except BaseException as e:  # a start that fails still stops cleanly: outbox flushed, offline published
            self.stop_reason = f"start failed: {type(e).__name__}: {e}"[:300]
            self.service.stopping(self.stop_reason)
            self._shutdown(mirror, stage, updates, collector)
            raise
        self._meter, t0 = RateMeter(), time.monotonic()
        log.info("running %s (%s) from %s", cfg.device.id, cfg.device.kind, source.name)

        def done() -> bool:
            return stop.is_set() or bool(max_frames and self.frames >= max_frames) or bool(
                duration and time.monotonic() - t0 >= duration)

        try:
            if mirror is not None:
                self._mirror_loop(mirror, source.name, done)
            else:
                self._pose_loop(stage, source.name, done)
        finally:
            self.stop_reason = self.stop_reason or self.service.stop_reason or (
                "stop requested" if stop.is_set() else "frame or time limit reached, or the source ended")
            self.service.stopping(self.stop_reason)
            self._shutdown(mirror, stage, updates, collector)
        log.info("stopped after %d frames; %d events to the outbox", self.frames, sink.count)
        return self.service.exit_code

    def _progress(self) -> dict:
        """For the watchdog: stream -> monotonic time of its last processed frame (None: none yet); the main camera
        (shown frames: the mirror's, or the pose loop's) and every extra camera whose source has not ended."""
        out = {}
        if self.reader is not None and not self.reader.ended:
            out["main"] = self.last_frame_t
        if self.streams is not None:
            out.update(self.streams.progress())
        return out

    def _lost_sources(self) -> dict[str, str]:
        """For the watchdog: stream -> its reader's error while the reader knows its source is lost and reconnects
        (a restart cannot bring a camera back: `source lost`, not a stall)."""
        out = {}
        if self.reader is not None and (err := self.reader.lost()):
            out["main"] = err
        if self.streams is not None:
            out.update(self.streams.lost())
        return out

    def _status_line(self) -> str:
        """The STATUS= line systemd shows (`systemctl status`)."""
        line = f"running: {self.current_fps():.1f} fps, {self.frames} frames"
        if self.streams is not None:
            line += ", cameras " + " ".join(f"{k} {v['fps']:g}" for k, v in self.streams.health().items())
        if self.sync is not None:
            m = self.sync.metrics()
            line += f"; outbox {sum(m.get('depth', {}).values())}, mqtt {'up' if m.get('connected') else 'down'}"
        return line

    # -- the steps of run() ------------------------------------------------------------------
    def _open_sync(self):
        """Start the sync service; returns its metrics collector and the counting sink over its outbox."""
        from edge.core.metrics import SyncCollector
        from sync.service import SyncService

        cfg = self.cfg
        commands = {"reload_config": self._cmd_reload_config}
        if wants_behaviour(cfg):  # acks from the cloud go to this device's alert engine
            commands["ack_alert"] = self._cmd_ack_alert
            commands["shelf_reference"] = self._cmd_shelf_reference
        from edge.app.snapshots import Snapshots

        self.snapshots = Snapshots(cfg, lambda: self.stage.last_frame if self.stage is not None else None)
        commands["snapshot"] = self.snapshots.handle  # anonymised, only when [privacy] allows it (docs/PRIVACY.md)
        self.sync = SyncService(cfg.device, cfg.sync, commands=commands)
        self.sync.start()
        return SyncCollector(self.sync).register(), CountingSink(self.sync.outbox)

    def _abandon_sync_start(self) -> None:
        """Undo a sync start that failed: stop what it started, close the service, release the run lock."""
        if self.sync is not None:
            try:
                self.sync.stop(flush_timeout_s=0)
            except Exception:  # noqa: BLE001 - half started: what can be stopped is
                log.debug("stopping a half-started sync failed", exc_info=True)
        self.service.close()
        self._run_lock.release()

    def _take_run_lock(self, stop: threading.Event) -> None:
        """Take the device's run lock before anything opens its outbox: it keeps `edge data purge` and a second
        `edge run` on the same data out. A holder is waited for up to RUN_LOCK_WAIT_S (a purge is short), then
        StartError names it; a stop requested meanwhile raises _StopDuringStart."""
        from edge.app.data_cli import RunLock, lock_path

        self._run_lock = RunLock(lock_path(self.cfg))
        deadline, told = time.monotonic() + RUN_LOCK_WAIT_S, False
        while not self._run_lock.acquire():
            if stop.is_set():
                raise _StopDuringStart("waiting for the run lock")
            if time.monotonic() >= deadline:
                raise StartError(f"another process (pid {self._run_lock.holder()}) holds {self._run_lock.path}: a "
                                 "second `edge run` on this device's data, or an `edge data purge` still running; "
                                 "stop it, or give this device its own [sync] outbox_path")
            if not told:
                told = True
                log.warning("waiting up to %.0f s for pid %s to release %s (an `edge data purge`?)",
                            RUN_LOCK_WAIT_S, self._run_lock.holder(), self._run_lock.path)
            time.sleep(0.5)

    def _start_retention(self) -> None:
        """[privacy] retention on the running device (the run lock, taken at the start, keeps purges out)."""
        from edge.app.data_cli import RetentionLoop

        self.retention = RetentionLoop(self.sync.outbox, self.cfg.privacy).start()

    def _open_source(self):
        """The configured frame source, or None (logged) if it cannot be opened."""
        from edge.sources import SourceError, make_source

        cfg = self.cfg
        try:
            return make_source(cfg.source, demo_scene=DEMO_SCENE[cfg.device.kind])
        except SourceError as e:
            log.error("%s", e)
            return None

    def _build_pose_stage(self, sink, source_name: str) -> PoseStage:
        """Pose plus presence events (both None when [pose] is off); the loaded models go into the device state."""
        cfg = self.cfg
        pose = presence = None
        if cfg.pose.enabled:
            from edge.pose.events import PresenceTracker
            from edge.pose.pipeline import default_zoo

            pose = self.ops.open_pose(default_zoo(cfg.models))
            presence = PresenceTracker(sink, source=source_name)
            self.sync.set_state(models={s.info.backend + ":" + Path(s.info.path).name: s.info.precision
                                        for s in pose.sessions})
        behaviour = None
        if main_has_analytics(cfg):
            from edge.app.behaviour import BehaviourStage
            from edge.app.config import blind_analytics

            if blind := blind_analytics(cfg):
                log.warning("%s", blind)

            sessions = list(pose.sessions) if pose is not None else []
            detector = self._person_detector()
            if detector is not None:
                sessions.append(self._people.session)
            models = {Path(s.info.path).name: f"{s.info.backend}/{s.info.precision}" for s in sessions}
            behaviour = BehaviourStage.from_config(cfg, self.ops.analytics_sink(sink), source=source_name,
                                                   detector=detector, models=models, engine=self._engines.get(None),
                                                   frame_size=(cfg.source.width, cfg.source.height))
        stage = PoseStage(pose, presence, behaviour)
        stage.keep_frame = cfg.privacy.snapshots
        if behaviour is not None:
            stage.watch = self.ops.watch_behaviour(behaviour)
        return stage

    def _person_detector(self):
        """detect(frame) -> Detections of the shared person detector (opened once; None when not configured).
        Calls are serialised: the main camera and the extra cameras' worker share one session."""
        cfg = self.cfg
        if cfg.models.person_detector is None:
            return None
        if self._people is None:
            from edge.people import open_detector
            from models.zoo import ModelZoo

            zoo = ModelZoo(cfg.models.cache_dir or None)
            self._people = open_detector(zoo, cfg.models.person_detector, **cfg.people.model_dump())
            self._people.session = self.ops.guard(zoo, "person_detector", cfg.models.person_detector,
                                                  self._people.session)
            info = self._people.session.info
            log.info("person detector: %s %s/%s", cfg.models.person_detector.name, info.backend, info.precision)

        def detect(frame):
            with self._people_lock:
                dets = self._people.frame_detections(frame)
            if self.monitor is not None:
                self.monitor.observe_detections(frame, dets, self._people.session)
            return dets
        return detect

    def _build_streams(self, sink, mirror) -> None:
        """The extra cameras ([[cameras]]), served by one worker over the shared detector (started later)."""
        if not self.cfg.cameras:
            return
        from edge.app.streams import StreamSet

        detect = self._person_detector()
        info = self._people.session.info
        models = {Path(info.path).name: f"{info.backend}/{info.precision}"}
        yield_to = None
        if mirror is not None:  # mixed criticality: analytics are throttled while the mirror is below its frame rate
            yield_to = lambda: mirror_behind(mirror, self.reader, self.cfg.source.fps)  # noqa: E731

        def detect_batch(frames):  # frames due together on several cameras: one batched detector call
            with self._people_lock:
                out = self._people.frame_detections_batch(frames)
            if self.monitor is not None:
                for frame, dets in zip(frames, out):
                    self.monitor.observe_detections(frame, dets, self._people.session)
            return out
        self.streams = StreamSet.from_config(self.cfg, detect, sink, models=models, yield_to=yield_to,
                                             detect_batch=detect_batch, max_batch=self._people.max_batch,
                                             engines={k: e for k, e in self._engines.items() if k is not None})

    def _build_mirror(self, stage: PoseStage, sink):
        """The try-on mirror over the pose stage (its source is attached when the loop starts), or None."""
        if not self.cfg.tryon.enabled:
            return None
        from edge.tryon.pipeline import TryOnPipeline

        mirror = TryOnPipeline(self.cfg.tryon, source=(), pose=stage, sink=sink, breaker=self.ops.mirror_breaker(),
                               hint=self.cfg.breaker.mirror_hint)
        if self.cfg.tryon.gestures.enabled:
            from edge.backends.base import BackendError
            from models.zoo import ModelNotBuilt

            try:
                mirror.attach_gestures(self.cfg.models)
            except (ModelNotBuilt, BackendError, OSError, ValueError) as e:  # the mirror still works by touch
                mirror.gestures_error = f"{type(e).__name__}: {e}"
                log.error("gestures off: the hand models do not open (%s); the mirror works by touch. Fix: "
                          "`edge models build` (or [tryon.gestures] enabled = false)", mirror.gestures_error)
        return mirror

    def _start_http(self, mirror) -> None:
        """The local HTTP server (health, metrics, preview, the mirror page when there is a mirror), if wanted."""
        if not self.want_http:
            return
        from edge.core.http_server import LocalHttpServer

        cfg = self.cfg
        try:
            self.http = LocalHttpServer(cfg.http.host, cfg.http.port, self.health, preview=cfg.http.preview)
        except OSError as e:
            raise StartError(f"{self.config_path or '<config>'}: http.port: cannot serve on {cfg.http.host}:"
                             f"{cfg.http.port} ({e.strerror or e}) (fix: stop what uses that port, set [http] port "
                             "to a free one, or enabled = false)") from e
        if self.ops.log is not None:
            from edge.core.decisions import decisions_route

            self.http.add("/decisions", decisions_route(self.ops.folder))
        if mirror is not None:
            from edge.tryon.server import make_mirror_routes

            self.http.add_method_routes(make_mirror_routes(mirror, notice=cfg.privacy.shopper_notice), home="/mirror")
        from edge.privacy.notice import make_notice_routes

        self.http.add_method_routes(make_notice_routes(cfg.privacy, kiosk=cfg.device.kind == "kiosk"))
        engines = self._alert_engines()
        if engines is not None:
            from edge.alerts.server import make_staff_routes

            retake = self._retake_reference if self._planograms() else None
            self.http.add_method_routes(make_staff_routes(engines, live=self._live_counts, retake_reference=retake),
                                        home=None if mirror is not None else "/staff")
        self.http.start()

    def _start_reader(self, source) -> None:
        """Read the source on its own thread; live sources drop stale frames, files and demos deliver every frame."""
        from edge.sources import LatestFrameReader

        cfg = self.cfg
        live = cfg.source.type in ("camera", "rtsp") or cfg.source.realtime  # else: every frame, no drops
        self.reader = LatestFrameReader(source, cfg.source.reconnect_s, drop=live).start()

    def _tick(self, source_name: str) -> None:
        """Count one shown frame: frame count, FPS, source metrics."""
        from edge.core.metrics import FRAMES, FRAMES_DROPPED

        self.frames += 1
        self.last_frame_t = time.monotonic()
        if self.frames == 1 and self.service is not None:
            self.service.ready()  # READY=1: the first frame went through the whole pipeline
        self.fps = self._meter.tick()
        FRAMES.labels(source_name).inc()
        FRAMES_DROPPED.labels(source_name).set(self.reader.dropped)
        self._gauges(source_name)

    def current_fps(self) -> float:
        """Frames shown per second over the last second (0 once frames stop, not the last rate seen)."""
        if self.last_frame_t is None or time.monotonic() - self.last_frame_t > 1.0:
            return 0.0
        return self.fps

    def _gauges(self, source_name: str) -> None:
        """Source up (not while it has an error) and FPS (0 once frames stop): at each frame and each empty wait."""
        from edge.core.metrics import FPS, SOURCE_UP

        SOURCE_UP.labels(source_name).set(0 if self.reader.error else 1)
        FPS.labels(self.cfg.device.kind).set(self.current_fps())

    def _mirror_loop(self, mirror, source_name: str, done) -> None:
        """Show the mirror's composited frames; capture, pose, render and composite overlap on its own threads."""
        mirror.source = ReaderFrames(self.reader, done)
        mirror.start()
        seq = -1
        while not done():
            out = mirror.wait_frame(seq, timeout=0.5)
            if out is None:
                self._gauges(source_name)
                if mirror.source_ended.is_set():
                    break
                continue
            seq = out.seq
            if self.http is not None and self.http.preview.watched:
                self.http.preview.publish(out.image)
            self._tick(source_name)

    def _pose_loop(self, stage: PoseStage, source_name: str, done) -> None:
        """Pose (and presence events) on each frame on this thread; the preview shows the skeleton."""
        while not done():
            frame = self.reader.get(timeout=0.5)
            if frame is None:
                self._gauges(source_name)
                if self.reader.ended:
                    log.info("source ended")
                    break
                continue
            try:
                result = stage.process(frame)
            except Exception as e:  # noqa: BLE001 - a bad frame (backend error, open circuit) must not stop the device
                self._frame_failed(frame, e)
                continue
            if self.http is not None and self.http.preview.watched:  # drawn only for someone watching it
                self.http.preview.publish(annotate(frame.image, result))
            self._tick(source_name)

    def _frame_failed(self, frame, err: Exception) -> None:
        """Skip a frame whose processing raised: counted (`edge_frame_errors_total`, `/healthz` frame_errors), logged
        with its traceback at most every 10 s. A fault on every frame stops the frame ticks, so health turns
        degraded and the watchdog sees no progress."""
        from edge.core.metrics import FRAME_ERRORS

        self.frame_errors += 1
        self.last_frame_error = f"{type(err).__name__}: {err}"[:300]
        FRAME_ERRORS.labels(type(err).__name__).inc()
        now = time.monotonic()
        if now - self._frame_error_logged >= 10.0:
            self._frame_error_logged = now
            log.exception("frame %s skipped: its processing raised (%d frames skipped so far)", frame.seq,
                          self.frame_errors)

    def _shutdown(self, mirror, stage: PoseStage, updates, collector) -> None:
        """Stop what run() started: the mirror and the reader first, the sync service last. A step that raises is
        logged and the others still run, so the outbox is flushed and the offline state published whatever failed."""
        def given(part, method: str):
            return None if part is None else getattr(part, method)
        steps = (("mirror", given(mirror, "stop")), ("cameras", given(self.streams, "stop")),
                 ("reader", given(self.reader, "stop")), ("pose stage", given(stage, "close")),
                 ("model updates", given(updates, "stop")), ("http", given(self.http, "stop")),
                 ("monitor", given(self.monitor, "close")), ("metrics", collector.unregister),
                 ("summary", self.ops.close_summary),
                 ("retention", None if self.retention is None else self._stop_retention),
                 ("snapshots", given(self.snapshots, "close")), ("sync", self._stop_sync),
                 ("operations", self.ops.close), ("service", self.service.close))
        for what, step in steps:
            if step is None:
                continue
            try:
                step()
            except Exception:  # noqa: BLE001 - one part that fails to stop must not keep the outbox from flushing
                log.exception("graceful stop: stopping the %s failed; the stop goes on", what)

    def _stop_retention(self) -> None:
        """Stop the retention task, waiting up to 3 x its join_s for a purge in progress (the outbox closes next);
        the run lock (which keeps `edge data purge` out) is released only once no purge of ours is still running,
        else it goes with the process."""
        if any(self.retention.stop() for _ in range(3)):
            self._run_lock.release()
        else:
            log.warning("graceful stop: a retention purge is still running; the run lock stays held until it ends "
                        "or the process exits")

    def _stop_sync(self) -> None:
        """Graceful stop of sync: the outbox gets `[service] stop_flush_s` to reach the broker and cloud (ack
        watermark), then the retained offline state is published (SyncService.stop); what is left stays in the
        outbox for the next start. Recorded in the decision log."""
        from edge.core import decisions

        t0, flush_s = time.monotonic(), self.cfg.service.stop_flush_s
        before = sum(self.sync.outbox.depth().values())
        online = self.sync.client is not None and self.sync.client.connected  # SyncService.stop publishes offline
        self.sync.stop(flush_timeout_s=flush_s)
        left = sum(self.sync.outbox.depth().values())
        took = time.monotonic() - t0
        msg = (f"outbox {before} -> {left} undelivered in {took:.2f} s" + (
            ", offline state published" if online else ", broker not connected: offline state not published"
            if self.cfg.sync.broker else ", no broker configured"))
        (log.warning if left and online else log.info)("graceful stop: %s%s", msg,
                                                       "; the rest goes out at the next start" if left else "")
        decisions.record("service", "stop", {"reason": self.stop_reason, "processed": self.frames,
                                             "undelivered_before": before, "undelivered_after": left,
                                             "flush_s": round(took, 3), "flush_limit_s": flush_s,
                                             "exit_status": self.service.exit_code if self.service else 0},
                         reason=f"stopped ({self.stop_reason or 'run ended'}): {msg}")


SKELETON = ((11, 12), (11, 13), (13, 15), (12, 14), (14, 16), (11, 23), (12, 24), (23, 24), (23, 25), (25, 27),
            (24, 26), (26, 28), (0, 11), (0, 12))


def annotate(image, result):
    """Local preview only: skeleton and track ids over the frame."""
    import cv2

    if result is None or not result.people:
        return image
    img = image.copy()
    for p in result.people:
        pts = np.clip(p.landmarks[:, :2], -1e4, 1e4).astype(int)  # a broken model's 1e12 must not end the run
        vis = p.landmarks[:, 3] > 0.5
        for a, b in SKELETON:
            if vis[a] and vis[b]:
                cv2.line(img, tuple(pts[a]), tuple(pts[b]), (0, 255, 0), 2)
        cv2.putText(img, f"#{p.track_id}", tuple(pts[0] + [0, -12]), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 255), 2)
    return img
