"""MQTT v5 client on paho-mqtt 2.x: persistent session, re-subscribe on connect, backoff reconnect, auth, TLS.

Reconnects wait a jittered, doubling delay (`retry_delay`) that resets only after a connection stayed up
`stable_s`: a fleet that lost its broker at once does not come back in lockstep, and a connection the broker
accepts and then drops at once (two clients with one client id taking over each other's session: mosquitto
2.0.11 just closes the old socket) backs off like a refused one and is logged as a likely client-id clash.

Reason codes are judged with `is_failure` (>= 0x80): 0x10 "no matching subscribers" is a success,
0x87 "not authorized" is a failure that reaches `on_publish` and `last_error`.
"""
from __future__ import annotations

import logging
import random
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

log = logging.getLogger(__name__)

TCP_NODELAY = True  # process default for ClientOptions.tcp_nodelay = None (`edge bench latency` measures both)
FLAPS_BEFORE_CLASH = 3  # connections in a row dropped within stable_s of their CONNACK: a client-id clash
SESSION_TAKEN_OVER = 0x8E
PACKET_TOO_LARGE = 0x95


def _read_puback_packet_too_large() -> None:
    """Let paho read PUBACK 0x95. mosquitto 2.0 answers a PUBLISH over its `message_size_limit` with it, a code
    MQTT v5 lists for CONNACK and DISCONNECT only: paho 2.2 takes that PUBACK for a malformed packet, closes the
    connection and resends the same message on every reconnect (a reconnect storm that blocks everything behind it).
    Read as a PUBACK failure, it reaches `on_publish` and the delivery dead-letters or splits the batch."""
    users = ReasonCode.names[PACKET_TOO_LARGE]["Packet too large"]  # paho's table: the inner lists are shared
    if PacketTypes.PUBACK not in users:
        users.append(PacketTypes.PUBACK)


_read_puback_packet_too_large()


def retry_delay(failures: int, min_s: float, max_s: float, rng: Callable[[float, float], float] = random.uniform
                ) -> float:
    """Wait before the next attempt after `failures` failed or short-lived ones in a row (0 = the first retry):
    a random point in [cap/2, cap], cap = min(max_s, min_s * 2**(failures + 1))."""
    cap = min(max_s, min_s * 2.0 ** min(failures + 1, 62))
    return rng(cap / 2, cap)


@dataclass
class Tls:
    """TLS files: CA that signed the broker certificate, and this client's certificate and key (optional)."""

    ca_file: str
    cert_file: str = ""
    key_file: str = ""

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=self.ca_file)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file or None)
        return ctx


@dataclass
class ClientOptions:
    host: str
    port: int = 1883
    client_id: str = ""
    username: str = ""
    password: str = ""
    tls: Tls | None = None
    keepalive_s: int = 30
    session_expiry_s: int = 86400
    clean_start: bool = False
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    max_inflight: int = 20
    tcp_nodelay: bool | None = None  # None = the module default TCP_NODELAY (on)
    stable_s: float | None = None  # a connection up this long resets the backoff; None = max(10, 2 * reconnect_max_s)
    subscriptions: list[tuple[str, SubscribeOptions]] = field(default_factory=list)
    # (topic, payload) -> None to publish, else the reason it is refused (the device's privacy guard,
    # edge.privacy.guard.guard_publish); None = no check (cloud-side tools)
    payload_guard: Callable[[str, bytes], str | None] | None = None


def publish_properties(response_topic: str | None = None, correlation: bytes | None = None) -> Properties | None:
    if response_topic is None and correlation is None:
        return None
    props = Properties(PacketTypes.PUBLISH)
    if response_topic is not None:
        props.ResponseTopic = response_topic
    if correlation is not None:
        props.CorrelationData = correlation
    return props


def packet_size(topic: str, payload: bytes, properties: Properties | None = None) -> int:
    """Upper bound of the size of a QoS 1 PUBLISH packet (what the broker's MaximumPacketSize limits)."""
    props = len(properties.pack()) if properties is not None else 1
    return 1 + 4 + 2 + len(topic.encode("utf-8", "surrogatepass")) + 2 + props + len(payload)


