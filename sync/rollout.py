"""Fleet side of model updates: publish a signed model version as retained QoS1 chunks, run a staged rollout
(waves with an abort threshold), read per-device update status. See docs/MODEL_UPDATES.md."""
from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from paho.mqtt.subscribeoptions import SubscribeOptions

from models import sign
from sync import payloads, topics
from sync.client import ClientOptions, MqttClient
from sync.payloads import PayloadError
from sync.update_manifest import build_payload, sign_payload

log = logging.getLogger(__name__)

OK_STATES = ("SUCCEEDED",)
BAD_STATES = ("FAILED", "ROLLED_BACK", "TIMED_OUT", "REJECTED")
ENDED_UNINSTALLED = ("FAILED", "ROLLED_BACK", "REJECTED")  # the device ended or refused the job: nothing to undo


class AdminConnection:
    """A short-lived v5 client of the cloud / fleet tools (clean session, a random client id unless one is given):
    windowed QoS1 publishes (waits for PUBACKs) and collected messages. `sync.request.Requester` builds on it."""

    def __init__(self, opts: ClientOptions, filters: list[str] = (), window: int = 16) -> None:
        opts.client_id = opts.client_id or f"sf-fleet-{uuid.uuid4().hex[:8]}"
        opts.clean_start, opts.session_expiry_s = True, 0
        opts.subscriptions = [(f, SubscribeOptions(qos=1)) for f in filters]
        self.client = MqttClient(opts)
        self.client.on_publish = self._puback
        self.client.on_message = self._message
        self.client.paho.on_subscribe = self._suback
        self._subacks = threading.Semaphore(0)
        self._filters = list(filters)
        self._refused: list[str] = []  # SUBACK failure reason codes
        self.window = window
        self.cv = threading.Condition()
        self._inflight: set[int] = set()
        self._early: set[int] = set()
        self.failures: list[str] = []
        self.messages: list[tuple[str, bytes, bool]] = []  # (topic, payload, retained)

    def __enter__(self) -> "AdminConnection":
        self.client.start()
        deadline = time.monotonic() + 10
        while not self.client.wait_connected(0.1):  # a refused login (CONNACK) is final: no 10 s of retries
            if time.monotonic() > deadline or (self.client.last_error or "").startswith("CONNACK "):
                break
        if not self.client.connected:
            self.client.stop()
            raise ConnectionError(self.client.last_error or "cannot connect to the broker")
        try:
            for _ in self._filters:
                if not self._subacks.acquire(timeout=10):
                    raise TimeoutError(f"no SUBACK within 10 s for {', '.join(self._filters)}")
            if self._refused:  # e.g. 0x87: this user may not read the statuses it would wait for
                raise ConnectionError(f"broker refused {len(self._refused)} of {len(self._filters)} subscriptions "
                                      f"({self._refused[0]}) to {', '.join(self._filters)}")
        except Exception:
            self.client.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.client.stop()

    def _suback(self, client, userdata, mid, reason_codes, properties) -> None:
        with self.cv:
            self._refused += [f"SUBACK {rc.value:#04x} {rc}" for rc in reason_codes if rc.is_failure]
        self._subacks.release()

    def _puback(self, mid: int, rc: int, text: str) -> None:
        with self.cv:
            if mid in self._inflight:
                self._inflight.discard(mid)
            else:  # PUBACK before publish() recorded the mid
                self._early.add(mid)
            if rc >= 0x80:
                self.failures.append(f"PUBACK {rc:#04x} {text}")
            self.cv.notify_all()

    def _message(self, msg) -> None:
        with self.cv:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain)))
            self.cv.notify_all()

    def publish(self, topic: str, payload: bytes, retain: bool = False, timeout: float = 30.0, *, qos: int = 1,
                properties=None) -> None:
        limit = self.client.server_max_packet
        if limit and len(payload) + len(topic) + 16 > limit:
            raise ValueError(f"{topic}: {len(payload)} bytes over the broker's maximum packet size {limit}")
        with self.cv:
            if not self.cv.wait_for(lambda: len(self._inflight) < self.window, timeout):
                raise TimeoutError(f"no PUBACK within {timeout} s ({self.client.last_error})")
        # not under self.cv: paho holds its own lock while it calls _puback (lock-order deadlock otherwise)
        mid = self.client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        if mid is None:
            raise ConnectionError(self.client.last_error or f"publish to {topic} refused")
        with self.cv:
            if mid in self._early:
                self._early.discard(mid)
            else:
                self._inflight.add(mid)

    def flush(self, timeout: float = 60.0) -> None:
        with self.cv:
            if not self.cv.wait_for(lambda: not self._inflight, timeout):
                raise TimeoutError(f"{len(self._inflight)} publishes not acknowledged within {timeout} s")
            self.check_refused()

    def check_refused(self) -> None:
        """ConnectionError if the broker refused a publish so far (PUBACK >= 0x80, e.g. 0x87: the ACL forbids it)."""
        if self.failures:
            raise ConnectionError(f"broker refused {len(self.failures)} publishes: {self.failures[0]}")


