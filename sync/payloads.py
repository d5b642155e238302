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


def text_depth(raw: bytes | str, limit: int = 1) -> int:
    """Deepest [ / { nesting of JSON text (brackets inside strings do not count), without parsing it: deep input is
    refused before the recursive parser runs (its recursion near the interpreter's limit can make anything else on
    that thread, a finalizer run by the garbage collector included, fail). Text with at most `limit` brackets
    returns their count unscanned (it cannot nest deeper)."""
    b = raw.encode() if isinstance(raw, str) else bytes(raw)
    opens = b.count(b"[") + b.count(b"{")
    if opens <= max(limit, 1):
        return opens
    best = level = 0
    in_str = esc = False
    for c in b:
        if in_str:
            if esc:
                esc = False
            elif c == 0x5C:  # backslash
                esc = True
            elif c == 0x22:  # quote
                in_str = False
        elif c == 0x22:
            in_str = True
        elif c == 0x5B or c == 0x7B:
            level += 1
            best = max(best, level)
        elif c == 0x5D or c == 0x7D:
            level -= 1
    return best


def decode(raw: bytes | str, *, max_bytes: int, max_depth: int | None) -> Any:
    """Parse untrusted JSON with a size and depth limit (None: check it later with `check_depth`);
    raises PayloadError with the reason."""
    if len(raw) > max_bytes:
        raise PayloadError(f"payload too large: {len(raw)} bytes > {max_bytes}")
    if max_depth is not None and text_depth(raw, max_depth) > max_depth:
        raise PayloadError(f"nested deeper than {max_depth}")
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


MAX_SEQ = (1 << 63) - 1  # SQLite INTEGER


def parse_batch(raw: bytes, *, max_bytes: int = 16 << 20) -> dict:
    """Parse and check a batch payload (consumer side): ids, epoch, and per record an int seq in SQLite's range,
    kind and event_id strings, numeric or absent ts. Raises PayloadError."""
    obj = decode(raw, max_bytes=max_bytes, max_depth=MAX_DEPTH + 4)
    if not isinstance(obj, dict) or not _is_version(obj.get("v")):
        raise PayloadError("not a v1 batch")
    for key, typ in (("device", str), ("store", str), ("epoch", str), ("events", list)):
        if not isinstance(obj.get(key), typ):
            raise PayloadError(f"batch field {key!r} missing or not {typ.__name__}")
    if not 1 <= len(obj["epoch"]) <= 64 or not _utf8(obj["epoch"]):
        raise PayloadError("batch epoch is not 1-64 characters of valid unicode")
    for key in ("sent_ts",):
        if obj.get(key) is not None and not _is_num(obj[key]):
            raise PayloadError(f"batch field {key!r} is not a number")
    for rec in obj["events"]:
        if not (isinstance(rec, dict) and isinstance(rec.get("seq"), int) and not isinstance(rec["seq"], bool)
                and 0 <= rec["seq"] <= MAX_SEQ and isinstance(rec.get("kind"), str) and len(rec["kind"]) <= 64
                and isinstance(rec.get("event_id"), str) and len(rec["event_id"]) <= 128):
            raise PayloadError("batch record without int seq / kind / event_id")
        if rec.get("ts") is not None and not _is_num(rec["ts"]):
            raise PayloadError("batch record ts is not a number")
        if rec.get("stream") is not None and not isinstance(rec["stream"], str):
            raise PayloadError("batch record stream is not a string")
        if not all(_utf8(rec.get(k)) for k in ("kind", "event_id", "stream")):
            raise PayloadError("batch record text is not valid unicode (a lone surrogate)")
        if rec["kind"] == GAP_KIND:
            data = rec.get("data") if isinstance(rec.get("data"), dict) else {}
            to = data.get("to")
            if not isinstance(to, int) or isinstance(to, bool) or not rec["seq"] <= to <= MAX_SEQ:
                raise PayloadError("gap record without a valid 'to'")
            if not (data.get("reason") is None or isinstance(data["reason"], str) and len(data["reason"]) <= 64
                    and _utf8(data["reason"])):
                raise PayloadError("gap record reason is not a short string")
    return obj


