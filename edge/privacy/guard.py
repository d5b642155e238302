"""The payload guard: nothing that looks like image data leaves the device over MQTT (docs/PRIVACY.md).

Refused (with the path of the offending value):

- bytes-like values and arrays (python objects before serialisation), non-ASCII / non-JSON payloads (binary);
- strings (and keys) with a run of more than `MAX_B64_RUN` base64/hex/base32/base85 (or ascii85) characters,
  `data:image/...` URIs, text that decodes (base64, hex, base32, base85 or ascii85, whitespace removed, or one run
  of such characters between punctuation) to an image or compressed-data header (`_header`: JPEG, PNG, GIF, WebP,
  BMP, TIFF, JPEG 2000, HEIF/AVIF, zlib, gzip, zip, numpy .npy), more than `MAX_B64_RUN` characters in consecutive
  whitespace-separated lines of at least `MIN_LINE` such characters (MIME base64, xxd -p) or in full uuencoded
  lines, and runs of more than `MAX_BYTE_TOKENS` hex or decimal numbers in text (`ff d8 ff`, `255,216,255`,
  `[[255, 216], [255, 224]]`, `0xff, 0xd8` as xxd -i writes them); binary data in text: bytes decoded as latin-1 or
  with errors (more than `MIN_SNIFF` control or undecodable characters, or an image header), bytes reprs and C
  strings (`b'\\xff\\xd8'`, `\\377\\330`: more than `MAX_BYTE_TOKENS` escaped bytes, or an image header);
- numbers: a list of more than `GRID_MAX` numbers (a heatmap row is the longest), more than `LOOSE_MAX` numbers in
  lists of one record outside a heatmap grid (`counts` of an object, exactly `rows` x `cols` ints), more than
  `MAX_NUMBERS` numbers anywhere in one record (lists and objects; the largest heatmap grid and the fields around
  it), and lists whose first integers (in 0..255, nested lists flattened) are an image header (bytes as numbers);
  an object whose keys are all indices (`{"0": 255, "1": 216}`, a typed array as JSON) counts as a list;
- image-like keys (`image`, `frame`, `jpeg`, `png`, `mask`, `face`, `embedding`, ... ) unless they hold a number,
  a boolean or null (a heatmap's `frames` count).

A batch (`sync.payloads.batch`: an object with `epoch` and `events`) is checked record by record. The one exception
is a snapshot (`snapshot` command) image that `edge.privacy.anonymise` produced: the anonymiser `seal()`s the
encoded JPEG after blurring, and only a sealed string, only as `result.image` of an `ok` result of the `snapshot`
command, passes. Every refusal is logged, counted (`edge_privacy_refused_total{channel}`) and recorded in the
decision log (`privacy_refused`; at most one record per channel per `RECORD_EVERY_S`, with the count since).
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
MAX_GRID = GRID_MAX * GRID_MAX  # cells of the largest heatmap grid
MAX_NUMBERS = MAX_GRID + 256  # numbers anywhere in one record: the largest heatmap grid and the fields around it
LOOSE_MAX = 512  # numbers in the lists of one record outside a heatmap grid (polygons, track ids: a few dozen)
MAX_B64_RUN = 256  # base64/hex characters in a row: a sha256 is 64, an Ed25519 signature 88, an image thousands
MIN_SNIFF = 16  # encoded strings from this length are decoded and checked for an image header
WEAK_SNIFF = 160  # 2-byte headers (zlib) only from this length: a sha256 or a signature may start with them
MIN_LINE = 40  # whitespace-separated lines of encoded data: MIME 76, PEM 64, xxd -p 60 (an event id is 32)
MAX_BYTE_TOKENS = 128  # hex or decimal numbers in a row in text (a byte dump)
IMAGE_KEYS = PRIVATE_KEYS | {"jpg", "gif", "webp", "bmp", "photo", "picture", "bitmap", "image_b64", "data_url"}
RECORD_EVERY_S = 60.0

_B85 = r"0-9A-Za-z!#$%&()*+\-;<=>?@^_`{|}~"  # base85 (b85encode), a superset of base32 and hex
_ENC = _B85 + "/="  # ... with base64 (standard and url-safe) and its padding
_RUN = re.compile(r"[%s]{%d,}" % (_ENC, MAX_B64_RUN + 1))
_A85_RUN = re.compile(r"[!-u]{%d,}" % (MAX_B64_RUN + 1))  # ascii85: refused with more distinct characters than base64
_FULL = {name: re.compile(r"[%s]+\Z" % chars) for name, chars in (
    ("hex", "0-9A-Fa-f"), ("base64", "A-Za-z0-9+/_-"), ("base32", "A-Z2-7"), ("base85", _B85), ("ascii85", "!-uz"))}
_LINE = re.compile(r"[%s]{%d,}" % (_ENC, MIN_LINE))
# list / array reprs and C arrays (`xxd -i`: 0xff, 0xd8, ...) too
_BYTE_TEXT = re.compile(r"[0-9A-Fa-fxX\s,:;.|\-\[\]()]{%d,}" % (2 * MAX_BYTE_TOKENS - 1))
_BYTE_TOKEN = re.compile(r"(?:0[xX])?[0-9A-Fa-f]{1,8}")
_SNIFF_RUN = re.compile(r"[%s]{%d,}" % (_ENC, MIN_SNIFF))  # encoded text cut by punctuation instead of line breaks
_UU_LINE = re.compile(r"^M[ -`]{60}\r?$", re.MULTILINE)  # a full uuencoded line (45 bytes)
_DATA_URI = re.compile(r"data:image/", re.IGNORECASE)
# characters no text has: C0 controls but tab and line ends, DEL, C1 controls, U+FFFD, surrogateescape's lone surrogates
_BINARY = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffd\udc80-\udcff]")
# b'\xff' (a bytes repr); \u0000-\u001f, \u007f-\u009f (JSON of bytes decoded as latin-1: its control characters,
# which text never holds, unlike \u00e9 in JSON of accented text)
_ESCAPED_BYTE = re.compile(r"\\x[0-9A-Fa-f]{2}|\\u00(?:[01][0-9A-Fa-f]|7[fF]|[89][0-9A-Fa-f])")
# octal escapes (C strings: \377\330) followed by another escape: a path like C:\2026\clip has none
_OCTAL_RUN = re.compile(r"\\[0-3][0-7]{2}(?=\\[0-7xu])")
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")  # terminal colour codes in captured program output: text
_ESC_TOKEN = re.compile(r"\\(?:x|u00)([0-9A-Fa-f]{2})|\\([0-3][0-7]{2})|\\([\\'\"nrt0])|([^\\'\"])")
_ESC_CHAR = {"n": 10, "r": 13, "t": 9, "0": 0}
_BYTES_REPR = re.compile(r"b['\"]")
_MAGIC = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG", "PNG"), (b"GIF87a", "GIF"), (b"GIF89a", "GIF"),
          (b"RIFF", "RIFF/WebP"), (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"\x00\x00\x00\x0cjP", "JPEG 2000"),
          (b"\xffO\xffQ", "JPEG 2000"), (b"\x93NUMPY", "numpy .npy"), (b"PK\x03\x04", "zip (.npz)"),
          (b"\x1f\x8b\x08", "gzip"))
# cheap screen of serialised JSON (C-speed searches; a regex over the whole payload costs more than parsing it):
# anything that could be refused has an image-like key, a base64 image header, a data URI, a run of encoded
# characters or numbers (escaped newlines, quotes and separators included), two long encoded lines separated by a
# space or, with `thorough`, more commas and brackets than LOOSE_MAX (an upper bound of its numbers), or is not
# ASCII JSON (payloads.dumps writes ASCII)
_KEYS_RE = re.compile(rb'"(?:%s)"' % b"|".join(sorted(k.encode() for k in IMAGE_KEYS)))  # on the lower-cased payload
_HEADS_RE = re.compile(rb'"(?:/9j/|_9j_|iVBORw0KGg|R0lGOD|UklGR|SUkqA|TU0AK|AAAADGpQ|/0//U|_0__U|k05VTVBZ|UEsDB|H4sI'
                       rb'|Qk|eJ|AAAA[GHI]GZ0eX)')  # base64 of the _MAGIC headers (BMP, zlib, ISO BMFF too)
SCREEN_RUN = 2 * GRID_MAX + 1  # a list of more than GRID_MAX numbers is at least this long
_ENCODED = bytes(0x61 if 0x20 < i < 0x7F and i != 0x22 else 0x20 for i in range(256))  # no space, no quote
_BYTES_TXT = bytes(0x61 if chr(i) in "0123456789abcdefABCDEFxX ,:;.|-[]()\\nrt" else 0x20 for i in range(256))
# serialised (ensure_ascii) text of binary characters: \u0000-\u001f, \u007f-\u009f, \ufffd, \udc80-\udcff
_BIN_ESC_RE = re.compile(rb"\\u(?:00[01][0-9a-fA-F]|007[fF]|00[89][0-9a-fA-F]|[fF]{3}[dD]|[dD][c-fC-F][0-9a-fA-F]{2})")
_RUN_NEEDLE = b"a" * SCREEN_RUN
_LINES_NEEDLE = b"a" * MIN_LINE + b" " + b"a" * MIN_LINE


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
def _header(raw: bytes, weak: bool) -> str | None:
    """The image or compressed-data format whose header `raw` starts with; 2-byte headers only if `weak`."""
    for magic, name in _MAGIC:
        if raw.startswith(magic):
            return name
    if raw[:2] == b"BM" and raw[6:10] == b"\x00\x00\x00\x00":
        return "BMP"
    if raw[4:8] == b"ftyp":
        return "HEIF/AVIF/MP4"
    if weak and raw[:1] == b"\x78" and raw[1:2] in (b"\x01", b"\x5e", b"\x9c", b"\xda"):
        return "zlib"
    return None


def _decoded_header(text: str) -> str | None:
    """'base64 of a JPEG image' if `text` (no whitespace) decodes, in one of the encodings, to a `_header`."""
    weak = len(text) >= WEAK_SNIFF
    for enc, full in _FULL.items():
        if not full.match(text.rstrip("=")):
            continue
        try:
            if enc == "hex":
                raw = bytes.fromhex(text[:36])
            elif enc == "base64":
                head = text[:24].replace("-", "+").replace("_", "/")
                raw = base64.b64decode(head + "=" * (-len(head) % 4))
            elif enc == "base32":
                raw = base64.b32decode(text[:32] + "=" * (-len(text[:32]) % 8))
            elif enc == "base85":
                raw = base64.b85decode(text[:25])
            else:
                raw = base64.a85decode(text.removeprefix("<~")[:25])
        except (binascii.Error, ValueError):
            continue
        name = _header(raw, weak)
        if name:
            return f"{enc} of a {name} image" if name not in ("zlib", "gzip", "zip (.npz)", "numpy .npy") \
                else f"{enc} of {name} data"
    return None


def _unescaped(text: str, pos: int, n: int = 16) -> bytes:
    """The first `n` bytes of an escaped byte string (`\\xff\\xd8...`, `\\u00ff...`) from `pos`."""
    out = bytearray()
    while len(out) < n:
        m = _ESC_TOKEN.match(text, pos)
        if m is None:
            break
        code, octal, esc, plain = m.groups()
        if code:
            out.append(int(code, 16))
        elif octal:
            out.append(int(octal, 8))
        elif esc:
            out.append(_ESC_CHAR.get(esc, ord(esc)))
        elif ord(plain) < 256:
            out.append(ord(plain))
        else:
            break
        pos = m.end()
    return bytes(out)


def _binary_problem(s: str) -> str | None:
    """Why `s` is binary data as text: bytes decoded as latin-1 or with errors (control or undecodable characters),
    or a bytes repr / escaped bytes (`b'\\xff\\xd8...'`); None if it is not."""
    if not s.isprintable():
        n = len(_BINARY.findall(_ANSI.sub("", s)))
        if n:
            head = s[:16]
            try:
                raw = head.encode("latin-1")
            except UnicodeEncodeError:
                try:
                    raw = head.encode("utf-8", "surrogateescape")
                except UnicodeEncodeError:  # a lone surrogate that is not a byte
                    raw = b""
            name = _header(raw, True)
            if name:
                return f"bytes of a {name} image as text"
            if n > MIN_SNIFF:
                return f"binary data in text ({n} control or undecodable characters)"
    if "\\" in s:
        n = len(_ESCAPED_BYTE.findall(s)) + len(_OCTAL_RUN.findall(s))
        if n > MAX_BYTE_TOKENS:
            return f"{n} escaped bytes in text (a bytes repr)"
        octal = _OCTAL_RUN.search(s)
        starts = {i for i in (s.find("\\x"), s.find("\\u00"), octal.start() if octal else -1) if i >= 0}
        starts.update(m.end() for m, _ in zip(_BYTES_REPR.finditer(s), range(8)))
        for i in sorted(starts):
            name = _header(_unescaped(s, i), False)
            if name:
                return f"escaped bytes of a {name} image in text"
    return None


def _string_problem(s: str) -> str | None:
    """Why a string is or holds encoded image data; None if it does not."""
    if _DATA_URI.search(s):
        return "a data:image URI"
    m = _RUN.search(s)
    if m:
        return f"a run of {m.end() - m.start()} base64/hex/base85 characters"
    for m in _A85_RUN.finditer(s):
        if len(set(m.group())) > 64:
            return f"a run of {m.end() - m.start()} ascii85 characters"
    if len(s) < MIN_SNIFF:
        return None
    why = _binary_problem(s)
    if why:
        return why
    words = s.split()
    compact = "".join(words)  # MIME base64 lines, hex bytes separated by spaces
    why = _decoded_header(compact) if len(compact) >= MIN_SNIFF else None
    for w in words if len(words) > 1 and not why else ():  # "jpeg: /9j/4AAQ..."
        why = _decoded_header(w) if len(w) >= MIN_SNIFF else None
        if why:
            break
    checked = set(words) if len(words) > 1 else {compact}
    for m in _SNIFF_RUN.finditer(s) if not why else ():  # "/9j/4AAQ....<200 more>.<200 more>"
        why = _decoded_header(m.group()) if m.group() not in checked else None
        if why:
            break
    if why or len(s) <= MAX_B64_RUN:
        return why
    n = best = 0
    for tok in words:
        n = n + len(tok) if len(tok) >= MIN_LINE and _LINE.fullmatch(tok) else 0
        best = max(best, n)
    if best > MAX_B64_RUN:
        return f"{best} base64/hex characters in whitespace-separated lines"
    n = len(_UU_LINE.findall(s))
    if n * 60 > MAX_B64_RUN:
        return f"{n} uuencoded lines"
    for m in _BYTE_TEXT.finditer(s):
        n = len(_BYTE_TOKEN.findall(m.group()))
        if n > MAX_BYTE_TOKENS:
            return f"a run of {n} hex/decimal numbers in text (a byte dump)"
    return None


def _byte_head(lst: list | tuple, n: int = 16) -> bytes:
    """The first `n` integers of a list and its nested lists as bytes, if they are all in 0..255 (else b"")."""
    out: list[int] = []
    stack = [iter(lst)]
    while stack and len(out) < n:
        for v in stack[-1]:
            if type(v) is int and 0 <= v <= 255:
                out.append(v)
                if len(out) >= n:
                    break
            elif isinstance(v, (list, tuple)):
                stack.append(iter(v))
                break
            else:
                return b""
        else:
            stack.pop()
    return bytes(out) if len(out) >= n else b""


def _is_grid(d: dict) -> bool:
    """`d["counts"]` is a heatmap grid: exactly `rows` x `cols` (at most GRID_MAX each) ints."""
    rows, cols, counts = d.get("rows"), d.get("cols"), d.get("counts")
    return (type(rows) is int and type(cols) is int and 0 < rows <= GRID_MAX and 0 < cols <= GRID_MAX
            and isinstance(counts, list) and len(counts) == rows
            and all(type(r) is list and len(r) == cols and set(map(type, r)) == {int} for r in counts))


_NUMS = {int, float}


def _scan(obj: Any, root: str) -> str | None:
    """Why one record (or any other payload) carries image data, naming where; None if it does not."""
    total = loose = 0  # numbers anywhere; numbers in lists outside a heatmap grid
    stack: list[tuple[str, Any, bool]] = [(root, obj, False)]
    while stack:
        path, o, in_list = stack.pop()
        where = path or "<root>"
        if isinstance(o, dict) and len(o) > 1 and all(type(k) is str and k.isdecimal() and len(k) <= 9 for k in o):
            o = [o[k] for k in sorted(o, key=int)]  # an array as an object ({"0": 255, "1": 216}: a typed array)
        if isinstance(o, dict):
            grid = "counts" in o and _is_grid(o)
            for k, v in o.items():
                key = k if type(k) is str else str(k)
                why = _string_problem(key) if len(key) >= MIN_SNIFF else None
                if why:
                    return f"{why} in a key at {where}"
                if v is None or isinstance(v, bool):
                    continue
                if isinstance(v, (int, float)):
                    total += 1
                    continue
                if key.lower() in IMAGE_KEYS:
                    return f"image-like key {key!r} at {where}"
                if grid and key == "counts":
                    total += o["rows"] * o["cols"]
                else:
                    stack.append((f"{path}/{key}", v, False))
        elif isinstance(o, (list, tuple)):
            if not in_list and len(o) >= 2:
                name = _header(_byte_head(o), False)
                if name:
                    return f"{name} image bytes as a list of numbers at {where}"
            if set(map(type, o)) <= _NUMS:
                n = len(o)
            else:
                n = 0
                for i, v in enumerate(o):
                    if isinstance(v, (int, float)) and not isinstance(v, bool):
                        n += 1
                    if not (v is None or isinstance(v, (bool, int, float))):
                        stack.append((f"{path}/{i}", v, True))
            if n > GRID_MAX:
                return f"a numeric array of {n} numbers in one list at {where} (a heatmap row has at most {GRID_MAX})"
            total, loose = total + n, loose + n
            if loose > LOOSE_MAX:
                return (f"numeric arrays of more than {LOOSE_MAX} numbers outside a heatmap grid in one record "
                        f"(at {where}; only pixels are that many)")
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
        if total > MAX_NUMBERS:
            return (f"a numeric array of more than {MAX_NUMBERS} numbers in one record (at {where}; the largest "
                    f"heatmap grid has {MAX_GRID})")
    return None


def find_image_data(obj: Any) -> str | None:
    """Why `obj` (JSON-like data, before or after serialisation) carries image data, naming where; None if it
    does not. The records of a batch are checked one by one (each has its own number budget)."""
    if isinstance(obj, dict) and "epoch" in obj and isinstance(obj.get("events"), list):
        why = _scan({k: v for k, v in obj.items() if k != "events"}, "")
        for i, rec in enumerate(obj["events"]):
            why = why or _scan(rec, f"/events/{i}")
        return why
    return _scan(obj, "")


def _without_sealed_snapshot(obj: Any) -> Any:
    """The `ok` result of the `snapshot` command with its sealed image replaced by a marker (the one exception)."""
    if (isinstance(obj, dict) and obj.get("cmd") == "snapshot" and obj.get("status") == "ok"
            and isinstance(obj.get("result"), dict) and is_sealed(obj["result"].get("image"))):
        return {**obj, "result": {**obj["result"], "image": None}}
    return obj


def _suspicious(data: bytes, thorough: bool) -> bool:
    if not data.isascii() or data[:1] not in (b"{", b"["):
        return True
    if (thorough and len(data) > 2 * LOOSE_MAX
            and data.count(b",") + data.count(b"[") + data.count(b"{") > LOOSE_MAX):
        return True
    low = data.lower()
    if _KEYS_RE.search(low) is not None or b"data:image/" in low or _HEADS_RE.search(data) is not None:
        return True
    if b'{"0":' in data or (b'"63":' in data and b'"64":' in data) or b"\\nM" in data:
        return True  # an array as an object (typed arrays count from 0; more than GRID_MAX have "64"), uuencode
    if (b"\\\\x" in data or b"\\\\u00" in data or b"\x7f" in data
            or (b"\\u" in data and _BIN_ESC_RE.search(data) is not None)):
        return True  # escaped bytes (a bytes repr), binary characters in text
    runs = (data.replace(b'\\"', b"aa") if b"\\" in data else data).translate(_ENCODED)  # escaped quotes: ascii85
    if _RUN_NEEDLE in runs:
        return True
    return b" " in data and (_LINES_NEEDLE in runs or _RUN_NEEDLE in data.translate(_BYTES_TXT))


def check_result(cmd: str, data: Any) -> str | None:
    """Why the result data of command `cmd` must not be sent (before serialisation: bytes and arrays are named as
    such); the sealed image of a `snapshot` result passes."""
    return find_image_data(_without_sealed_snapshot({"cmd": cmd, "status": "ok", "result": data}))


def check_payload(raw: bytes | str, *, thorough: bool = True) -> str | None:
    """Why a serialised payload (MQTT payload, stored event record) must not be sent; None if it may.

    A cheap screen decides whether the payload is parsed: non-ASCII or non-JSON-object payloads, a suspicious key,
    base64 image header or run of encoded characters or numbers, or (`thorough`) enough commas and brackets to hold
    more than LOOSE_MAX numbers. Batches of already checked records pass `thorough=False` (their records were
    checked one by one)."""
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
