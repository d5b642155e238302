"""Validate event, alert and MQTT envelope payloads against the JSON Schemas in docs/schemas (draft 2020-12), and
check that no payload carries image data. Shared by tests/sync/test_event_schemas.py and the end-to-end tests
(imported by basename: tests/ is on sys.path, see tests/conftest.py)."""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "docs" / "schemas"
GRID_MAX = 64  # [[analytics.heatmaps]] cols / rows are at most 64: no list in a payload may be longer
MAX_STRING = 512  # longer strings are suspicious (an encoded image, a crop); reasons and titles are short
_BASE64 = re.compile(r"^[A-Za-z0-9+/=_-]{64,}$")
# keys that would mean a frame, a crop or a face left the device (as edge/core/decisions.py PRIVATE_KEYS)
IMAGE_KEYS = frozenset({"image", "frame", "frames", "mask", "crop", "face", "faces", "jpeg", "png", "thumbnail",
                        "embedding", "pixels", "snapshot"})


@cache
def schemas() -> dict[str, dict]:
    """File name -> schema, for every docs/schemas/*.schema.json."""
    return {p.name: json.loads(p.read_text()) for p in sorted(SCHEMA_DIR.glob("*.schema.json"))}


@cache
def registry() -> Registry:
    return Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas().values())


@cache
def validator(name: str) -> Draft202012Validator:
    """A validator for one schema file (its $refs resolve to the other files by their $id)."""
    return Draft202012Validator(schemas()[name], registry=registry())


def errors(name: str, payload) -> list[str]:
    """Every violation of schema `name` by payload, as 'path: message' lines (empty: valid)."""
    out = []
    for e in sorted(validator(name).iter_errors(payload), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in e.absolute_path) or "<root>"
        leaves = [c for c in e.context or [] if not c.context] if e.context else []
        detail = "; ".join(sorted({f"{'/'.join(map(str, c.absolute_path))}: {c.message}" for c in leaves}))[:600]
        out.append(f"{where}: {e.message[:300]}" + (f" ({detail})" if detail else ""))
    return out


def check(name: str, payload, what: str = "", *, scan: bool = True) -> None:
    """Assert payload is valid against schema `name` and (scan) carries no image data."""
    errs = errors(name, payload)
    assert not errs, f"{what or name} does not match docs/schemas/{name}:\n  " + "\n  ".join(errs) + \
        f"\npayload: {json.dumps(payload)[:1500]}"
    if scan:
        assert_no_image_data(payload, what or name)


def check_event(record: dict, what: str = "") -> None:
    """One event record: Event.to_dict() (device side) or a wire record with `seq`."""
    check("event.schema.json", record, what or f"event {record.get('kind')!r}")


def check_events(records: Iterable[dict]) -> int:
    n = 0
    for r in records:
        check_event(r)
        n += 1
    return n


def check_batch(payload: dict, topic: str | None = None) -> None:
    """One MQTT batch (the envelope and every record in it); with `topic`, records match it (events/{kind})."""
    check("batch.schema.json", payload, f"batch on {topic or '?'}", scan=False)  # up to batch_max records
    for rec in payload["events"]:
        assert_no_image_data(rec, f"{rec['kind']} record on {topic or '?'}")
    if topic is not None:
        channel = topic.split("/")[4:]
        for rec in payload["events"]:
            if channel[0] == "events":
                assert channel == ["events", rec["kind"]], (topic, rec["kind"])
            else:
                assert rec["stream"] == channel[0], (topic, rec["stream"])


def assert_no_image_data(obj, what: str = "payload") -> None:
    """No frame, crop or encoded image anywhere: no image-like keys (frame, crop, mask, ...) unless they hold a
    number (a heatmap's `frames` count), no list longer than the largest heatmap side
    (64), no numeric grid larger than 64 x 64, no long or base64-looking strings; an occupancy heatmap's grid is
    exactly rows x cols."""
    stack = [("", obj)]
    while stack:
        path, o = stack.pop()
        if isinstance(o, dict):
            bad = [k for k in IMAGE_KEYS & set(o) if not isinstance(o[k], (int, float, type(None)))]
            assert not bad, f"{what}: image-like key(s) {sorted(bad)} at {path or '<root>'}"  # counts are fine
            if {"counts", "rows", "cols", "heatmap"} <= set(o):
                grid = o["counts"]
                assert len(grid) == o["rows"] and all(len(r) == o["cols"] for r in grid), \
                    f"{what}: heatmap counts are not rows x cols at {path}"
            stack.extend((f"{path}/{k}", v) for k, v in o.items())
        elif isinstance(o, list):
            assert len(o) <= GRID_MAX, f"{what}: list of {len(o)} items at {path} (more than a heatmap row)"
            cells = sum(len(v) for v in o if isinstance(v, list))
            assert cells <= GRID_MAX * GRID_MAX, f"{what}: nested list of {cells} cells at {path}"
            stack.extend((f"{path}/{i}", v) for i, v in enumerate(o))
        elif isinstance(o, str):
            assert len(o) <= MAX_STRING, f"{what}: string of {len(o)} chars at {path}"
            assert not _BASE64.match(o), f"{what}: base64-looking string at {path}: {o[:40]}..."
        else:
            assert o is None or isinstance(o, (bool, int, float)), f"{what}: {type(o).__name__} at {path}"


def event_kinds() -> list[str]:
    """The kinds event.schema.json knows."""
    return list(schemas()["event.schema.json"]["properties"]["kind"]["enum"])


def stored_records(db) -> list[dict]:
    """The records the reference consumer (sync/consumer.py) stored in its `events` table (events and alerts), as
    wire records."""
    import sqlite3

    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT seq, event_id, kind, stream, ts, data FROM events ORDER BY seq").fetchall()
    return [{"seq": s, "event_id": e, "kind": k, "stream": st, "ts": ts, "data": json.loads(d)}
            for s, e, k, st, ts, d in rows]


class Tap:
    """A second MQTT subscriber beside the reference consumer (same topic filters): keeps every raw batch and state
    message; `check()` validates them all against their schemas."""

    def __init__(self, port: int, client_id: str = "schema-tap"):
        from paho.mqtt.subscribeoptions import SubscribeOptions

        from sync import topics
        from sync.client import ClientOptions, MqttClient

        self.messages: list[tuple[str, bytes]] = []
        self.client = MqttClient(ClientOptions("127.0.0.1", port, client_id=client_id, reconnect_min_s=0.1,
                                               reconnect_max_s=0.5, subscriptions=[
                                                   (f, SubscribeOptions(qos=1)) for f in topics.CONSUMER_FILTERS]))
        self.client.on_message = lambda msg: self.messages.append((msg.topic, bytes(msg.payload)))

    def __enter__(self) -> "Tap":
        self.client.start()
        assert self.client.wait_connected(5), self.client.last_error
        return self

    def __exit__(self, *exc) -> None:
        self.client.stop()

    def channels(self) -> set[str]:
        return {t.split("/")[4] for t, _ in self.messages}

    def check(self) -> dict[str, int]:
        """Validate every batch (events / alerts / telemetry) and state message; returns how many of each."""
        n = {"batches": 0, "records": 0, "states": 0}
        for topic, raw in self.messages:
            channel = topic.split("/")[4]
            if channel in ("events", "alerts", "telemetry"):
                payload = json.loads(raw)
                check_batch(payload, topic)
                n["batches"] += 1
                n["records"] += len(payload["events"])
            elif channel == "state":
                check("state.schema.json", json.loads(raw), topic)
                n["states"] += 1
        return n
