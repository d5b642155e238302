"""Send commands to devices and collect their results (cloud side; used by `edge sync send`, `edge fleet`, tests).

Results are matched by the command `id` (echoed by the device) and the MQTT v5 correlation data.
"""
from __future__ import annotations

import threading
import time
import uuid

from paho.mqtt.subscribeoptions import SubscribeOptions

from sync import payloads, topics
from sync.client import ClientOptions, MqttClient, publish_properties


class Requester:
    """A short-lived v5 client that publishes commands and gathers result payloads by id."""

    def __init__(self, opts: ClientOptions, reply_filters: list[str]) -> None:
        opts.client_id = opts.client_id or f"sf-req-{uuid.uuid4().hex[:8]}"
        opts.clean_start, opts.session_expiry_s = True, 0
        opts.subscriptions = [(f, SubscribeOptions(qos=1)) for f in reply_filters]
        self.client = MqttClient(opts)
        self.client.on_message = self._on_message
        self.client.paho.on_subscribe = self._on_subscribe
        self._subacks = threading.Semaphore(0)
        self._n_filters = len(reply_filters)
        self._lock = threading.Condition()
        self.results: dict[str, list[dict]] = {}
        self.raw: list[tuple[str, bytes, object]] = []  # (topic, payload, properties) of every reply

    def __enter__(self) -> "Requester":
        self.client.start()
        if not self.client.wait_connected(10):
            self.client.stop()
            raise ConnectionError(self.client.last_error or "cannot connect")
        for _ in range(self._n_filters):  # replies published before our SUBACK would be missed
            self._subacks.acquire(timeout=5)
        return self

    def __exit__(self, *exc) -> None:
        self.client.stop()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self._subacks.release()

    def _on_message(self, msg) -> None:
        try:
            obj = payloads.decode(msg.payload, max_bytes=1 << 20, max_depth=32)
        except payloads.PayloadError:  # junk on a result topic: kept raw, never raised
            obj = None
        with self._lock:
            self.raw.append((msg.topic, bytes(msg.payload), msg.properties))
            if isinstance(obj, dict):
                self.results.setdefault(str(obj.get("id")), []).append(obj)
            self._lock.notify_all()

    def send(self, topic: str, args: dict | None = None, *, cmd_id: str | None = None, payload: bytes | None = None,
             response_topic: str | None = None, correlation: bytes | None = None, retain: bool = False,
             qos: int = 1) -> str:
        """Publish one command (or a raw payload); returns its id."""
        cmd_id = cmd_id or uuid.uuid4().hex[:12]
        raw = payload if payload is not None else payloads.command(cmd_id, args)
        self.client.publish(topic, raw, qos=qos, retain=retain,
                            properties=publish_properties(response_topic, correlation))
        return cmd_id

    def wait(self, ids: list[str], timeout: float, each: int = 1) -> dict[str, list[dict]]:
        """Wait until every id has `each` results (or the timeout); returns the results seen per id."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while any(len(self.results.get(i, [])) < each for i in ids):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._lock.wait(min(left, 0.2))
            return {i: list(self.results.get(i, [])) for i in ids}


def device_reply_filter(store: str = "+", device: str = "+", name: str = "+") -> str:
    return f"{topics.ROOT}/{store}/{device}/cmd_result/{name}"
