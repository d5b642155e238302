"""Delivery loop: moves outbox rows to MQTT (QoS 1) in batches and deletes them per their stream's guarantee.

- Telemetry: deleted on a successful PUBACK (0x00, or 0x10 "no matching subscribers").
- Events and alerts: deleted only when the cloud's ack watermark covers their seq. Rows PUBACKed but not
  acked within `ack_timeout_s` are sent again from the watermark (go-back-N, the timeout doubling while the
  watermark does not move, up to 16x).
- Backlog (rows older than the current connection, and resends) is flagged ``historical`` and paced by a
  token bucket (`backlog_rate` events/s); live rows go first and are not paced.
- A record carrying image data (edge.privacy.guard) is never published: it moves to the dead-letter table with
  its body withheld, and a gap record takes its place.
- A permanent refusal (0x87 not authorized, 0x90 bad topic, 0x95 too large, 0x99 bad payload) or a record
  larger than the broker's maximum packet moves rows to the dead-letter table. A batch of several records refused
  as too large (a broker message size limit the CONNACK does not announce) is sent again in smaller messages
  instead: only a record too large on its own is dead-lettered.
- A row whose content is damaged (a body that is not a JSON object, a stream or kind no topic exists for) is
  dead-lettered before its publish: it must not spoil its batch or stop the loop.
- An ack is trusted only for what this device sent: an ack of another epoch, or one whose `upto` is beyond the
  highest seq ever handed to MQTT in this epoch (`Outbox.sent_hi`, persisted before the publish), is refused:
  counted (`acks_refused`), logged, and no row is deleted.

All outbox I/O happens on this loop's thread; MQTT callbacks only queue notifications.
"""
from __future__ import annotations

import collections
import json
import logging
import threading
import time
from typing import Callable

from edge.privacy.guard import channel_of, check_payload, refuse
from sync import payloads
from sync.client import PACKET_TOO_LARGE, packet_size
from sync.outbox import RELIABLE, TELEMETRY, Outbox
from sync.payloads import GAP_KIND
from sync.topics import DeviceTopics

log = logging.getLogger(__name__)

PERMANENT_FAILURES = {0x87: "not authorized", 0x90: "topic name invalid", PACKET_TOO_LARGE: "packet too large",
                      0x99: "payload format invalid"}
MIN_BATCH_BYTES = 256  # the smallest batch size limit learned from "packet too large" refusals

Publish = Callable[[str, bytes], "int | None"]  # (topic, payload) -> mid, or None if it could not be queued


