"""Device commands: validated off the MQTT network thread, answered on `cmd_result/{name}` or the v5 response topic.

A command is ``{"id": str, "args": {...}}`` (``v`` and ``ts`` optional) on ``.../cmd/{name}``. Every command
gets a result ``{"id", "status": "ok"|"error", "reason", "result"}``; `id` is echoed (None when the request was
unreadable). Retained commands are refused, never executed. Non-JSON, oversized, deeply nested, unknown or
ill-typed requests get an error result. A repeated `id` of the same command (QoS 1 redelivery) is answered from a cache, not re-run.
A command older than its maximum age by the sender's `ts` (it waited at the broker while the device was offline), or
that far ahead of the device clock, is refused and not run (`max_age_s`, per command `max_ages`); the commands in
`SELF_AGED` judge their own age: their handlers read the `ts` from `current_request()`.
"""
from __future__ import annotations

import collections
import contextvars
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.core.events import CLOCK_SET
from edge.privacy.guard import check_result, refuse
from sync import payloads
from sync.payloads import PayloadError

log = logging.getLogger(__name__)

Handler = Callable[[dict], dict]


class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class PingArgs(_Args):
    echo: str | None = Field(None, max_length=256)


class SetLogLevelArgs(_Args):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"]
    logger: str = Field("", max_length=128)  # "" = root logger


class AckAlertArgs(_Args):
    event_id: str = Field(min_length=1, max_length=64)
    by: str = Field("", max_length=64)
    note: str = Field("", max_length=512)


class NoArgs(_Args):
    pass


class SnapshotArgs(_Args):
    """An anonymised still of a camera for staff (docs/PRIVACY.md): who asks and why are recorded; the device
    answers only when `[privacy] snapshots = true` and `by` is in `[privacy] snapshot_requesters`."""

    camera: str = Field("", max_length=64)  # "" = the main camera
    by: str = Field("", max_length=64)
    reason: str = Field("", max_length=256)


class ReloadConfigArgs(_Args):
    path: str = Field("", max_length=1024)


class ShelfReferenceArgs(_Args):
    """Retake the shelf reference after a restock: one facing id, or "" / "all" for every facing (of `camera`)."""

    facing: str = Field("", max_length=64)
    camera: str = Field("", max_length=64)  # "" = every camera
    by: str = Field("", max_length=64)


# Commands a device answers only on its own topic, never to a fleet or store broadcast (docs/PRIVACY.md).
DIRECT_ONLY = frozenset({"snapshot"})

# Argument schema per known command. Handlers receive the validated args as a dict.
SCHEMAS: dict[str, type[_Args]] = {"ping": PingArgs, "set_log_level": SetLogLevelArgs, "ack_alert": AckAlertArgs,
                                   "reload_config": ReloadConfigArgs, "snapshot": SnapshotArgs,
                                   "shelf_reference": ShelfReferenceArgs}

# default: a command older than this by its sender's `ts` (or this far ahead) is refused; a day, like model-update
# offers: a store device switched off overnight still runs what was sent in the evening
MAX_AGE_S = 86400.0
MAX_AGE_LIMIT_S = 30 * 86400.0  # the largest maximum age a setting may give
# Commands whose handlers judge the request's age themselves, so the router does not: `snapshot` (300 s, and the
# refusal is recorded in the decision log: edge/app/snapshots.py), `model_update` ([sync] update_offer_max_age_s),
# `model_rollback` (no age: a rollback of a version a rollout aborted is still wanted after an outage, and its
# version/rollout check refuses it once stale or replayed).
SELF_AGED = frozenset({"snapshot", "model_update", "model_rollback"})


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    v: int = 1
    id: str = Field(min_length=1, max_length=64)
    args: dict[str, Any] = {}
    ts: Annotated[float, Field(allow_inf_nan=False)] | None = None  # sender's clock, Unix seconds


class CommandError(Exception):
    """Raised by a handler to answer `error` with this reason."""


_request: contextvars.ContextVar[Request | None] = contextvars.ContextVar("sync_command_request", default=None)


def current_request() -> Request | None:
    """The validated request whose handler is running on this thread (`id`, `ts`: the sender's clock), else None."""
    return _request.get()


def duration(s: float, exact: bool = False) -> str:
    """`2.5 s`, `48.0 h` (exact: `2 s`, `24 h`, for a setting)."""
    v, unit = (s / 3600, "h") if s >= 3600 else (s, "s")
    return f"{v:g} {unit}" if exact else f"{v:.1f} {unit}"


