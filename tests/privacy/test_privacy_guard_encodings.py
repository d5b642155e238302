"""The payload guard (edge/privacy/guard.py) against the bypasses found in review: image bytes in other text
encodings (MIME base64 lines, hex, base32/85, decimal text) and small or split pixel arrays (bytes as numbers, crops
under the old 4,096-number limit, rows wrapped in objects). Each is refused as a stored record, in a batch and as a
command result; the largest heatmap the config allows, a realistic batch and other legitimate payloads pass, and
ordinary records are not even parsed."""
from __future__ import annotations

import base64
import io
import time
import uuid
import zlib

import cv2
import numpy as np
import pytest

from edge.privacy import guard
from edge.privacy.guard import check_payload, check_result, find_image_data
from sync import payloads

_rng = np.random.default_rng(0)
CROP = cv2.GaussianBlur(_rng.integers(0, 255, (96, 96, 3), np.uint8), (7, 7), 0)  # a face-sized crop
JPG = cv2.imencode(".jpg", CROP, [cv2.IMWRITE_JPEG_QUALITY, 70])[1].tobytes()
PNG = cv2.imencode(".png", CROP)[1].tobytes()
GREY48 = cv2.cvtColor(cv2.resize(CROP, (48, 48)), cv2.COLOR_BGR2GRAY)
RGB64 = cv2.resize(CROP, (64, 64))


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def _lines(s: str, width: int, sep: str = "\n") -> str:
    return sep.join(s[i:i + width] for i in range(0, len(s), width))


def _grid(a: np.ndarray) -> dict:
    return {"rows": a.shape[0], "cols": a.shape[1], "counts": a.tolist()}


B64 = base64.b64encode(JPG).decode()
BYPASSES = {  # name: (event data, what the reason names)
    # text encodings
    "base64 MIME lines (encodebytes)": ({"note": base64.encodebytes(JPG).decode()}, "base64 of a JPEG"),
    "base64 PEM lines, CRLF": ({"note": _lines(B64, 64, "\r\n")}, "base64 of a JPEG"),
    "base64 after a word": ({"note": "evidence: " + base64.b64encode(PNG[:150]).decode()}, "base64 of a PNG"),
    "hex with spaces": ({"note": JPG.hex(" ")}, "hex of a JPEG"),
    "hex upper case in groups": ({"note": JPG.hex(" ", 4).upper()}, "hex of a JPEG"),
    "hex lines (xxd -p)": ({"note": _lines(JPG.hex(), 60)}, "hex of a JPEG"),
    "hex with colons": ({"note": JPG.hex(":")}, "hex/decimal numbers"),
    "hex": ({"note": JPG.hex()}, "base64/hex"),
    "base85": ({"note": base64.b85encode(JPG).decode()}, "base64/hex/base85"),
    "ascii85": ({"note": base64.a85encode(JPG).decode()}, "ascii85"),
    "base32": ({"note": base64.b32encode(JPG).decode()}, "base64/hex"),
    "decimal bytes in text": ({"note": ",".join(map(str, JPG))}, "hex/decimal numbers"),
    "raw pixels as spaced decimals": ({"note": " ".join(map(str, GREY48.ravel()))}, "hex/decimal numbers"),
    "PNG in MIME lines": ({"note": base64.encodebytes(PNG).decode()}, "base64 of a PNG"),
    "numpy .npy in MIME lines": ({"note": base64.encodebytes(_npy(GREY48)).decode()}, "numpy .npy"),
    "zlib pixels in MIME lines": ({"note": base64.encodebytes(zlib.compress(GREY48.tobytes())).decode()}, "zlib"),
    "raw pixels in MIME lines": ({"note": base64.encodebytes(GREY48.tobytes()).decode()}, "whitespace-separated"),
    "raw pixels in space-separated lines": ({"note": _lines(base64.b64encode(GREY48.tobytes()).decode(), 76, " ")},
                                            "whitespace-separated"),
    "base64 in a key": ({"k": {B64: 1}}, "in a key"),
    # numbers
    "JPEG bytes as a list of ints": ({"v": list(JPG)}, "JPEG image bytes as a list of numbers"),
    "JPEG bytes in short rows": ({"v": [list(JPG[i:i + 16]) for i in range(0, len(JPG), 16)]}, "JPEG image bytes"),
    "48x48 grey crop, flat": ({"v": GREY48.ravel().tolist()}, "numeric array of 2304 numbers in one list"),
    "48x48 grey crop, rows in objects": ({"rows": [{"r": r.tolist()} for r in GREY48]}, "outside a heatmap grid"),
    "48x48 grey crop, nested lists": ({"grid": GREY48.tolist()}, "outside a heatmap grid"),
    "32x32 crop as floats": ({"grid": (GREY48[:32, :32] / 255).round(3).tolist()}, "outside a heatmap grid"),
    "64x64x3 rows in objects": ({"rows": [{"r": row.ravel().tolist()} for row in RGB64]}, "192 numbers in one list"),
    "64x64x3 in rows of 64": ({"rows": [{"r": row.reshape(3, 64).tolist()} for row in RGB64]}, "outside a heatmap"),
    "image split into two heatmap-shaped grids": ({"a": _grid(np.zeros((64, 64), int)),
                                                   "b": _grid(np.zeros((64, 64), int))}, "numbers in one record"),
    "40x40x3 pixels as object values": ({"px": {f"p{i}": int(v) for i, v in
                                                enumerate(cv2.resize(CROP, (40, 40)).ravel())}},
                                        "numbers in one record"),
}
PER_RECORD_ONLY = {"40x40x3 pixels as object values"}  # numbers are counted per record (thorough), see delivery


