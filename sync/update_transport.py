"""MQTT side of the model-update agent: the `model_update` / `model_rollback` commands, retained manifest and
chunk subscriptions (routed into one inbox, read by the update worker) and the retained status on
`retail/v1/{store}/{device}/update`. Knows nothing of the model cache: the installer (sync/update_installer.py)
gets manifests and chunks through `fetch_manifest` and `download`."""
from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable

from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import ValidationError

from edge.core.device import DeviceIdentity
from sync import topics
from sync.commands import CommandError
from sync.update_download import Staging
from sync.update_job import Job, OfferArgs, RollbackArgs, UpdateOptions
from sync.update_manifest import MAX_CHUNK, MAX_MANIFEST_BYTES, UpdateError

log = logging.getLogger(__name__)

INBOX_MAX_BYTES = 16 << 20  # manifests and chunks waiting for the update worker
_SUB = SubscribeOptions(qos=1)

OnOffer = Callable[[OfferArgs], dict]


class UpdateTransport:
    """Commands, dynamic subscriptions (renewed on every reconnect) and the retained status of one device.

    `on_update(args)` / `on_rollback(args)` answer the commands (command worker thread) with validated
    arguments; `fetch_manifest`, `download` and `release` run on the update worker thread."""

    def __init__(self, identity: DeviceIdentity, service, options: UpdateOptions, *, on_update: OnOffer,
                 on_rollback: OnOffer) -> None:
        self.svc, self.opts = service, options
        self.topics = topics.DeviceTopics(identity.store, identity.id)
        self._inbox: queue.Queue = queue.Queue(maxsize=256)
        self._inbox_bytes = 0
        self._inbox_lock = threading.Lock()
        self._subs: set[str] = set()
        self._last_status: bytes | None = None
        self.dropped = 0  # messages refused at the door: unexpected topic, oversized, inbox full
        service.add_command("model_update", lambda args: on_update(parse_offer(args)))
        service.add_command("model_rollback", lambda args: on_rollback(parse_offer(args, RollbackArgs)))
        service.route(f"{topics.ROOT}/{topics.FLEET}/models/", self._on_message)
        service.on_connect(self._on_connect)

    # ------------------------------------------------------------------ status
    def publish_status(self, raw: bytes) -> None:
        """Publish the retained update status now if connected; it is (re)published on every connection."""
        self._last_status = raw
        client = self.svc.client
        if client is not None and client.connected:
            client.publish(self.topics.update, raw, retain=True)

    # ------------------------------------------------------------------ fetching (update worker thread)
    def fetch_manifest(self, job: Job) -> bytes:
        """The raw retained manifest of job (not yet verified, at most MAX_MANIFEST_BYTES); UpdateError if none
        comes within `manifest_timeout_s` or the job is canceled (superseded by a newer offer, fleet rollback)."""
        topic = topics.model_manifest(job.name, job.version)
        self._drain()
        self._subscribe(topic)
        try:
            deadline = time.monotonic() + self.opts.manifest_timeout_s
            while True:
                if job.cancel.is_set():
                    raise UpdateError(job.cancel_reason or "canceled")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise UpdateError(f"no manifest for {job.key} on the broker within "
                                      f"{self.opts.manifest_timeout_s:g} s (not published?)")
                try:
                    t, data = self._get(min(left, 0.1))
                except queue.Empty:
                    continue
                if t == topic:
                    break
        finally:
            self._unsubscribe(topic)
        if data is None or len(data) > MAX_MANIFEST_BYTES:
            raise UpdateError(f"manifest for {job.key} is over {MAX_MANIFEST_BYTES} bytes")
        if not data:
            raise UpdateError(f"no manifest for {job.key} (retained manifest was cleared)")
        return data

    def download(self, job: Job, st: Staging, on_progress: Callable[[Job], None]) -> None:
        """Fetch missing chunks with `window` retained-chunk subscriptions in flight; re-request bad ones."""
        todo = sorted(st.missing)
        pending: dict[tuple[int, int], str] = {}
        retries: dict[tuple[int, int], int] = {}
        stalls, last, fetched_bytes, t0 = 0, time.monotonic(), 0, time.monotonic()
        last_report = 0.0
        while st.missing:
            if job.cancel.is_set():
                raise UpdateError(job.cancel_reason or "canceled")
            while len(pending) < self.opts.window and todo:
                key = todo.pop(0)
                pending[key] = topics.model_chunk(job.name, job.version, *key)
                self._subscribe(pending[key])
            try:
                topic, data = self._get(0.25)
            except queue.Empty:
                if time.monotonic() - last > self.opts.chunk_timeout_s:
                    stalls += 1
                    if stalls > self.opts.max_stalls:
                        raise UpdateError(f"download stalled: no chunk for {self.opts.chunk_timeout_s:g} s, "
                                          f"{len(st.missing)} of {st.total_chunks} chunks missing",
                                          retryable=True) from None
                    log.warning("update %s: no chunk for %.0f s, re-requesting %d", job.key,
                                self.opts.chunk_timeout_s, len(pending))
                    for t in pending.values():
                        self._subscribe(t)
                    last = time.monotonic()
                continue
            key = _chunk_key(topic, job)
            if key is None or key not in st.missing:
                continue  # another job's, a duplicate after a re-request, or the manifest
            if data is not None and st.write(*key, data):
                self._unsubscribe(pending.pop(key, topic))
                job.progress["chunks_fetched"] += 1
                fetched_bytes += len(data)
                last, stalls = time.monotonic(), 0
                if last - last_report > 1.0 or not st.missing:
                    job.progress["chunks_done"] = st.total_chunks - len(st.missing)
                    last_report = last
                    on_progress(job)
                if self.opts.max_bytes_per_s > 0:
                    time.sleep(max(0.0, t0 + fetched_bytes / self.opts.max_bytes_per_s - time.monotonic()))
                continue
            retries[key] = retries.get(key, 0) + 1
            job.progress["chunk_retries"] += 1
            fn = st.by_index.get(key[0], "?")
            if retries[key] > self.opts.chunk_retries:
                raise UpdateError(f"corrupt chunk {key[1]} of {fn}: sha256 mismatch in {retries[key]} copies "
                                  "(the published chunk is damaged: republish the model)")
            log.warning("update %s: chunk %d of %s failed its sha256, re-requesting", job.key, key[1], fn)
            self._subscribe(topic)  # a new SUBSCRIBE re-sends the retained chunk
        job.progress["chunks_done"] = st.total_chunks

    def release(self) -> None:
        """Drop every manifest and chunk subscription (end of a job)."""
        for t in list(self._subs):
            self._unsubscribe(t)

    # ------------------------------------------------------------------ MQTT (network thread)
    def _on_message(self, msg) -> None:
        """Queue a manifest or chunk for the worker: only on a topic it asked for, within the size limits and
        the inbox byte budget (anything else is dropped; a dropped chunk is re-requested)."""
        topic, size = msg.topic, len(msg.payload)
        limit = MAX_MANIFEST_BYTES if topic.endswith("/manifest") else MAX_CHUNK
        if topic not in self._subs:
            self.dropped += 1
            log.warning("update message on %s dropped: not requested", topic[:200])
            return
        data = bytes(msg.payload) if size <= limit else None  # None: over the limit, refused by the worker
        size = len(data) if data is not None else 0
        with self._inbox_lock:
            if self._inbox_bytes + size > INBOX_MAX_BYTES or self._inbox.full():
                self.dropped += 1
                log.warning("update inbox full: dropped %s (it is re-requested)", topic)
                return
            self._inbox_bytes += size
            self._inbox.put_nowait((topic, data))

    def _get(self, timeout: float) -> tuple[str, bytes | None]:
        item = self._inbox.get(timeout=timeout)
        with self._inbox_lock:
            self._inbox_bytes -= len(item[1] or b"")
        return item

    def _on_connect(self) -> None:
        for t in list(self._subs):
            self.svc.client.subscribe(t, _SUB)
        if self._last_status is not None:
            self.svc.client.publish(self.topics.update, self._last_status, retain=True)

    def _subscribe(self, topic: str) -> None:
        self._subs.add(topic)
        if self.svc.client is not None:
            self.svc.client.subscribe(topic, _SUB)

    def _unsubscribe(self, topic: str) -> None:
        if topic in self._subs:
            self._subs.discard(topic)
            if self.svc.client is not None:
                self.svc.client.paho.unsubscribe(topic)

    def _drain(self) -> None:
        while True:
            try:
                self._get(0)
            except queue.Empty:
                return


def parse_offer(args: dict, model: type[OfferArgs] = OfferArgs) -> OfferArgs:
    """Validated command arguments; CommandError (answered to the sender) if they are bad."""
    try:
        a = model.model_validate(args)
        topics.check_name(a.name, "model name")
        topics.check_version(a.version)
        return a
    except (ValidationError, ValueError, TypeError) as e:
        raise CommandError(f"bad args: {e}".splitlines()[0][:300]) from None


def _chunk_key(topic: str, job: Job) -> tuple[int, int] | None:
    prefix = topics.model_base(job.name, job.version) + "/chunk/"
    if not topic.startswith(prefix):
        return None
    try:
        f, c = topic[len(prefix):].split("/")
        return int(f), int(c)
    except ValueError:
        return None