class Delivery:
    """Owns the send window, the cursors and the ack watermark of one device's outbox."""

    def __init__(self, outbox: Outbox, topics: DeviceTopics, publish: Publish, *, window: int = 20,
                 batch_max: int = 100, batch_bytes: int = 64 << 10, ack_timeout_s: float = 10.0,
                 backlog_rate: float = 2000.0, ack_wait_s: float = 0.5,
                 request_ack: Callable[[], None] | None = None) -> None:
        self.outbox, self.topics, self._publish = outbox, topics, publish
        self._request_ack = request_ack  # re-subscribe to the retained ack (called on a go-back)
        self.window, self.batch_max, self.batch_bytes = window, batch_max, batch_bytes
        self.ack_timeout_s, self.backlog_rate, self.ack_wait_s = ack_timeout_s, backlog_rate, ack_wait_s
        self.max_packet = 256 << 20  # updated from CONNACK MaximumPacketSize
        self.size_cap: int | None = None  # batch bytes the broker took, learned from PUBACK 0x95 (None: no refusal)
        self._notes: collections.deque = collections.deque()
        self._wake = outbox.changed
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._idle = threading.Event()
        # state below is touched only by the loop thread
        self.connected = False
        self._connected_at = 0.0
        self._ack_seen = False
        self._inflight: dict[int, tuple[str, list[int], float, int]] = {}  # mid -> (table, seqs, t_sent, bytes)
        self._inflight_seqs: set[int] = set()  # reliable seqs handed to paho, no PUBACK yet
        self._pubacked: set[int] = set()  # reliable seqs PUBACKed, not yet covered by the watermark
        min_seq = outbox.min_seq(RELIABLE)
        self.watermark = (min_seq - 1) if min_seq is not None else outbox.max_seq(RELIABLE)
        self._hist_next = self._hist_end = self._live_next = self.watermark + 1
        self._tel_after = 0
        self._progress_at = time.monotonic()
        self._goback_timeout = ack_timeout_s
        self._tokens = 0.0
        self._tokens_at = time.monotonic()
        self._sent_hi = outbox.sent_hi
        self._spill_retry_at = 0.0  # next retry of the events the outbox keeps in memory (disk full)
        self._refused_logged_at = -1e9
        self.stats = {"messages": 0, "sent": 0, "historical": 0, "go_backs": 0, "puback_failures": 0,
                      "last_error": None, "acks_refused": 0, "last_ack_refused": None, "privacy_refused": 0}

    # ------------------------------------------------------------------ notifications (any thread)
    def notify_connected(self, max_packet: int | None = None) -> None:
        self._note(("connected", max_packet))

    def notify_disconnected(self) -> None:
        self._note(("disconnected",))

    def notify_puback(self, mid: int, reason: int, reason_text: str = "") -> None:
        self._note(("puback", mid, reason, reason_text))

    def notify_ack(self, epoch: str, upto: int) -> None:
        self._note(("ack", epoch, upto))

    def _note(self, item: tuple) -> None:
        self._notes.append(item)
        self._wake.set()

    # ------------------------------------------------------------------ thread
    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sync-delivery", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wait_idle(self, timeout: float) -> bool:
        """Wait until the outbox is empty (everything acked / PUBACKed). True if it got there."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(self.outbox.depth().values()) == 0:
                return True
            time.sleep(0.02)
        return sum(self.outbox.depth().values()) == 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(0.05)
            if self._inflight:  # busy: let a few more events gather so batches grow (costs <= 2 ms latency)
                time.sleep(0.002)
            self._wake.clear()
            try:
                if time.monotonic() >= self._spill_retry_at and self.outbox.retry_spill():  # the disk was full
                    self._spill_retry_at = time.monotonic() + 1.0
                self._drain_notes()
                if self.connected:
                    self._check_goback()
                    self._fill_window()
            except Exception:  # keep delivering; a bug here must not silently stop the device's uplink
                log.exception("delivery loop error")
                time.sleep(0.5)

    # ------------------------------------------------------------------ notifications processing
    def _drain_notes(self) -> None:
        tel_done: list[int] = []
        best_ack = None
        while self._notes:
            note = self._notes.popleft()
            kind = note[0]
            if kind == "puback":
                self._on_puback(note[1], note[2], note[3], tel_done)
            elif kind == "ack":
                epoch, upto = note[1], note[2]
                if epoch != self.outbox.epoch:
                    self._refuse_ack(f"ack for epoch {epoch[:32]!r}, mine is {self.outbox.epoch!r}")
                elif upto > self._sent_hi:
                    self._refuse_ack(f"ack upto {upto} is beyond the highest seq sent in this epoch ({self._sent_hi})")
                else:
                    best_ack = max(best_ack or 0, upto)
                    self._ack_seen = True
            elif kind == "connected":
                self._on_connected(note[1])
            elif kind == "disconnected":
                self.connected = False
        if tel_done:
            self.outbox.delete_telemetry(tel_done)
        if best_ack is not None and best_ack > self.watermark:
            self.outbox.ack_upto(best_ack)
            self.watermark = best_ack
            self._pubacked = {s for s in self._pubacked if s > best_ack}
            self._progress_at = time.monotonic()
            self._goback_timeout = self.ack_timeout_s
            self._hist_next = max(self._hist_next, best_ack + 1)
            self._live_next = max(self._live_next, best_ack + 1)

    def _refuse_ack(self, why: str) -> None:
        """Count and log (at most every 10 s) an ack that must not delete anything."""
        self.stats["acks_refused"] += 1
        self.stats["last_ack_refused"] = why
        now = time.monotonic()
        if now - self._refused_logged_at >= 10.0:
            self._refused_logged_at = now
            log.warning("refused %s (forged or misrouted: no row deleted; %d refused so far)", why,
                        self.stats["acks_refused"])

    def _on_connected(self, max_packet: int | None) -> None:
        now = time.monotonic()
        self.connected, self._connected_at, self._ack_seen = True, now, False
        if max_packet:
            self.max_packet = max_packet
        # Everything not yet acked is backlog now; rows paho still holds or the broker PUBACKed are skipped
        # (paho resends the former; the go-back timeout covers the latter).
        self._hist_next = self.watermark + 1
        self._hist_end = self._live_next = max(self._live_next, self.outbox.max_seq(RELIABLE) + 1)
        self._tel_after = 0
        self._progress_at = now
        self._tokens, self._tokens_at = 0.0, now

    def _on_puback(self, mid: int, reason: int, text: str, tel_done: list[int]) -> None:
        entry = self._inflight.pop(mid, None)
        if entry is None:
            return
        tbl, seqs, _, size = entry
        if tbl == RELIABLE:
            self._inflight_seqs.difference_update(seqs)
        if reason < 0x80:  # 0x00 success, 0x10 no matching subscribers: both delivered to the broker
            if tbl == TELEMETRY:
                tel_done.extend(seqs)
            else:
                self._pubacked.update(s for s in seqs if s > self.watermark)
            return
        self.stats["puback_failures"] += 1
        self.stats["last_error"] = f"PUBACK 0x{reason:02x} {text}".strip()
        if reason == PACKET_TOO_LARGE and len(seqs) > 1:  # the batch is, not (yet known) its records: smaller ones
            # half of this message (others in flight were sent under the same limit: no new news); below the
            # floor, one record per message, so a record refused alone is dead-lettered and the resends end
            half = min(self.size_cap or size, size // 2)
            self.size_cap = half if half >= MIN_BATCH_BYTES else 1
            log.warning("broker refused a %d-byte message of %d %s records as too large: sending them again in "
                        "messages of at most %d bytes (set [sync] batch_bytes below the broker's message size limit)",
                        size, len(seqs), tbl, self.size_cap)
            if tbl == RELIABLE:
                self._send_again(min(seqs), max(seqs))
            else:
                self._tel_after = min(self._tel_after, min(seqs) - 1)
        elif reason in PERMANENT_FAILURES:
            log.error("broker refused %d %s records: 0x%02x %s", len(seqs), tbl, reason, text)
            self.outbox.dead_letter(tbl, seqs, f"PUBACK 0x{reason:02x} {text or PERMANENT_FAILURES[reason]}")
            if tbl == RELIABLE:  # their gap records must be sent
                self._send_again(min(seqs), max(seqs))
        else:
            log.warning("PUBACK 0x%02x %s for %d %s records: will resend", reason, text, len(seqs), tbl)
            if tbl == TELEMETRY:
                self._tel_after = min(self._tel_after, min(seqs) - 1)

    # ------------------------------------------------------------------ resend
    def _check_goback(self) -> None:
        now = time.monotonic()
        # A window slot whose PUBACK never came (session lost by the broker) is freed after the timeout.
        for mid, (tbl, seqs, t, _) in list(self._inflight.items()):
            if now - max(t, self._connected_at) > self.ack_timeout_s:
                del self._inflight[mid]
                if tbl == RELIABLE:
                    self._inflight_seqs.difference_update(seqs)
                else:
                    self._tel_after = min(self._tel_after, min(seqs) - 1)
        # sent_hi above the watermark: rows went out that the cloud has not acked, even when none waits for a PUBACK
        # or an ack here any more (a go-back resends one window; the rows beyond it are in no set)
        outstanding = bool(self._pubacked) or bool(self._inflight_seqs) or self.watermark < self._sent_hi
        if outstanding and now - self._progress_at > self._goback_timeout:
            log.warning("no ack watermark progress for %.1f s (watermark %d): resending from there",
                        now - self._progress_at, self.watermark)
            self.stats["go_backs"] += 1
            self._pubacked.clear()
            unsent = self._hist_end if self._hist_next < self._hist_end else 0  # a backlog still being sent stays
            self._hist_next = self.watermark + 1
            # rows already sent: a window's worth from the watermark, not all of them. A consumer that is only away
            # still has the rest queued in its session (resending them every go-back would flood that queue); one
            # that lost rows acks these, stalls at the next loss and gets the next window at the next go-back
            self._hist_end = max(unsent, min(max(self._hist_end, self._live_next),
                                             self._hist_next + self.window * self.batch_max))
            self._progress_at = now
            self._goback_timeout = min(self._goback_timeout * 2, self.ack_timeout_s * 16)
            if self._request_ack is not None:  # the retained ack again: it may have come before we sent its rows
                self._request_ack()

    # ------------------------------------------------------------------ sending
    def _fill_window(self) -> None:
        free = self.window - len(self._inflight)
        if free <= 0:
            return
        # 1. live events and alerts: not paced
        rows = self.outbox.fetch(RELIABLE, self._live_next - 1, free * self.batch_max)
        if rows:
            self._note_sent(_highest(rows))  # first: if it fails, these rows are fetched again next time
            self._live_next = rows[-1][0] + 1
            free -= self._send(RELIABLE, rows, historical=False)
        # 2. telemetry (historical if older than this connection)
        if free > 0:
            rows = self.outbox.fetch(TELEMETRY, self._tel_after, free * self.batch_max)
            rows = [r for r in rows if not self._tel_inflight(r[0])]
            if rows:
                self._tel_after = rows[-1][0]
                cutoff = time.time() - (time.monotonic() - self._connected_at)
                old = [r for r in rows if r[4] < cutoff]
                new = [r for r in rows if r[4] >= cutoff]
                free -= self._send(TELEMETRY, new, historical=False)
                free -= self._send(TELEMETRY, old, historical=True)
        # 3. backlog and resends: paced; wait for the retained ack after (re)connecting to avoid needless resends
        if free > 0 and self._hist_next < self._hist_end:
            if not self._ack_seen and time.monotonic() - self._connected_at < self.ack_wait_s:
                return
            budget = self._take_tokens(free * self.batch_max)
            if budget <= 0:
                return
            rows = self.outbox.fetch(RELIABLE, self._hist_next - 1, budget, before=self._hist_end)
            if not rows:
                self._hist_next = self._hist_end
                return
            nxt = rows[-1][0] + 1
            rows = [r for r in rows if r[0] not in self._pubacked and r[0] not in self._inflight_seqs]
            if rows:
                self._note_sent(_highest(rows))  # first: if it fails, these rows are fetched again next time
            self._hist_next = nxt
            self._tokens -= len(rows)
            self._send(RELIABLE, rows, historical=True)

    def _note_sent(self, seq: int) -> None:
        """Persist the highest reliable seq handed to MQTT before publishing it (acks are checked against it)."""
        if seq > self._sent_hi:
            self.outbox.note_sent(seq)
            self._sent_hi = seq

    def _send_again(self, first: int, last: int) -> None:
        """Put reliable seqs first..last (not published, or replaced by a gap record) back into the backlog: added to
        a backlog still being sent, else the backlog is only these (not everything since the last one ended)."""
        if self._hist_next >= self._hist_end:
            self._hist_next, self._hist_end = first, last + 1
        else:
            self._hist_next = min(self._hist_next, first)
            self._hist_end = max(self._hist_end, last + 1)

    def _tel_inflight(self, seq: int) -> bool:
        return any(t == TELEMETRY and seq in s for t, s, _, _ in self._inflight.values())

    def _take_tokens(self, want: int) -> int:
        now = time.monotonic()
        cap = max(float(self.batch_max), self.backlog_rate * 0.25)
        self._tokens = min(cap, self._tokens + (now - self._tokens_at) * self.backlog_rate)
        self._tokens_at = now
        return min(want, int(self._tokens))

    def _send(self, tbl: str, rows: list[tuple], historical: bool) -> int:
        """Publish rows grouped by topic in batches; returns the number of MQTT messages."""
        if not rows:
            return 0
        groups: dict[str, list[tuple]] = {}
        for r in rows:
            try:
                topic = self.topics.for_stream(r[1], r[2])
            except ValueError as e:  # a damaged row: no topic to send it on
                self._dead_letter_unsent(tbl, r[0], f"damaged record: {e}")
                continue
            groups.setdefault(topic, []).append(r)
        # sizes are counted as payloads.batch writes them: its head, `{"seq":N,` + body + `,` per record, `]}`
        head = len(payloads.batch(self.topics.device, self.topics.store, self.outbox.epoch, [], historical)) + 8
        sent = 0
        for topic, grp in groups.items():
            room = self.max_packet - packet_size(topic, b"")  # the payload a packet on this topic may carry
            limit = min(self.batch_bytes, room, self.size_cap or self.batch_bytes)
            batch: list[tuple[int, str]] = []
            size = head
            for seq, _stream, _kind, body, _ in grp:
                rec = len(body) + 9 + len(str(seq))
                if head + rec > room:  # never hand paho a poison message
                    self._dead_letter_unsent(tbl, seq, f"record of {len(body)} bytes exceeds broker max packet")
                    continue
                why = check_payload(body)  # image data never leaves the device (edge/privacy/guard.py)
                if why is not None:
                    refuse(channel_of(topic), topic, why)
                    self._dead_letter_unsent(tbl, seq, f"privacy guard: {why}", redact=True)
                    self.stats["privacy_refused"] += 1
                    continue
                if not _is_object(body):  # cut short or garbled: the consumer would refuse the whole batch
                    self._dead_letter_unsent(tbl, seq, "damaged record: its stored body is not a JSON object")
                    continue
                if batch and (len(batch) >= self.batch_max or size + rec > limit):
                    sent += self._publish_batch(tbl, topic, batch, historical)
                    batch, size = [], head
                batch.append((seq, body))
                size += rec
            if batch:
                sent += self._publish_batch(tbl, topic, batch, historical)
        return sent

    def _dead_letter_unsent(self, tbl: str, seq: int, reason: str, *, redact: bool = False) -> None:
        """Dead-letter a row before its publish; a reliable row's gap record (same seq) goes out with the backlog."""
        self.outbox.dead_letter(tbl, [seq], reason, redact=redact)
        if tbl == RELIABLE:
            self._send_again(seq, seq)

    def _publish_batch(self, tbl: str, topic: str, batch: list[tuple[int, str]], historical: bool) -> int:
        payload = payloads.batch(self.topics.device, self.topics.store, self.outbox.epoch, batch, historical)
        if packet_size(topic, payload) > self.max_packet:  # the client would refuse it on every try: halves
            if len(batch) == 1:
                self._dead_letter_unsent(tbl, batch[0][0], f"record of {len(payload)} bytes exceeds broker max packet")
                return 0
            mid_i = len(batch) // 2
            return (self._publish_batch(tbl, topic, batch[:mid_i], historical)
                    + self._publish_batch(tbl, topic, batch[mid_i:], historical))
        mid = self._publish(topic, payload)
        seqs = [s for s, _ in batch]
        if mid is None:  # not queued (connection just dropped / paho refused): send these again later
            if tbl == RELIABLE:
                self._send_again(seqs[0], seqs[-1])
            else:
                self._tel_after = min(self._tel_after, seqs[0] - 1)
            return 0
        self._inflight[mid] = (tbl, seqs, time.monotonic(), len(payload))
        if tbl == RELIABLE:
            self._inflight_seqs.update(seqs)
        self.stats["messages"] += 1
        self.stats["sent"] += len(seqs)
        if historical:
            self.stats["historical"] += len(seqs)
        return 1

    def metrics(self) -> dict:
        return {**self.stats, "connected": self.connected, "watermark": self.watermark, "sent_hi": self._sent_hi,
                "inflight_messages": len(self._inflight), "awaiting_ack": len(self._pubacked)}


def _is_object(body: str) -> bool:
    """Whether a stored record body is a JSON object (what `payloads.batch` splices into a batch)."""
    try:
        return isinstance(json.loads(body), dict)
    except ValueError:
        return False


def _highest(rows: list[tuple]) -> int:
    """Highest seq a batch of reliable rows covers: a `_gap` record covers up to its `data.to`, so the cloud's
    watermark may legitimately pass its own seq."""
    hi = rows[-1][0]
    for seq, _stream, kind, body, _created in rows:
        if kind == GAP_KIND:
            try:
                hi = max(hi, int(json.loads(body)["data"]["to"]))
            except (ValueError, KeyError, TypeError):
                pass
    return hi