def _body(kind: str, data: dict, i: int = 0, stream: str = "events") -> str:
    return payloads.event_body(kind, stream, 1.8e9 + i, uuid.UUID(int=i).hex, data, max_bytes=1 << 20)


def _batch(bodies: list[str]) -> bytes:
    return payloads.batch("d001", "s001", "e" * 16, list(enumerate(bodies, 1)), False)


def test_the_reviewer_reproducer_cases_are_refused():
    """The cases of the review's reproducer, as it built them: every one is refused now."""
    for data in ({"note": base64.encodebytes(JPG).decode()}, {"note": JPG.hex(" ")},
                 {"note": base64.b85encode(JPG).decode()}, {"v": list(JPG)}, {"v": GREY48.ravel().tolist()},
                 {"rows": [{"r": row.ravel().tolist()} for row in RGB64]}):
        assert check_payload(_body("zone_entered", data)) is not None, str(data)[:80]
    res = {"debug": base64.encodebytes(JPG).decode()}
    assert check_result("ping", res) is not None
    assert guard.guard_publish("retail/v1/s1/d1/cmd_result/ping",
                               payloads.result("s1", "d1", "ping", "x", True, data=res)) is not None


@pytest.mark.parametrize("name", BYPASSES)
def test_encoded_and_split_image_data_is_refused(name):
    data, why = BYPASSES[name]
    reason = find_image_data({"v": 1, "data": data})
    assert reason is not None and why in reason, reason
    body = _body("zone_entered", data)
    assert why in (check_payload(body) or ""), check_payload(body)
    assert check_result("ping", data) is not None
    if name not in PER_RECORD_ONLY:  # the client's screen of a batch of checked records catches these too
        assert check_payload(_batch([_body("zone_entered", {"zone": "door"}, 7), body]), thorough=False) is not None


# ------------------------------------------------------------------------------------------------ legitimate
def _largest_heatmap() -> dict:
    """The event data of the real producer at the largest grid the config allows; its first cells are a JPEG
    header's values (counts are never sniffed as bytes) and the counts go up to a long period's."""
    from edge.analytics.config import HeatmapConfig
    from edge.analytics.heatmap import Heatmap

    side = {f: [m.le for m in HeatmapConfig.model_fields[f].metadata if hasattr(m, "le")][0] for f in ("cols", "rows")}
    hm = Heatmap.from_config(HeatmapConfig(cols=side["cols"], rows=side["rows"], period_s=86400, frame_size=(640, 480)))
    hm._reset(0.0, 1.8e9)
    hm._counts[:] = np.random.default_rng(1).integers(0, 250_000, hm._counts.shape)
    hm._counts[0, :4] = [255, 216, 255, 224]
    hm._frames = 2_160_000
    (ev,) = hm.flush(86400.0, 1.8e9 + 86400)
    assert (ev.data["rows"], ev.data["cols"]) == (guard.GRID_MAX, guard.GRID_MAX)
    return ev.data