class MqttClient:
    """A paho v5 client run by paho's network thread (`loop_start`). Callbacks run on that thread: keep them short.

    Hooks (all optional): `before_connect()` runs before every connection attempt (set the will there),
    `on_connected(session_present, properties)`, `on_disconnected(reason_text)`, `on_message(msg)`,
    `on_publish(mid, reason_code_value, reason_text)`.
    """

    def __init__(self, opts: ClientOptions) -> None:
        self.opts = opts
        self.before_connect: Callable[[], None] | None = None
        self.on_connected: Callable[[bool, Any], None] | None = None
        self.on_disconnected: Callable[[str], None] | None = None
        self.on_message: Callable[[mqtt.MQTTMessage], None] | None = None
        self.on_publish: Callable[[int, int, str], None] | None = None
        self.last_error: str | None = None
        self.connect_count = 0
        self.server_max_packet: int | None = None
        self._connected = threading.Event()
        self._started = False
        self._refused = False
        self.failures = 0  # failed or short-lived connection attempts since the last stable connection
        self.flaps = 0  # of those, connections the broker accepted and then dropped within stable_s
        self.next_retry_s: float | None = None  # the wait before the next attempt, once one is due
        self._connected_at: float | None = None
        self._fail_reason: str | None = None
        self._stable_s = opts.stable_s if opts.stable_s is not None else max(10.0, 2 * opts.reconnect_max_s)
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=opts.client_id, protocol=mqtt.MQTTv5)
        c.reconnect_delay_set(opts.reconnect_min_s, opts.reconnect_max_s)
        c.max_inflight_messages_set(opts.max_inflight)
        c.max_queued_messages_set(0)
        if opts.username:
            c.username_pw_set(opts.username, opts.password or None)
        if opts.tls is not None:
            c.tls_set_context(opts.tls.context())
        c.on_pre_connect = self._on_pre_connect
        c.on_socket_open = self._on_socket_open
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        self.paho = c

    # ------------------------------------------------------------------ lifecycle
    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def start(self) -> None:
        """Connect in the background; paho retries with backoff until `stop()`."""
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.opts.session_expiry_s
        self.paho.connect_async(self.opts.host, self.opts.port, keepalive=self.opts.keepalive_s,
                                clean_start=self.opts.clean_start, properties=props)
        self.paho.loop_start()
        self._started = True

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    def stop(self, timeout: float = 3.0) -> None:
        """Disconnect cleanly (no will) and stop the network thread."""
        if not self._started:
            return
        self._started = False
        try:
            self.paho.disconnect()
        except Exception:  # already gone
            log.debug("disconnect failed", exc_info=True)
        self.paho.loop_stop()
        self._connected.clear()

    def will_set(self, topic: str, payload: bytes, retain: bool = True) -> None:
        if self._refused_by_guard(topic, payload):
            return
        self.paho.will_set(topic, payload, qos=1, retain=retain)

    def _refused_by_guard(self, topic: str, payload: bytes) -> bool:
        """True (and `last_error` set) when the payload guard refuses the payload; the guard logs and counts it."""
        if self.opts.payload_guard is None:
            return False
        reason = self.opts.payload_guard(topic, payload)
        if reason is None:
            return False
        self.last_error = f"privacy guard refused a payload to {topic}: {reason}"
        return True

    # ------------------------------------------------------------------ publish / subscribe
    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
                properties: Properties | None = None) -> int | None:
        """Queue a publish; returns its mid (its PUBACK reaches `on_publish`) or None if paho or the payload guard
        refused it."""
        if self._refused_by_guard(topic, payload):
            return None
        size = packet_size(topic, payload, properties)
        if self.server_max_packet and size > self.server_max_packet:  # the broker would drop the connection over
            self.last_error = (f"publish to {topic} refused: a {size}-byte packet is too large for the broker "
                               f"(its maximum packet size is {self.server_max_packet})")
            log.error("%s", self.last_error)  # it, and paho would send it again on every reconnect
            return None
        try:
            info = self.paho.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        except (ValueError, TypeError) as e:
            self.last_error = f"publish refused: {e}"
            log.error("publish to %s refused: %s", topic, e)
            return None
        if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self.last_error = f"publish failed: {mqtt.error_string(info.rc)}"
            return None
        if info.rc == mqtt.MQTT_ERR_NO_CONN and qos == 0:
            return None
        return info.mid

    def subscribe(self, topic: str, options: SubscribeOptions) -> None:
        self.paho.subscribe(topic, options=options)

    # ------------------------------------------------------------------ paho callbacks (network thread)
    def _on_pre_connect(self, client, userdata) -> None:
        if self.before_connect is not None:
            self.before_connect()

    def _on_socket_open(self, client, userdata, sock) -> None:
        """Before CONNECT goes out: TCP_NODELAY, so a small publish (a command result, a PUBACK) is not held back
        by Nagle's algorithm waiting for the peer's delayed ACK (~40 ms per request/answer)."""
        want = TCP_NODELAY if self.opts.tcp_nodelay is None else self.opts.tcp_nodelay
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1 if want else 0)
        except (OSError, AttributeError) as e:  # not a TCP socket (e.g. a unix socket): nothing to tune
            log.debug("TCP_NODELAY not set on %r: %s", sock, e)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.last_error = f"CONNACK {reason_code.value:#04x} {reason_code} (client id {self.opts.client_id!r})"
            self._refused = True  # the disconnect that follows must not hide this reason
            log.error("broker %s:%s refused the connection as client id %r (user %r): %s; check the credentials, and "
                      "whether the broker only takes certain client ids (a device's default is \"<store>/<device>\": "
                      "set [sync] client_id to the one it expects)", self.opts.host, self.opts.port,
                      self.opts.client_id, self.opts.username, reason_code)
            return
        self.connect_count += 1
        self._connected_at = time.monotonic()
        self._fail_reason = None
        self.server_max_packet = getattr(properties, "MaximumPacketSize", None) if properties else None
        for topic, options in self.opts.subscriptions:  # also when the session is present: cheap and safe
            client.subscribe(topic, options=options)
        self._connected.set()
        log.info("connected to %s:%s as %s (session present: %s)", self.opts.host, self.opts.port,
                 self.opts.client_id, flags.session_present)
        if self.on_connected is not None:
            self.on_connected(flags.session_present, properties)

    def _on_connect_fail(self, client, userdata) -> None:
        err = sys.exc_info()[1]  # paho calls this from its `except OSError` around the TCP / TLS connect
        why = f"{type(err).__name__}: {err}" if err is not None else "connection failed"
        self.last_error = f"cannot connect to {self.opts.host}:{self.opts.port}: {why}"
        self._plan_retry()
        # once per outage and per new reason (a TLS or DNS error must not loop silently), else debug
        log.log(logging.WARNING if why != self._fail_reason else logging.DEBUG,
                "cannot connect to %s:%s: %s (next attempt in %.1f s)", self.opts.host, self.opts.port, why,
                self.next_retry_s)
        self._fail_reason = why

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if reason_code.is_failure and not self._refused:
            self.last_error = f"disconnected: {reason_code}"
        self._refused = False
        lived = time.monotonic() - self._connected_at if was and self._connected_at is not None else None
        if was and lived is not None and lived >= self._stable_s:
            self.failures = self.flaps = 0
        elif was:
            self.flaps += 1
        self._plan_retry()
        if was:
            log.log(logging.WARNING if reason_code.is_failure else logging.INFO, "disconnected from %s:%s: %s",
                    self.opts.host, self.opts.port, reason_code)
        taken = reason_code.value == SESSION_TAKEN_OVER
        if was and reason_code.is_failure and (taken or self.flaps >= FLAPS_BEFORE_CLASH):
            self.last_error = (f"connection as client id {self.opts.client_id!r} dropped {self.flaps} times in a row "
                               f"right after the broker accepted it (client id clash?): {reason_code}")
            if taken or self.flaps % FLAPS_BEFORE_CLASH == 0:
                log.error("the broker %s:%s keeps closing this client's connections right after accepting them (%d "
                          "in a row, %s): most likely another client connects with the same client id %r and takes "
                          "the session over (two devices with one [sync] client_id or one certificate); next attempt "
                          "in %.1f s", self.opts.host, self.opts.port, self.flaps, reason_code, self.opts.client_id,
                          self.next_retry_s)
        if self.on_disconnected is not None:
            self.on_disconnected(str(reason_code))

    def _plan_retry(self) -> None:
        """Set paho's next reconnect wait (its `_reconnect_wait` follows this callback) to a jittered backoff."""
        self.next_retry_s = retry_delay(self.failures, self.opts.reconnect_min_s, self.opts.reconnect_max_s)
        self.failures += 1
        self.paho.reconnect_delay_set(self.next_retry_s, max(self.next_retry_s, self.opts.reconnect_max_s))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        for rc in reason_codes:
            if rc.is_failure:
                self.last_error = f"SUBACK {rc.value:#04x} {rc}"
                log.error("subscription refused: %s", rc)

    def _on_message(self, client, userdata, msg) -> None:
        if self.on_message is not None:
            try:
                self.on_message(msg)
            except Exception:  # never kill paho's thread
                log.exception("message handler failed on %s", msg.topic)

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.last_error = f"PUBACK {reason_code.value:#04x} {reason_code}"
        if self.on_publish is not None:
            self.on_publish(mid, reason_code.value, str(reason_code))