def stale(ts: float, limit_s: float, what: str, again: str, *, now: float | None = None) -> str | None:
    """Why a request stamped `ts` by its sender is too old to act on (more than `limit_s` before this device's
    clock), or too far ahead of it (more than `limit_s`: one of the clocks is wrong, so its age cannot be trusted),
    else None. Clock skew up to `limit_s` either way passes. `what` names the request ("offer"), `again` says what
    to do ("offer it again if it is still wanted")."""
    age = (time.time() if now is None else now) - ts
    if age > limit_s:
        return (f"{what} expired: sent {duration(age)} ago, older than the {duration(limit_s, exact=True)} it stays "
                f"valid (it waited at the broker while the device was offline?); {again}")
    if -age > limit_s:
        return (f"{what} refused: its ts is {duration(-age)} ahead of this device's clock (more than the "
                f"{duration(limit_s, exact=True)} allowed): check NTP on the device and on the sender's host")
    return None


def check_max_ages(max_age_s: float, max_ages: dict[str, float]) -> None:
    """ValueError naming the setting when a maximum command age is out of range, or is given for a command this
    device does not know or one in SELF_AGED."""
    for key, v in [("command_max_age_s", max_age_s), *((f"command_max_ages.{k}", v) for k, v in max_ages.items())]:
        if not (isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= MAX_AGE_LIMIT_S):
            raise ValueError(f"{key} = {v!r}: use seconds > 0 and <= {MAX_AGE_LIMIT_S:g} (30 days)")
    for name in max_ages:
        if name not in SCHEMAS and name not in SELF_AGED:
            raise ValueError(f"command_max_ages.{name}: no such command (known: {', '.join(sorted(SCHEMAS))})")
        if name in SELF_AGED:
            own = {"model_update": "set [sync] update_offer_max_age_s",
                   "snapshot": "snapshot requests expire after 300 s (edge/app/snapshots.py)",
                   "model_rollback": "a rollback is judged by its version and rollout, not its age"}[name]
            raise ValueError(f"command_max_ages.{name}: {name} judges its own age ({own}); remove the key")


def unsupported(reason: str) -> Handler:
    def handler(args: dict) -> dict:
        raise CommandError(reason)
    return handler


@dataclass
class Incoming:
    """A command as it came off the wire (copied out of paho's message on the network thread)."""

    name: str
    payload: bytes
    retained: bool
    response_topic: str | None = None
    correlation: bytes | None = None
    broadcast: bool = False  # came on a fleet or store topic, not this device's own


Reply = Callable[[Incoming, bytes], None]  # publishes a result payload for this request