class AlreadyPublished(ValueError):
    """name@version already has a retained manifest: a new build needs a new version (or `replace`)."""


def publish_model(opts: ClientOptions, name: str, version: str, src: Path, key_path: str | Path, *,
                  chunk_size: int = 256 << 10, expires_s: float = 30 * 86400, min_runtime: str = "0",
                  selftest: dict | None = None, replace: bool = False, check_wait: float = 1.0) -> dict:
    """Sign a manifest for the files in src and publish chunks, then the manifest (all retained, QoS1).

    AlreadyPublished, with nothing sent, if a retained manifest of name@version arrives within `check_wait` s of
    subscribing to it (devices may be downloading that build: new chunks would fail them as corrupt); `replace`
    clears the old build's retained messages first (unpublish_model), then publishes the new one."""
    if not key_path:
        raise ValueError("a private signing key (PEM) is required")
    key = sign.signing_key(Path(src), key_path)
    payload = build_payload(name, version, Path(src), chunk_size=chunk_size, expires_s=expires_s,
                            min_runtime=min_runtime, selftest=selftest)
    raw = sign_payload(payload, key)
    t0 = time.monotonic()
    manifest = topics.model_manifest(name, version)
    with AdminConnection(opts, [manifest]) as c:
        with c.cv:  # a retained message comes right after SUBACK; nothing comes when none is retained
            c.cv.wait_for(lambda: any(retained and body for _, body, retained in c.messages), check_wait)
            published = any(retained and body for _, body, retained in c.messages)
        if published and not replace:
            raise AlreadyPublished(f"{name}@{version} is already published (a retained manifest exists): publish the "
                                   "new build as a new version, or --replace it (devices downloading it will fail)")
        if not published:
            n = _send_build(c, payload, raw, Path(src), chunk_size)
    if published:  # every retained message of the old build goes, so none of its chunks outlive it on the broker
        log.warning("replacing the published %s@%s", name, version)
        unpublish_model(opts, name, version)  # its own connection (one client id: not beside the one above)
        with AdminConnection(opts, []) as c:
            n = _send_build(c, payload, raw, Path(src), chunk_size)
    out = {"name": name, "version": version, "replaced": published, "files": len(payload["files"]), "chunks": n,
           "bytes": payload["total_bytes"], "manifest_bytes": len(raw), "key_id": sign.key_id(key.public_key()),
           "expires": payload["expires"], "seconds": round(time.monotonic() - t0, 3)}
    log.info("published %s@%s: %s", name, version, out)
    return out


def _send_build(c: AdminConnection, payload: dict, raw: bytes, src: Path, chunk_size: int) -> int:
    """Publish a signed build's chunks, then its manifest `raw` (all retained) and wait for the PUBACKs; returns
    the number of chunks."""
    name, version, n = payload["name"], payload["version"], 0
    for fn, meta in payload["files"].items():
        with open(src / fn, "rb") as f:
            for i in range(len(meta["chunks"])):
                c.publish(topics.model_chunk(name, version, meta["index"], i), f.read(chunk_size), retain=True)
                n += 1
    c.publish(topics.model_manifest(name, version), raw, retain=True)
    c.flush()
    return n


