"""JSON payloads on the wire (schema version 1): event batches, acks, state, commands and results.

Limits are checked before anything is trusted: size first (bytes), then JSON, then nesting depth.
"""
from __future__ import annotations

import json
import time
from typing import Any

from sync.topics import check_name

SCHEMA = 1
MAX_DEPTH = 16  # default nesting limit of event data
GAP_KIND = "_gap"  # record that stands for seqs the device had to give up (disk budget, dead letter)

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode


class PayloadError(ValueError):
    """A payload is not acceptable; str() is the reason sent back to the peer."""


def dumps(obj: Any) -> str:
    """Compact JSON (no NaN/Infinity). Raises PayloadError if obj is not JSON-able."""
    try:
        return _dumps(obj)
    except (TypeError, ValueError, RecursionError) as e:
        raise PayloadError(f"not JSON-serialisable: {e}") from None


def depth(obj: Any) -> int:
    """Nesting depth of containers (a scalar is 0, [] or {} is 1). Iterative, safe on deep input."""
    best, stack = 0, [(obj, 0)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict):
            best = max(best, d + 1)
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, list):
            best = max(best, d + 1)
            stack.extend((v, d + 1) for v in o)
    return best


def decode(raw: bytes | str, *, max_bytes: int, max_depth: int | None) -> Any:
    """Parse untrusted JSON with a size and depth limit (None: check it later with `check_depth`);
    raises PayloadError with the reason."""
    if len(raw) > max_bytes:
        raise PayloadError(f"payload too large: {len(raw)} bytes > {max_bytes}")
    try:
        obj = json.loads(raw)
    except RecursionError:
        raise PayloadError(f"nested deeper than {max_depth or 'the parser allows'}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise PayloadError(f"not JSON: {e}") from None
    if max_depth is not None:
        check_depth(obj, max_depth)
    return obj


def exceeds_depth(obj: Any, max_depth: int) -> bool:
    """True if containers nest deeper than max_depth (stops early; cheaper than `depth` on the hot path)."""
    if isinstance(obj, dict):
        vals = obj.values()
    elif isinstance(obj, list):
        vals = obj
    else:
        return False
    if max_depth <= 0:
        return True
    return any(exceeds_depth(v, max_depth - 1) for v in vals if isinstance(v, (dict, list)))


def check_depth(obj: Any, max_depth: int) -> None:
    if exceeds_depth(obj, max_depth):
        raise PayloadError(f"nested deeper than {max_depth}")


def event_body(kind: str, stream: str, ts: float, event_id: str, data: Any, *,
               max_bytes: int, max_depth: int = MAX_DEPTH) -> str:
    """Stored JSON of one event record, without `seq` (added at send time). Raises PayloadError."""
    check_name(kind, "event kind")
    if not isinstance(data, dict):
        raise PayloadError("event data must be a JSON object")
    if exceeds_depth(data, max_depth):
        raise PayloadError(f"event data nested deeper than {max_depth}")
    body = dumps({"event_id": event_id, "kind": kind, "stream": stream, "ts": ts, "data": data})
    if len(body) > max_bytes:
        raise PayloadError(f"event too large: {len(body)} bytes > {max_bytes}")
    return body


def batch(device: str, store: str, epoch: str, records: list[tuple[int, str]], historical: bool) -> bytes:
    """Wire payload of a batch of stored records [(seq, body)]: schema version, ids, send time, `historical`."""
    head = ('{"v":%d,"device":"%s","store":"%s","epoch":"%s","sent_ts":%.6f,"historical":%s,"events":['
            % (SCHEMA, device, store, epoch, time.time(), "true" if historical else "false"))
    recs = ",".join('{"seq":%d,%s' % (seq, body[1:]) for seq, body in records)
    return (head + recs + "]}").encode()


def parse_batch(raw: bytes, *, max_bytes: int = 16 << 20) -> dict:
    """Parse and check a batch payload (consumer side). Raises PayloadError."""
    obj = decode(raw, max_bytes=max_bytes, max_depth=MAX_DEPTH + 4)
    if not isinstance(obj, dict) or obj.get("v") != SCHEMA:
        raise PayloadError("not a v1 batch")
    for key, typ in (("device", str), ("store", str), ("epoch", str), ("events", list)):
        if not isinstance(obj.get(key), typ):
            raise PayloadError(f"batch field {key!r} missing or not {typ.__name__}")
    for rec in obj["events"]:
        if not (isinstance(rec, dict) and isinstance(rec.get("seq"), int) and isinstance(rec.get("kind"), str)
                and isinstance(rec.get("event_id"), str)):
            raise PayloadError("batch record without int seq / kind / event_id")
    return obj


def ack(epoch: str, upto: int) -> bytes:
    """Ack watermark from the consumer: every seq <= upto of this epoch is stored in the cloud."""
    return dumps({"v": SCHEMA, "epoch": epoch, "upto": upto, "ts": time.time()}).encode()


def parse_ack(raw: bytes) -> tuple[str, int] | None:
    """(epoch, upto) of an ack payload, or None if it is not one."""
    try:
        obj = decode(raw, max_bytes=4096, max_depth=2)
    except PayloadError:
        return None
    if (isinstance(obj, dict) and isinstance(obj.get("epoch"), str) and isinstance(obj.get("upto"), int)
            and not isinstance(obj.get("upto"), bool)):
        return obj["epoch"], obj["upto"]
    return None


def state(device: str, store: str, kind: str, status: str, bd_seq: int, fields: dict) -> bytes:
    """Retained device state (birth when online, LWT / graceful stop when offline)."""
    return dumps({**fields, "v": SCHEMA, "device": device, "store": store, "kind": kind,
                  "status": status, "bdSeq": bd_seq, "ts": time.time()}).encode()


def command(cmd_id: str, args: dict | None = None) -> bytes:
    """A command request."""
    return dumps({"v": SCHEMA, "id": cmd_id, "args": args or {}, "ts": time.time()}).encode()


def result(device: str, store: str, name: str, cmd_id: str | None, ok: bool, *,
           reason: str | None = None, data: dict | None = None) -> bytes:
    """A command result; `id` echoes the command's id (None when the command had none or was unreadable)."""
    return dumps({"v": SCHEMA, "id": cmd_id, "device": device, "store": store, "cmd": name,
                  "status": "ok" if ok else "error", "reason": reason, "result": data or {},
                  "ts": time.time()}).encode()