def _is_version(v: Any) -> bool:
    """v is this schema's version: a JSON number equal to it, not `true` (which Python takes for 1)."""
    return isinstance(v, int) and not isinstance(v, bool) and v == SCHEMA


def _utf8(v: Any) -> bool:
    """v is not a string that cannot be stored as UTF-8 (JSON `\\ud800` decodes to a lone surrogate)."""
    if not isinstance(v, str):
        return True
    try:
        v.encode()
    except UnicodeEncodeError:
        return False
    return True


def ack(epoch: str, upto: int) -> bytes:
    """Ack watermark from the consumer: every seq <= upto of this epoch is stored in the cloud."""
    return dumps({"v": SCHEMA, "epoch": epoch, "upto": upto, "ts": time.time()}).encode()


def parse_ack(raw: bytes) -> tuple[str, int] | None:
    """(epoch, upto) of an ack payload, or None if it is not one, or of another schema version (never raises: any
    input is fine)."""
    try:
        obj = decode(raw, max_bytes=4096, max_depth=2)
    except PayloadError:
        return None
    if (isinstance(obj, dict) and _is_version(obj.get("v", SCHEMA))  # another version's `upto` may mean otherwise
            and isinstance(obj.get("epoch"), str) and len(obj["epoch"]) <= 64
            and isinstance(obj.get("upto"), int) and not isinstance(obj.get("upto"), bool)):
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


# ---------------------------------------------------------------- retained messages read by fleet tools
def decode_object(raw: bytes | str, *, max_bytes: int = 1 << 20, max_depth: int = 32) -> dict:
    """A JSON object from an untrusted payload; PayloadError (with the reason) for anything else."""
    obj = decode(raw, max_bytes=max_bytes, max_depth=max_depth)
    if not isinstance(obj, dict):
        raise PayloadError(f"not a JSON object ({type(obj).__name__})")
    return obj


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) < 1e15


def _opt(obj: dict, key: str, ok, what: str) -> None:
    if key in obj and obj[key] is not None and not ok(obj[key]):
        raise PayloadError(f"field {key!r} is not {what}")


def check_state(obj: Any) -> dict:
    """A retained device `state` as `edge fleet list` and `rollout --devices all` read it; PayloadError if not."""
    if not isinstance(obj, dict):
        raise PayloadError(f"not a JSON object ({type(obj).__name__})")
    if not isinstance(obj.get("status"), str) or len(obj["status"]) > 32:
        raise PayloadError("field 'status' missing or not a short string")
    _opt(obj, "ts", lambda v: _is_num(v) and 0 <= v < 1e11, "a time stamp")
    _opt(obj, "bdSeq", lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer")
    for key in ("kind", "sw"):
        _opt(obj, key, lambda v: isinstance(v, str) and len(v) <= 256, "a short string")
    _opt(obj, "model_updates", lambda v: isinstance(v, dict), "an object")
    return obj


def check_update_status(obj: Any) -> dict:
    """A retained model-update status (`.../update`) as the fleet tools read it; PayloadError if not."""
    if not isinstance(obj, dict):
        raise PayloadError(f"not a JSON object ({type(obj).__name__})")
    _opt(obj, "seq", lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer")
    job = obj.get("job")
    if job is not None:
        if not isinstance(job, dict):
            raise PayloadError("field 'job' is not an object")
        for key in ("name", "version", "state"):
            if not isinstance(job.get(key), str) or len(job[key]) > 128:
                raise PayloadError(f"field 'job.{key}' missing or not a short string")
        for key in ("rollout", "reason", "phase"):
            _opt(job, key, lambda v: isinstance(v, str), "a string")
        _opt(job, "progress", lambda v: isinstance(v, dict) and all(
            isinstance(x, (int, float, bool)) or x is None for x in v.values()), "an object of numbers")
    models = obj.get("models")
    if models is not None and not (isinstance(models, dict) and all(isinstance(m, dict) for m in models.values())):
        raise PayloadError("field 'models' is not an object of objects")
    return obj