def unpublish_model(opts: ClientOptions, name: str, version: str, wait: float = 2.0, quiet_s: float = 0.5) -> int:
    """Clear every retained message under `fleet/models/name/version/` (manifest and chunks, including junk a
    broken or hostile publisher left there): found by subscribing to the version's subtree, so a malformed or
    missing manifest does not matter. Returns messages cleared (0: nothing was published)."""
    base = topics.model_base(name, version)
    with AdminConnection(opts, [base + "/#"]) as c:
        deadline, last = time.monotonic() + wait, (time.monotonic(), 0)
        while time.monotonic() < deadline:  # retained messages come right after SUBACK: stop once they pause
            with c.cv:
                c.cv.wait(0.05)
                n = len(c.messages)
            if n != last[1]:
                last = (time.monotonic(), n)
            elif n and time.monotonic() - last[0] > quiet_s:
                break
        with c.cv:
            found = sorted({t for t, raw, retained in c.messages if retained and raw})
        for t in found:
            c.publish(t, b"", retain=True)
        c.flush()
    log.info("unpublished %s@%s: %d retained messages cleared", name, version, len(found))
    return len(found)


class Retained(dict):
    """(store, device) -> validated payload; `skipped`: [(topic, reason)] of retained messages that were not
    readable (not JSON, not an object, fields of the wrong type)."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped: list[tuple[str, str]] = []


def read_retained(opts: ClientOptions, topic_filter: str, wait: float, check=lambda obj: obj) -> Retained:
    """Retained JSON per device under a device-topic filter, each checked with `check(obj)` (PayloadError:
    skipped and listed in `.skipped`, never raised)."""
    with AdminConnection(opts, [topic_filter]) as c:
        time.sleep(wait)
        with c.cv:
            msgs = list(c.messages)
    out = Retained()
    for t, raw, _ in msgs:
        p = topics.parse(t)
        if not p or p.device is None or not raw:
            continue
        try:
            out[(p.store, p.device)] = check(payloads.decode_object(raw))
        except PayloadError as e:
            out.pop((p.store, p.device), None)
            out.skipped.append((t, str(e)))
    for t, why in out.skipped:
        log.warning("skipped malformed retained message on %s: %s", t, why)
    return out


def read_statuses(opts: ClientOptions, wait: float = 1.0) -> Retained:
    """Retained update statuses: (store, device) -> status payload (malformed ones in `.skipped`)."""
    return read_retained(opts, topics.UPDATE_FILTER, wait, payloads.check_update_status)


def read_states(opts: ClientOptions, wait: float = 1.0) -> Retained:
    """Retained device states: (store, device) -> state payload (malformed ones in `.skipped`)."""
    return read_retained(opts, topics.STATE_FILTER, wait, payloads.check_state)


def wave_sizes(n: int, waves: list[float]) -> list[int]:
    """Cumulative device counts per wave from cumulative percentages (the last wave always covers all; a wave
    that adds no device is merged into the next). ValueError unless they increase within (0, 100]."""
    waves = list(waves)
    for i, pct in enumerate(waves):
        if not isinstance(pct, (int, float)) or isinstance(pct, bool) or not 0 < pct <= 100 \
                or (i and pct <= waves[i - 1]):
            raise ValueError(f"waves {waves}: cumulative percentages must increase within (0, 100]")
    out, prev = [], 0
    for pct in waves + ([100] if not waves or waves[-1] < 100 else []):
        k = min(n, max(prev, math.ceil(round(n * pct / 100, 6))))  # round: 8.8% of 375 is 33, not 34
        if k > prev:
            out.append(k)
            prev = k
    return out


@dataclass
class _Dev:
    store: str
    device: str
    state: str = "PENDING"
    reason: str | None = None
    cmd_id: str | None = None
    rollback_id: str | None = None
    seq: int = -1
    details: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.store}/{self.device}"

    @property
    def shadow(self) -> dict:
        """The device's shadow evaluation report of this version ({} if none)."""
        sh = self.details.get("shadow")
        return sh if isinstance(sh, dict) else {}

    @property
    def shadow_rejected(self) -> bool:
        """The shadow evaluation judged the model bad (not merely inconclusive: no live traffic for it)."""
        reasons = self.shadow.get("reasons") if self.details.get("phase") == "SHADOW" else None
        return isinstance(reasons, list) and any(not str(r).startswith("inconclusive") for r in reasons)