class CommandRouter:
    """Queues commands from the network thread and runs them on one worker thread, in order."""

    def __init__(self, device: str, store: str, handlers: dict[str, Handler], reply: Reply, *,
                 max_bytes: int = 16 << 10, max_depth: int = 8, queue_size: int = 10_000,
                 max_age_s: float = MAX_AGE_S, max_ages: dict[str, float] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        """max_age_s: the maximum age of a command by its sender's `ts`; max_ages: per command name, instead;
        clock: this device's wall clock."""
        check_max_ages(max_age_s, max_ages or {})
        self.device, self.store, self._clock = device, store, clock
        self.max_age_s, self.max_ages = float(max_age_s), dict(max_ages or {})
        self.handlers = dict(handlers)
        self._reply = reply
        self.max_bytes, self.max_depth = max_bytes, max_depth
        self._q: queue.Queue[Incoming | None] = queue.Queue(queue_size)
        # (command name, id) -> cached result: another command that reuses an id is run, not answered from the cache
        self._done: collections.OrderedDict[tuple[str, str], bytes] = collections.OrderedDict()
        self._thread: threading.Thread | None = None
        self.stats = {"received": 0, "ok": 0, "error": 0, "refused_busy": 0, "expired": 0}
        self._clock_warned = False

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sync-commands", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._q.put(None)
            self._thread.join(timeout)
            self._thread = None

    def submit(self, cmd: Incoming) -> None:
        """Called on the network thread: never blocks. A full queue answers `busy` right away."""
        self.stats["received"] += 1
        try:
            self._q.put_nowait(cmd)
        except queue.Full:
            self.stats["refused_busy"] += 1
            self._answer(cmd, None, False, "busy: command queue full", None)

    def _run(self) -> None:
        while True:
            cmd = self._q.get()
            if cmd is None:
                return
            try:
                self.handle(cmd)
            except Exception:  # a result could not even be built/published: log, keep serving
                log.exception("command %s failed", cmd.name)

    def handle(self, cmd: Incoming) -> None:
        """Validate, dispatch and answer one command (worker thread)."""
        cmd_id = None
        try:
            obj = payloads.decode(cmd.payload, max_bytes=self.max_bytes, max_depth=None)
            if isinstance(obj, dict) and isinstance(obj.get("id"), str) and 0 < len(obj["id"]) <= 64:
                cmd_id = obj["id"]  # known before the depth check, so a too-deep command still gets its answer
            payloads.check_depth(obj, self.max_depth)
            if cmd.retained:
                raise CommandError("retained commands are refused")
            if cmd.broadcast and cmd.name in DIRECT_ONLY:
                raise CommandError(f"refused: {cmd.name} is answered only when addressed to this device, "
                                   "not to the fleet or a store")
            try:
                req = Request.model_validate(obj)
            except ValidationError as e:
                raise CommandError(f"bad request: {_first_error(e)}") from None
            if (cmd.name, cmd_id) in self._done:  # QoS 1 redelivery or a client retry: same answer, no second run
                self._reply(cmd, self._done[(cmd.name, cmd_id)])
                return
            schema = SCHEMAS.get(cmd.name)
            handler = self.handlers.get(cmd.name)
            if handler is None:
                raise CommandError(f"unknown command {cmd.name!r}")
            args = req.args
            if schema is not None:
                try:
                    args = schema.model_validate(req.args).model_dump()
                except ValidationError as e:
                    raise CommandError(f"bad args: {_first_error(e)}") from None
            why = self._stale(cmd.name, req)
            if why is not None:  # answered, not run, and not cached: a fresh resend with this id still runs
                self.stats["expired"] += 1
                log.warning("%s (id %s)", why, cmd_id)
                self._answer(cmd, cmd_id, False, why, None, cache=False)
                return
            token = _request.set(req)
            try:
                data = handler(args)
            finally:
                _request.reset(token)
            if data is not None and not isinstance(data, dict):
                raise CommandError("handler returned a non-object result")
            self._answer(cmd, cmd_id, True, None, data)
        except (CommandError, PayloadError) as e:
            self._answer(cmd, cmd_id, False, str(e), None)
        except Exception as e:  # a handler bug is an error result, not a dead device
            log.exception("command %s handler raised", cmd.name)
            self._answer(cmd, cmd_id, False, f"handler failed: {type(e).__name__}: {e}", None)

    def _stale(self, name: str, req: Request) -> str | None:
        """Why this command is too old (or stamped too far ahead) to run, or None. A request without `ts` cannot
        be aged and runs (`edge sync send`, `edge fleet send` and `Requester` always stamp it)."""
        if name in SELF_AGED or req.ts is None:
            return None
        now = self._clock()
        if now < CLOCK_SET:  # this device's clock was never set (no RTC, NTP not reached): no age is known
            if not self._clock_warned:
                self._clock_warned = True
                log.warning("the device clock is not set (%s): commands run without an age check until it is "
                            "(check NTP)", time.strftime("%Y-%m-%d %H:%M", time.gmtime(now)))
            return None
        limit = self.max_ages.get(name, self.max_age_s)
        key = f"[sync] command_max_ages.{name}" if name in self.max_ages else "[sync] command_max_age_s"
        return stale(req.ts, limit, f"command {name}", f"send it again if it is still wanted (limit: {key})",
                     now=now)

    def _answer(self, cmd: Incoming, cmd_id: str | None, ok: bool, reason: str | None, data: dict | None, *,
                cache: bool = True) -> None:
        why = check_result(cmd.name, data) if data else None  # no image data in a result (docs/PRIVACY.md)
        if why is not None:
            refuse("cmd_result", f"cmd_result/{cmd.name}", why)
            ok, reason, data = False, f"result refused by the privacy guard: {why}", None
        try:
            raw = payloads.result(self.device, self.store, cmd.name, cmd_id, ok, reason=reason, data=data)
        except PayloadError as e:
            ok, raw = False, payloads.result(self.device, self.store, cmd.name, cmd_id, False, reason=str(e))
        self.stats["ok" if ok else "error"] += 1
        if cache and cmd_id is not None and not cmd.retained:
            self._done[(cmd.name, cmd_id)] = raw
            while len(self._done) > 1024:
                self._done.popitem(last=False)
        self._reply(cmd, raw)


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or "<root>"
    return f"{loc}: {err['msg']}"


def builtin_handlers(*, emit_ack: Callable[[dict], None] | None = None, started: float | None = None) -> dict[str, Handler]:
    """Handlers the device always has; the runtime may override any of them (reload_config, snapshot...)."""
    t0 = started or time.time()

    def ping(args: dict) -> dict:
        out: dict[str, Any] = {"pong": True, "uptime_s": round(time.time() - t0, 3)}
        if args.get("echo") is not None:
            out["echo"] = args["echo"]
        return out

    def set_log_level(args: dict) -> dict:
        logger = logging.getLogger(args["logger"] or None)
        logger.setLevel(args["level"])
        return {"logger": args["logger"] or "root", "level": args["level"]}

    def ack_alert(args: dict) -> dict:
        if emit_ack is None:
            raise CommandError("unsupported: no outbox to record the acknowledgement")
        emit_ack(args)
        return {"acknowledged": args["event_id"]}

    return {"ping": ping, "set_log_level": set_log_level, "ack_alert": ack_alert,
            "reload_config": unsupported("unsupported: this runtime has no config reload handler"),
            "snapshot": unsupported("unsupported: this runtime takes no snapshots (docs/PRIVACY.md)")}