def test_the_largest_heatmap_passes_as_a_record_a_batch_and_a_result():
    data = _largest_heatmap()
    body = _body("occupancy_heatmap", data)
    assert find_image_data(data) is None
    assert check_payload(body) is None
    assert check_payload(_batch([body] * 3), thorough=False) is None  # each record has its own budget
    assert check_result("heatmap", {"heatmap": data, "note": "ok"}) is None


def _realistic_records() -> list[tuple[str, dict, str]]:
    """(kind, data, stream) of what a device sends: analytics events, alerts, a model update, telemetry."""
    from sync.telemetry import health_sample, monitor_summary

    sha, sig = "9f" * 32, base64.b64encode(bytes(range(64))).decode()
    out: list[tuple[str, dict, str]] = []
    for i in range(60):
        out.append(("person_entered", {"track_id": i, "scope": "main", "t": 12.5 + i, "t_wall": 1.8e9 + i,
                                       "source": "default", "zone": "door", "bbox": [120, 80, 64, 180],
                                       "conf": 0.91}, "events"))
    out += [("line_crossed", {"line": "entry", "direction": "in", "point": [321.5, 240.25], "track_id": 3},
             "events"),
            ("occupancy_heatmap", {"heatmap": "floor", "rows": 12, "cols": 16, "total": 1234, "frames": 9000,
                                   "counts": [[(r * 16 + c) % 40 for c in range(16)] for r in range(12)]}, "events"),
            ("alert_opened", {"rule": "queue", "value": 7, "duplicates": [uuid.UUID(int=i).hex for i in range(20)],
                              "evidence": {"queue_length": 7, "track_ids": list(range(50))}}, "alerts"),
            ("model_update", {"name": "pose_landmark_full", "version": "2.1.0", "rollout": "r-2026-11",
                              "state": "FAILED", "phase": "DOWNLOADING", "timings": {"download_s": 12.5},
                              "reason": f"sha256 mismatch for chunk 3: expected {sha}, got {'0a' * 32}",
                              "shadow": {"passed": False, "samples": 240, "reasons": ["latency p95 31 ms > 25 ms"],
                                         "landmark_drift": {"mean": 0.0123, "p95": 0.031}}}, "events"),
            ("update_manifest_seen", {"sha256": sha, "signature": sig, "signature_hex": bytes(range(64)).hex(),
                                      "key_id": uuid.uuid4().hex}, "events"),
            ("pose_summary", {"landmarks": [[0.51, 0.32, -0.11, 0.98]] * 33, "hand": [[0.2, 0.4, 0.0]] * 21,
                              "polygon": [[i * 10, (i * 37) % 480] for i in range(64)]}, "events"),
            ("tryon_session", {"colours": ["red", "navy", "olive"], "garments": 3,
                               "reason": "circuit opened: " + "the landmark model failed 3 times in a row; " * 30},
             "events"),
            ("health", health_sample(time.time() - 3600, {"monitor": monitor_summary(), "outbox_path":
                                                          "/var/lib/storefront-edge/outbox/outbox.sqlite"}),
             "telemetry")]
    return out


def test_a_realistic_batch_passes_record_by_record_and_as_a_batch():
    recs = _realistic_records()
    bodies = [_body(k, d, i, s) for i, (k, d, s) in enumerate(recs)]
    for (kind, data, _), body in zip(recs, bodies):
        assert find_image_data(data) is None, kind
        assert check_payload(body) is None, kind
    assert check_payload(_batch(bodies), thorough=False) is None
    assert check_payload(_batch(bodies)) is None
    assert check_result("status", {"events": [d for _, d, _ in recs[58:]]}) is None


def test_ordinary_records_are_not_parsed():
    """The cheap screen passes ordinary records and a batch of them without parsing (the guard runs on every
    publish)."""
    plain = [_body(k, d, i, s) for i, (k, d, s) in enumerate(_realistic_records()[:61])]
    for body in plain:
        assert not guard._suspicious(body.encode(), True), body
    assert not guard._suspicious(_batch(plain), False)