class Rollout:
    """Offer name@version to devices in waves; a wave starts when the previous one finished within the abort
    threshold. Abort: stop, and tell every offered device that did not end the job without it (succeeded,
    installing, timed out or never answered: an offline device still has the offer queued) to roll back.

    shadow_abort: a device whose shadow evaluation rejected the version (the model disagrees with the active one,
    is slower or fails on live inputs: a verdict on the model, not on the device) aborts the wave at once, whatever
    the failure threshold."""

    def __init__(self, opts: ClientOptions, name: str, version: str, devices: list[tuple[str, str]], *,
                 waves: list[float] = (1, 10, 50, 100), abort_failure_pct: float = 20.0,
                 wave_timeout_s: float = 600.0, rollback_timeout_s: float = 60.0, rollout_id: str | None = None,
                 shadow_abort: bool = True):
        self.opts, self.name, self.version = opts, name, version
        unique = list(dict.fromkeys((topics.check_id(s, "store id"), topics.check_id(d, "device id"))
                                    for s, d in devices))
        if len(unique) < len(devices):  # a second _Dev of a device would never get its statuses: TIMED_OUT
            log.warning("rollout of %s@%s: %d duplicate devices ignored", name, version, len(devices) - len(unique))
        self.devs = [_Dev(s, d) for s, d in unique]
        self.sizes = wave_sizes(len(self.devs), list(waves))
        self.abort_pct = abort_failure_pct
        self.wave_timeout_s, self.rollback_timeout_s = wave_timeout_s, rollback_timeout_s
        if rollout_id is not None and not 0 < len(rollout_id) <= 64:
            raise ValueError(f"rollout id {rollout_id!r}: 1..64 characters")
        self.id = rollout_id or f"r-{uuid.uuid4().hex[:10]}"
        self.shadow_abort = shadow_abort
        self.skipped = 0  # malformed status / result messages ignored

    def run(self) -> dict:
        filters = [topics.UPDATE_FILTER, f"{topics.ROOT}/+/+/cmd_result/model_update",
                   f"{topics.ROOT}/+/+/cmd_result/model_rollback"]
        waves, t0 = [], time.monotonic()
        log.info("rollout %s of %s@%s to %d devices in waves of %s", self.id, self.name, self.version,
                 len(self.devs), self.sizes)
        with AdminConnection(self.opts, filters) as c:
            launched: list[_Dev] = []
            for k in self.sizes:
                wave = self.devs[len(launched):k]
                launched += wave
                log.info("rollout %s %s@%s: wave %d with %d devices (%d of %d)", self.id, self.name, self.version,
                         len(waves) + 1, len(wave), len(launched), len(self.devs))
                for d in wave:
                    d.cmd_id = uuid.uuid4().hex[:12]
                    d.state = "OFFERED"
                    c.publish(topics.DeviceTopics(d.store, d.device).cmd("model_update"),
                              payloads.command(d.cmd_id, {"name": self.name, "version": self.version,
                                                          "rollout": self.id}))
                c.flush()  # a refused offer (PUBACK 0x87: not authorized) raises here, not as TIMED_OUT later
                aborted = self._wait_wave(c, wave, launched)
                waves.append({dv.key: dv.state for dv in wave})
                if aborted:
                    rolled = self._abort(c, launched, aborted)
                    return self._result("ABORTED", aborted, waves, rolled, t0)
        return self._result("SUCCEEDED", None, waves, {}, t0)

    def _failed_pct(self, launched: list[_Dev]) -> float:
        return 100.0 * sum(d.state in BAD_STATES for d in launched) / max(1, len(launched))

    def _wait_wave(self, c: AdminConnection, wave: list[_Dev], launched: list[_Dev]) -> str | None:
        """Wait until every device of the wave is terminal; abort reason as soon as the threshold is passed."""
        deadline = time.monotonic() + self.wave_timeout_s
        while True:
            self._absorb(c)
            rejected = [d for d in launched if d.state in BAD_STATES and d.shadow_rejected]
            if self.shadow_abort and rejected:
                return "shadow evaluation rejected the version on " + "; ".join(
                    f"{d.key} ({d.reason})" for d in rejected)
            pct = self._failed_pct(launched)
            if pct > self.abort_pct:  # pending devices counted as successes: this can only get worse
                bad = [f"{d.key}: {d.state} ({d.reason})" for d in launched if d.state in BAD_STATES]
                return f"{pct:.0f}% of {len(launched)} devices failed (threshold {self.abort_pct:g}%): " + \
                    "; ".join(bad)
            if all(d.state in OK_STATES + BAD_STATES for d in wave):
                return None
            if time.monotonic() > deadline:
                for d in wave:
                    if d.state not in OK_STATES + BAD_STATES:
                        d.state, d.reason = "TIMED_OUT", f"no final state within {self.wave_timeout_s:g} s"
                continue
            with c.cv:
                c.cv.wait(0.2)

    def _absorb(self, c: AdminConnection) -> None:
        """Apply new status messages and command results to the devices (malformed ones are skipped and
        counted, never raised: a device can write its own status topic)."""
        with c.cv:
            new, c.messages = c.messages, []
        by_key = {d.key: d for d in self.devs}
        for t, raw, retained in new:
            p = topics.parse(t)
            d = by_key.get(f"{p.store}/{p.device}") if p else None
            if d is None or not raw or d.cmd_id is None:
                continue
            try:
                obj = payloads.decode_object(raw, max_bytes=1 << 20)
                if p.channel != "cmd_result":
                    payloads.check_update_status(obj)
            except PayloadError as e:
                self.skipped += 1
                if self.skipped <= 10 or self.skipped % 1000 == 0:
                    log.warning("rollout %s: skipped malformed message on %s: %s (%d so far)", self.id, t, e,
                                self.skipped)
                continue
            if p.channel == "cmd_result":
                self._result_message(d, p.name, obj)
                continue
            job = obj.get("job") or {}
            if job.get("name") != self.name or job.get("version") != self.version:
                continue
            if retained and job.get("rollout") != self.id:
                continue  # a status left from an earlier attempt
            if obj.get("seq", 0) <= d.seq:
                continue
            d.seq, d.details = obj.get("seq", 0), job
            if d.state == "ROLLBACK_SENT" and job.get("state") not in ("ROLLED_BACK", "FAILED"):
                continue
            d.state, d.reason = job["state"], job.get("reason")

    def _result_message(self, d: _Dev, cmd: str | None, obj: dict) -> None:
        result = obj.get("result") if isinstance(obj.get("result"), dict) else {}
        reason = obj.get("reason") if isinstance(obj.get("reason"), str) else None
        if cmd == "model_update" and obj.get("id") == d.cmd_id:
            if obj.get("status") != "ok":
                d.state, d.reason = "REJECTED", reason
            elif result.get("state") == "SUCCEEDED" and d.state not in BAD_STATES + ("ROLLBACK_SENT",):
                d.state, d.reason = "SUCCEEDED", result.get("note") if isinstance(result.get("note"), str) else None
        elif cmd == "model_rollback" and obj.get("id") == d.rollback_id and d.state == "ROLLBACK_SENT" \
                and obj.get("status") != "ok":
            d.state, d.reason = "ROLLBACK_REFUSED", reason

    def _abort(self, c: AdminConnection, launched: list[_Dev], why: str) -> dict:
        """Tell devices that succeeded, are still working, timed out or never answered to roll back; wait for
        their answers. An offline device's rollback waits in its persistent session behind the offer, and cancels
        it when the device is back (it stays ROLLBACK_SENT here)."""
        targets = [d for d in launched if d.state not in ENDED_UNINSTALLED]
        log.warning("rollout %s aborted: %s; rolling back %d devices", self.id, why, len(targets))
        for d in targets:
            d.state, d.rollback_id = "ROLLBACK_SENT", uuid.uuid4().hex[:12]
            c.publish(topics.DeviceTopics(d.store, d.device).cmd("model_rollback"),
                      payloads.command(d.rollback_id, {"name": self.name, "version": self.version,
                                                               "rollout": self.id,
                                                               "reason": f"rollout {self.id} aborted"}))
        c.flush()
        deadline = time.monotonic() + self.rollback_timeout_s
        while time.monotonic() < deadline and any(d.state == "ROLLBACK_SENT" for d in targets):
            with c.cv:
                c.cv.wait(0.2)
            self._absorb(c)
        return {d.key: d.state for d in targets}

    def _result(self, status: str, reason: str | None, waves: list, rolled: dict, t0: float) -> dict:
        return {"rollout": self.id, "name": self.name, "version": self.version, "status": status, "reason": reason,
                "waves": waves, "rolled_back": rolled, "seconds": round(time.monotonic() - t0, 3),
                "devices": {d.key: {"state": d.state, "reason": d.reason,
                                    **({"shadow": d.shadow} if d.shadow else {})} for d in self.devs},
                "skipped_messages": self.skipped}
