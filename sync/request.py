"""Send commands to devices and collect their results (cloud side; used by `edge sync send`, `edge fleet`, tests).

Results are matched by the command `id` (echoed by the device) and the MQTT v5 correlation data.
"""
from __future__ import annotations

import time
import uuid

from sync import payloads, topics
from sync.client import ClientOptions, publish_properties
from sync.rollout import AdminConnection


class Requester(AdminConnection):
    """A short-lived v5 client that publishes commands and gathers result payloads by id. A publish the broker
    refuses (PUBACK 0x87: the ACL forbids this user the topic) raises ConnectionError from `wait` and `flush`;
    a refused reply subscription raises from `__enter__`."""

    def __init__(self, opts: ClientOptions, reply_filters: list[str]) -> None:
        opts.client_id = opts.client_id or f"sf-req-{uuid.uuid4().hex[:8]}"
        super().__init__(opts, reply_filters)
        self.results: dict[str, list[dict]] = {}
        self.raw: list[tuple[str, bytes, object]] = []  # (topic, payload, properties) of every reply

    def _message(self, msg) -> None:
        try:
            obj = payloads.decode(msg.payload, max_bytes=1 << 20, max_depth=32)
        except payloads.PayloadError:  # junk on a result topic: kept raw, never raised
            obj = None
        with self.cv:
            self.raw.append((msg.topic, bytes(msg.payload), msg.properties))
            if isinstance(obj, dict):
                self.results.setdefault(str(obj.get("id")), []).append(obj)
            self.cv.notify_all()

    def send(self, topic: str, args: dict | None = None, *, cmd_id: str | None = None, payload: bytes | None = None,
             response_topic: str | None = None, correlation: bytes | None = None, retain: bool = False,
             qos: int = 1) -> str:
        """Publish one command (or a raw payload); returns its id (its PUBACK is checked by `wait` / `flush`)."""
        cmd_id = cmd_id or uuid.uuid4().hex[:12]
        raw = payload if payload is not None else payloads.command(cmd_id, args)
        self.publish(topic, raw, retain=retain, qos=qos,
                     properties=publish_properties(response_topic, correlation))
        return cmd_id

    def wait(self, ids: list[str], timeout: float, each: int = 1) -> dict[str, list[dict]]:
        """Wait until every id has `each` results (or the timeout); returns the results seen per id.
        ConnectionError as soon as the broker has refused a publish."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while any(len(self.results.get(i, [])) < each for i in ids) and not self.failures:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cv.wait(min(left, 0.2))
            self.check_refused()
            return {i: list(self.results.get(i, [])) for i in ids}


def device_reply_filter(store: str = "+", device: str = "+", name: str = "+") -> str:
    return f"{topics.ROOT}/{store}/{device}/cmd_result/{name}"
