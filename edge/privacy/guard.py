"""The payload guard: nothing that looks like image data leaves the device over MQTT (docs/PRIVACY.md).

Refused (with the path of the offending value):

- bytes-like values and arrays (python objects before serialisation), non-ASCII / non-JSON payloads (binary);
- strings with a run of more than `MAX_B64_RUN` base64/hex characters, base64 that decodes to an image header
  (JPEG, PNG, GIF, WebP, TIFF, JPEG 2000) and `data:image/...` URIs;
- numeric arrays with more than `MAX_NUMBERS` numbers (nested lists counted together): the largest legitimate array
  is an occupancy heatmap grid of at most `GRID_MAX` x `GRID_MAX` cells (`[[analytics.heatmaps]]` cols/rows);
- image-like keys (`image`, `frame`, `jpeg`, `png`, `mask`, `face`, `embedding`, ... ) unless they hold a number,
  a boolean or null (a heatmap's `frames` count).

The one exception is a snapshot (`snapshot` command) image that `edge.privacy.anonymise` produced: the anonymiser
`seal()`s the encoded JPEG after blurring, and only a sealed string, only as `result.image` of an `ok` result of the
`snapshot` command, passes. Every refusal is logged, counted (`edge_privacy_refused_total{channel}`) and recorded in
the decision log (`privacy_refused`; at most one record per channel per `RECORD_EVERY_S`, with the count since).
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import threading
import time
from typing import Any

from edge.core.decisions import PRIVATE_KEYS

log = logging.getLogger(__name__)

GRID_MAX = 64  # [[analytics.heatmaps]] cols and rows are at most 64 (tests/privacy checks it against the config)
MAX_NUMBERS = GRID_MAX * GRID_MAX  # numbers in one (nested) list: the largest heatmap grid
MAX_B64_RUN = 256  # base64/hex characters in a row: a sha256 is 64, an Ed25519 signature 88, an image thousands
MIN_SNIFF = 16  # base64 strings from this length are decoded and checked for an image header
IMAGE_KEYS = PRIVATE_KEYS | {"jpg", "gif", "webp", "bmp", "photo", "picture", "bitmap", "image_b64", "data_url"}
RECORD_EVERY_S = 60.0

_B64_RUN = re.compile(r"[A-Za-z0-9+/_-]{%d,}" % (MAX_B64_RUN + 1))
_B64_FULL = re.compile(r"^[A-Za-z0-9+/_-]+={0,2}$")
_DATA_URI = re.compile(r"data:image/", re.IGNORECASE)
# cheap screen of serialised JSON (C-speed substring searches; a regex over the whole payload costs more than
# parsing it): anything that could be refused has an image-like key, a base64 image header, a data URI or a long
# base64 run, or is long enough to hold a numeric array over the limit, or is not ASCII JSON (payloads.dumps
# writes ASCII)
_KEYS_RE = re.compile(rb'"(?:%s)"' % b"|".join(sorted(k.encode() for k in IMAGE_KEYS)))  # on the lower-cased payload
_HEADS_RE = re.compile(rb'"(?:/9j/|_9j_|iVBORw0KGgo|R0lGOD|UklGR|SUkqA|TU0AK|AAAADGpQ)')  # base64 of the _MAGIC headers
_RUNS = bytes(0x61 if (chr(i).isascii() and (chr(i).isalnum() or chr(i) in "+/_-")) else 0x20 for i in range(256))
_RUN_NEEDLE = b"a" * (MAX_B64_RUN + 1)
NUMERIC_MIN_BYTES = 2 * MAX_NUMBERS  # a list of more than MAX_NUMBERS numbers needs at least this many characters
_MAGIC = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG", "PNG"), (b"GIF8", "GIF"), (b"RIFF", "RIFF/WebP"),
          (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"\x00\x00\x00\x0cjP", "JPEG 2000"))


# ------------------------------------------------------------------------------------------------ sealed images
_sealed: dict[str, float] = {}
_sealed_lock = threading.Lock()
SEAL_TTL_S = 600.0  # a command result is re-sent from the router's cache on a QoS 1 redelivery: keep it valid a while


def _digest(s: str) -> str:
    return hashlib.sha256(s.encode("ascii", "surrogatepass")).hexdigest()


def seal(encoded: str, ttl_s: float = SEAL_TTL_S) -> str:
    """Mark an encoded, already anonymised image as allowed (only `edge.privacy.anonymise` calls this)."""
    now = time.monotonic()
    with _sealed_lock:
        for k in [k for k, t in _sealed.items() if t < now]:
            del _sealed[k]
        _sealed[_digest(encoded)] = now + ttl_s
    return encoded


def is_sealed(value: Any) -> bool:
    if not isinstance(value, str) or not value.isascii():
        return False
    with _sealed_lock:
        t = _sealed.get(_digest(value))
    return t is not None and t >= time.monotonic()


# ------------------------------------------------------------------------------------------------ checks
def _string_problem(s: str) -> str | None:
    if _DATA_URI.search(s):
        return "a data:image URI"
    m = _B64_RUN.search(s)
    if m:
        return f"a run of {m.end() - m.start()} base64/hex characters"
    if len(s) >= MIN_SNIFF and _B64_FULL.match(s):
        head = s[:24].replace("-", "+").replace("_", "/")
        try:
            raw = base64.b64decode(head + "=" * (-len(head) % 4))
        except (binascii.Error, ValueError):
            return None
        for magic, name in _MAGIC:
            if raw.startswith(magic):
                return f"base64 of a {name} image"
    return None


def _count_numbers(lst: list, limit: int) -> int:
    """Numbers in a list and its nested lists (not inside dicts); stops counting past `limit`."""
    n, stack = 0, [lst]
    while stack and n <= limit:
        for v in stack.pop():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                n += 1
            elif isinstance(v, (list, tuple)):
                stack.append(v)
    return n


def find_image_data(obj: Any) -> str | None:
    """Why `obj` (JSON-like data, before or after serialisation) carries image data, naming where; None if it
    does not."""
    stack: list[tuple[str, Any, bool]] = [("", obj, False)]
    while stack:
        path, o, in_list = stack.pop()
        where = path or "<root>"
        if isinstance(o, dict):
            for k, v in o.items():
                key = str(k)
                if key.lower() in IMAGE_KEYS and not (v is None or isinstance(v, (bool, int, float))):
                    return f"image-like key {key!r} at {where}"
                stack.append((f"{path}/{key}", v, False))
        elif isinstance(o, (list, tuple)):
            if not in_list:
                n = _count_numbers(o, MAX_NUMBERS)
                if n > MAX_NUMBERS:
                    return f"a numeric array of more than {MAX_NUMBERS} numbers at {where} (only pixels are that big)"
            stack.extend((f"{path}/{i}", v, True) for i, v in enumerate(o))
        elif isinstance(o, str):
            why = _string_problem(o)
            if why:
                return f"{why} at {where}"
        elif isinstance(o, (bytes, bytearray, memoryview)):
            return f"{type(o).__name__} ({len(o)} bytes) at {where}"
        elif o is None or isinstance(o, (bool, int, float)):
            continue
        elif hasattr(o, "shape") and hasattr(o, "dtype"):  # numpy and friends
            return f"an array of shape {tuple(o.shape)} at {where}"
        else:
            item = getattr(o, "item", None)
            if not (callable(item) and getattr(o, "ndim", None) == 0):
                return f"a {type(o).__name__} object at {where}"
    return None


def _without_sealed_snapshot(obj: Any) -> Any:
    """The `ok` result of the `snapshot` command with its sealed image replaced by a marker (the one exception)."""
    if (isinstance(obj, dict) and obj.get("cmd") == "snapshot" and obj.get("status") == "ok"
            and isinstance(obj.get("result"), dict) and is_sealed(obj["result"].get("image"))):
        return {**obj, "result": {**obj["result"], "image": None}}
    return obj


def _suspicious(data: bytes, thorough: bool) -> bool:
    if not data.isascii() or data[:1] not in (b"{", b"[") or (thorough and len(data) >= NUMERIC_MIN_BYTES):
        return True
    low = data.lower()
    return (_KEYS_RE.search(low) is not None or b"data:image/" in low or _HEADS_RE.search(data) is not None
            or _RUN_NEEDLE in data.translate(_RUNS))


def check_result(cmd: str, data: Any) -> str | None:
    """Why the result data of command `cmd` must not be sent (before serialisation: bytes and arrays are named as
    such); the sealed image of a `snapshot` result passes."""
    return find_image_data(_without_sealed_snapshot({"cmd": cmd, "status": "ok", "result": data}))


def check_payload(raw: bytes | str, *, thorough: bool = True) -> str | None:
    """Why a serialised payload (MQTT payload, stored event record) must not be sent; None if it may.

    A cheap screen decides whether the payload is parsed: non-ASCII or non-JSON-object payloads, a suspicious key or
    base64 run, or (`thorough`) a size that could hold a numeric array over the limit. Batches of already checked
    records pass `thorough=False` (their records were checked one by one)."""
    if not raw:
        return None  # clears a retained message
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    if not _suspicious(data, thorough):
        return None
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return f"not JSON ({len(data)} bytes of binary or text data)"
    return find_image_data(_without_sealed_snapshot(obj))


# ------------------------------------------------------------------------------------------------ refusals
_last_record: dict[str, tuple[float, int]] = {}
_record_lock = threading.Lock()


def channel_of(topic: str) -> str:
    """`events`, `alerts`, `telemetry`, `state`, `cmd_result`, `update`... of a device topic
    (retail/v1/{store}/{device}/{channel}/...); `other` for anything else."""
    parts = topic.split("/")
    return parts[4] if len(parts) > 4 and parts[0] == "retail" else "other"


def refuse(channel: str, topic: str, reason: str) -> None:
    """Log, count and record one refused payload (the payload itself is never logged or recorded)."""
    from edge.core import decisions
    from edge.core.metrics import PRIVACY_REFUSED

    PRIVACY_REFUSED.labels(channel).inc()
    now = time.monotonic()
    with _record_lock:
        last, suppressed = _last_record.get(channel, (-1e18, 0))
        due = now - last >= RECORD_EVERY_S
        _last_record[channel] = (now, 0) if due else (last, suppressed + 1)
    if due:
        log.error("privacy guard: refused a %s payload to %s: %s (image data never leaves the device)",
                  channel, topic, reason)
        decisions.record("privacy_refused", channel, {"topic": topic[:256], "why": reason[:300],
                                                      "suppressed_since_last": suppressed},
                         reason=f"payload with image data refused: {reason[:200]}")
    else:
        log.debug("privacy guard: refused a %s payload to %s: %s", channel, topic, reason)


def guard_publish(topic: str, payload: bytes | str) -> str | None:
    """The MQTT client's hook: None to publish, else the reason (already logged, counted and recorded)."""
    channel = channel_of(topic)
    reason = check_payload(payload, thorough=channel not in ("events", "alerts", "telemetry"))
    if reason is not None:
        refuse(channel, topic, reason)
    return reason
