"""Device commands: validated off the MQTT network thread, answered on `cmd_result/{name}` or the v5 response topic.

A command is ``{"id": str, "args": {...}}`` (``v`` and ``ts`` optional) on ``.../cmd/{name}``. Every command
gets a result ``{"id", "status": "ok"|"error", "reason", "result"}``; `id` is echoed (None when the request was
unreadable). Retained commands are refused, never executed. Non-JSON, oversized, deeply nested, unknown or
ill-typed requests get an error result. A repeated `id` of the same command (QoS 1 redelivery) is answered from a cache, not re-run.
A handler that needs the sender's `ts` (e.g. to refuse an offer that waited days in an offline device's session)
reads it from `current_request()`.
"""
from __future__ import annotations

import collections
import contextvars
import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

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


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    v: int = 1
    id: str = Field(min_length=1, max_length=64)
    args: dict[str, Any] = {}
    ts: float | int | None = None


class CommandError(Exception):
    """Raised by a handler to answer `error` with this reason."""


_request: contextvars.ContextVar[Request | None] = contextvars.ContextVar("sync_command_request", default=None)


def current_request() -> Request | None:
    """The validated request whose handler is running on this thread (`id`, `ts`: the sender's clock), else None."""
    return _request.get()


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
                 max_bytes: int = 16 << 10, max_depth: int = 8, queue_size: int = 10_000) -> None:
        self.device, self.store = device, store
        self.handlers = dict(handlers)
        self._reply = reply
        self.max_bytes, self.max_depth = max_bytes, max_depth
        self._q: queue.Queue[Incoming | None] = queue.Queue(queue_size)
        # (command name, id) -> cached result: another command that reuses an id is run, not answered from the cache
        self._done: collections.OrderedDict[tuple[str, str], bytes] = collections.OrderedDict()
        self._thread: threading.Thread | None = None
        self.stats = {"received": 0, "ok": 0, "error": 0, "refused_busy": 0}

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

    def _answer(self, cmd: Incoming, cmd_id: str | None, ok: bool, reason: str | None, data: dict | None) -> None:
        why = check_result(cmd.name, data) if data else None  # no image data in a result (docs/PRIVACY.md)
        if why is not None:
            refuse("cmd_result", f"cmd_result/{cmd.name}", why)
            ok, reason, data = False, f"result refused by the privacy guard: {why}", None
        try:
            raw = payloads.result(self.device, self.store, cmd.name, cmd_id, ok, reason=reason, data=data)
        except PayloadError as e:
            ok, raw = False, payloads.result(self.device, self.store, cmd.name, cmd_id, False, reason=str(e))
        self.stats["ok" if ok else "error"] += 1
        if cmd_id is not None and not cmd.retained:
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
