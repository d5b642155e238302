"""SyncService: the device side of sync, as the runtime uses it (outbox, MQTT client, delivery, commands, state).

It takes the device identity (`[device]`) and its own `[sync]` section, never the whole device config.
With `config.broker == ""` nothing touches the network: events stay in the outbox.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from paho.mqtt.subscribeoptions import SubscribeOptions

from edge.core.device import DeviceIdentity
from edge.core.events import Event
from edge.privacy.guard import guard_publish
from sync import payloads, topics
from sync.config import SyncConfig
from sync.client import ClientOptions, MqttClient, Tls, packet_size, publish_properties
from sync.commands import CommandRouter, Incoming, builtin_handlers
from sync.delivery import Delivery
from sync.outbox import Outbox
from sync.telemetry import TelemetryLoop

log = logging.getLogger(__name__)


def _sw_version() -> str:
    try:
        from importlib.metadata import version

        return version("storefront-edge")
    except Exception:
        return "unknown"


class SyncService:
    """Outbox + MQTT for one device. `outbox` is the runtime's EventSink."""

    def __init__(self, identity: DeviceIdentity, config: SyncConfig, *,
                 commands: dict[str, Callable[[dict], dict]] | None = None) -> None:
        self.identity, self.config = identity, config
        self.topics = topics.DeviceTopics(identity.store, identity.id)
        self.outbox = Outbox(config.resolved_outbox_path(identity.id), max_bytes=int(config.max_outbox_mb * 2**20),
                             max_event_bytes=config.max_event_bytes, durable_streams=config.durable_streams)
        self._state: dict = {"kind": identity.kind, "sw": _sw_version()}
        self._state_lock = threading.Lock()
        self._bd_seq = -1
        self._started = time.time()
        handlers = builtin_handlers(emit_ack=self._emit_alert_ack, started=self._started)
        handlers.update(commands or {})
        self.router = CommandRouter(identity.id, identity.store, handlers, self._reply,
                                    max_bytes=config.max_command_bytes, max_depth=config.max_command_depth,
                                    max_age_s=config.command_max_age_s, max_ages=config.command_max_ages)
        self.client: MqttClient | None = None
        self.delivery: Delivery | None = None
        self.telemetry: TelemetryLoop | None = None
        self._running = False
        self._routes: list[tuple[str, Callable]] = []  # (topic prefix, handler(msg)) for extra subscriptions
        self._connect_hooks: list[Callable[[], None]] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Open the outbox; with a broker configured, connect (birth, LWT) and start delivery and telemetry."""
        if self._running:
            return
        self.outbox.open()
        self._running = True
        s = self.config
        if not s.broker:
            log.info("no broker configured: events stay in the outbox %s", self.outbox.path)
            return
        cmd_opts = SubscribeOptions(qos=1, retainAsPublished=True)  # so a retained command is recognisable
        subs = [(self.topics.ack, SubscribeOptions(qos=1))] + [(f, cmd_opts) for f in self.topics.command_filters()]
        tls = Tls(s.ca_file, s.cert_file, s.key_file) if s.tls else None
        client_id = s.resolved_client_id(self.identity.store, self.identity.id)
        opts = ClientOptions(host=s.broker, port=s.port, client_id=client_id,
                             username=s.username, password=s.resolved_password(), tls=tls,
                             keepalive_s=s.keepalive_s, session_expiry_s=s.session_expiry_s,
                             reconnect_min_s=s.reconnect_min_s, reconnect_max_s=s.reconnect_max_s,
                             max_inflight=s.window + 10, subscriptions=subs, payload_guard=guard_publish)
        client = MqttClient(opts)
        self.delivery = Delivery(self.outbox, self.topics, self._publish_record, window=s.window,
                                 batch_max=s.batch_max, batch_bytes=s.batch_bytes,
                                 ack_timeout_s=s.ack_timeout_s, backlog_rate=s.backlog_rate,
                                 request_ack=self._request_ack)
        client.before_connect = self._before_connect
        client.on_connected = self._on_connected
        client.on_disconnected = lambda reason: self.delivery.notify_disconnected()
        client.on_message = self._on_message
        client.on_publish = self.delivery.notify_puback
        self.client = client
        self.router.start()
        self.delivery.start()
        client.start()
        self.telemetry = TelemetryLoop(self.outbox.emit, s.telemetry_interval_s, self._telemetry_extra,
                                       str(self.outbox.path.parent))
        self.telemetry.start()

    def stop(self, flush_timeout_s: float = 2.0) -> None:
        """Graceful stop: flush what the broker and cloud take within the timeout, publish offline, close."""
        if not self._running:
            return
        self._running = False
        if self.telemetry is not None:
            self.telemetry.stop()
        if self.client is not None and self.delivery is not None:
            if self.client.connected:
                self.delivery.wait_idle(flush_timeout_s)
                offline = self._state_payload("offline", reason="stopped")
                if guard_publish(self.topics.state, offline) is None:  # paho directly: the guard by hand
                    info = self.client.paho.publish(self.topics.state, offline, qos=1, retain=True)
                    try:
                        info.wait_for_publish(1.0)
                    except (RuntimeError, ValueError):
                        log.warning("offline state not confirmed by the broker")
            self.delivery.stop()
            self.router.stop()
            self.client.stop()
        self.outbox.close()

    def set_state(self, **fields) -> None:
        """Merge fields (models and versions, capabilities...) into the retained state; republish if online."""
        with self._state_lock:
            self._state.update(fields)
        if self.client is not None and self.client.connected:
            self.client.publish(self.topics.state, self._state_payload("online"), retain=True)

    def add_command(self, name: str, handler: Callable[[dict], dict]) -> None:
        """Register (or override) a command handler, e.g. the model-update agent's."""
        self.router.handlers[name] = handler

    def route(self, prefix: str, handler: Callable) -> None:
        """Hand messages whose topic starts with prefix to handler(msg) (network thread: keep it short)."""
        self._routes.append((prefix, handler))

    def on_connect(self, hook: Callable[[], None]) -> None:
        """Call hook() after every (re)connection, e.g. to renew dynamic subscriptions (network thread)."""
        self._connect_hooks.append(hook)

    def metrics(self) -> dict:
        m = self.outbox.metrics() if self.outbox._db is not None else {}
        d = self.delivery.metrics() if self.delivery is not None else {}
        return {**m, "sent": d.get("sent", 0), "messages": d.get("messages", 0),
                "historical_sent": d.get("historical", 0), "go_backs": d.get("go_backs", 0),
                "watermark": d.get("watermark"), "acks_refused": d.get("acks_refused", 0),
                "connected": bool(self.client and self.client.connected),
                "last_error": (self.client.last_error if self.client else None) or d.get("last_error"),
                "commands": dict(self.router.stats), "bd_seq": self._bd_seq}

    # ------------------------------------------------------------------ MQTT hooks
    def _state_payload(self, status: str, **extra) -> bytes:
        with self._state_lock:
            fields = {**self._state, **extra}
        me = self.identity
        return payloads.state(me.id, me.store, me.kind, status, self._bd_seq, fields)

    def _before_connect(self) -> None:
        """New connection attempt: next bdSeq (persisted), and a will that carries it."""
        self._bd_seq = self.outbox.next_bd_seq()
        me = self.identity
        will = payloads.state(me.id, me.store, me.kind, "offline", self._bd_seq, {"reason": "connection lost"})
        self.client.will_set(self.topics.state, will, retain=True)

    def _on_connected(self, session_present: bool, properties) -> None:
        self.client.publish(self.topics.state, self._state_payload("online"), retain=True)
        self.delivery.notify_connected(self.client.server_max_packet)
        for hook in self._connect_hooks:
            try:
                hook()
            except Exception:  # a hook must not break the connection handling
                log.exception("connect hook failed")

    def _on_message(self, msg) -> None:
        for prefix, handler in self._routes:
            if msg.topic.startswith(prefix):
                handler(msg)
                return
        parsed = topics.parse(msg.topic)
        if parsed is None:
            log.warning("message on unexpected topic %r ignored", msg.topic)
            return
        if parsed.channel == "ack":
            ack = payloads.parse_ack(msg.payload)
            if ack is not None:
                self.delivery.notify_ack(*ack)
            return
        if parsed.channel == "cmd":
            props = msg.properties
            self.router.submit(Incoming(parsed.name, bytes(msg.payload), bool(msg.retain),
                                        getattr(props, "ResponseTopic", None) if props else None,
                                        getattr(props, "CorrelationData", None) if props else None,
                                        broadcast=not msg.topic.startswith(self.topics.base + "/")))

    def _request_ack(self) -> None:
        """Subscribe to the ack topic again: the broker re-sends the retained ack (delivery thread)."""
        if self.client is not None and self.client.connected:
            self.client.subscribe(self.topics.ack, SubscribeOptions(qos=1))

    def _publish_record(self, topic: str, payload: bytes) -> int | None:
        return self.client.publish(topic, payload, qos=1)

    def _reply_topic(self, cmd: Incoming) -> str:
        """The command's response topic, else `cmd_result/{name}`. Refused (logged): wildcards, `$` topics, and
        inside `retail/v1/` anything but this device's own `cmd_result/` (a command must not make the device
        write to another device's topics, fleet commands, or its own state, ack, cmd or event topics)."""
        topic, default = cmd.response_topic, self.topics.cmd_result(cmd.name)
        if not topic:
            return default
        in_tree = topic == topics.ROOT or topic.startswith(topics.ROOT + "/")
        if (len(topic) > 512 or any(c in topic for c in "+#\x00") or topic.startswith("$")
                or (in_tree and not topic.startswith(self.topics.base + "/cmd_result/"))):
            log.warning("command %s: response topic %r refused, answering on %s", cmd.name, topic[:200], default)
            return default
        return topic

    def _reply(self, cmd: Incoming, raw: bytes) -> None:
        topic = self._reply_topic(cmd)
        if self.client is None:
            return
        props = publish_properties(None, cmd.correlation) if cmd.correlation is not None else None
        limit = self.client.server_max_packet
        if limit and packet_size(topic, raw, props) > limit:  # the client would drop it: the requester would wait
            try:
                cmd_id = payloads.decode_object(raw, max_bytes=len(raw)).get("id")
            except payloads.PayloadError:
                cmd_id = None
            why = f"result of {len(raw)} bytes is larger than the broker's maximum packet size ({limit} bytes)"
            log.error("command %s: %s: answered with an error instead", cmd.name, why)
            raw = payloads.result(self.topics.device, self.topics.store, cmd.name,
                                  cmd_id if isinstance(cmd_id, str) else None, False, reason=why)
        self.client.publish(topic, raw, qos=1, properties=props)

    # ------------------------------------------------------------------ helpers
    def _emit_alert_ack(self, args: dict) -> None:
        self.outbox.emit(Event("alert_acked", {"alert_event_id": args["event_id"], "by": args.get("by", ""),
                                               "note": args.get("note", "")}, stream="events"))

    def _telemetry_extra(self) -> dict:
        m = self.metrics()
        return {"outbox_depth": m.get("depth"), "outbox_bytes": m.get("bytes"), "connected": m.get("connected"),
                "dead_lettered": m.get("dead_lettered"), "dropped": m.get("dropped"),
                "acks_refused": m.get("acks_refused")}
