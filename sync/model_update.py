"""Device-side model-update agent: offer -> signed manifest -> QoS1 chunks -> verify -> self-test -> activate,
health check, rollback. See docs/MODEL_UPDATES.md.

States (reported retained on `retail/v1/{store}/{device}/update`, as `model_update` events in the outbox, and as
`model_updates` in the device's retained state): QUEUED, DOWNLOADING, VERIFYING, SELF_TEST, ACTIVATING,
SUCCEEDED, FAILED, ROLLED_BACK. FAILED means nothing active changed; ROLLED_BACK means the new version is not
active (self-test or health check failed, or the fleet asked) and the previous one is.

Layout: `<cache>/models/<name>/<version>/` (zoo layout, `built.json` = the signed update manifest) and a
`<cache>/models/<name>/current` symlink swapped atomically; staging and resumable downloads in
`<cache>/updates/<name>/<version>/`; agent state (active, previous, anti-rollback floor) in
`<cache>/updates/agent.json`.
"""
from __future__ import annotations

import json
import logging
import os
import queue
import shutil
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable

from paho.mqtt.subscribeoptions import SubscribeOptions
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge.core.events import Event
from models import sign
from models.zoo import ModelZoo
from sync import topics
from sync.commands import CommandError
from sync.update_download import Staging
from sync.update_manifest import UpdateError, newer, verify
from sync.update_selftest import self_test

log = logging.getLogger(__name__)

QUEUED, DOWNLOADING, VERIFYING, SELF_TEST, ACTIVATING = "QUEUED", "DOWNLOADING", "VERIFYING", "SELF_TEST", "ACTIVATING"
SUCCEEDED, FAILED, ROLLED_BACK = "SUCCEEDED", "FAILED", "ROLLED_BACK"
TERMINAL = (SUCCEEDED, FAILED, ROLLED_BACK)
MAX_MANIFEST_BYTES = 1 << 20
_SUB = SubscribeOptions(qos=1)


@dataclass
class UpdateOptions:
    """Agent settings (code-level; no config section yet)."""

    public_key: str | Path | None = None  # pinned fleet key (PEM); None: models.sign.public_key_path(cache)
    window: int = 8  # chunk subscriptions in flight
    chunk_timeout_s: float = 20.0  # no chunk for this long: re-request the pending ones
    max_stalls: int = 3  # then FAILED (chunks kept: a new offer resumes)
    chunk_retries: int = 3  # corrupt copies of one chunk before FAILED
    manifest_timeout_s: float = 15.0
    max_bytes_per_s: float = 0.0  # download rate cap (store uplinks); 0 = none
    reserve_bytes: int = 64 << 20  # disk that must stay free after the download
    backends: list[str] | None = None  # backends to self-test on; None: every installed one
    threads: int = 1


class _OfferArgs(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(min_length=1, max_length=64)
    version: str = Field(min_length=1, max_length=64)
    rollout: str = Field("", max_length=64)
    reason: str = Field("", max_length=256)


@dataclass
class Job:
    name: str
    version: str
    rollout: str = ""
    state: str = QUEUED
    reason: str | None = None
    phase: str | None = None  # state in which it failed
    started: float = field(default_factory=time.time)
    progress: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    selftest: dict = field(default_factory=dict)
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"

    def to_dict(self) -> dict:
        return json.loads(json.dumps({f.name: getattr(self, f.name) for f in fields(self) if f.name != "cancel"}))


OnActivated = Callable[[str, str], bool]


class ModelUpdateAgent:
    """Runs update jobs one at a time on its own thread. `on_activated(name, version) -> bool` is the runtime's
    post-activation health check (reload the model, run it); False or an exception rolls back."""

    def __init__(self, cfg, zoo: ModelZoo, service, on_activated: OnActivated,
                 options: UpdateOptions | None = None) -> None:
        self.cfg, self.zoo, self.svc, self.on_activated = cfg, zoo, service, on_activated
        self.opts = options or UpdateOptions()
        self.topics = topics.DeviceTopics(cfg.device.store, cfg.device.id)
        self.dir = Path(zoo.cache) / "updates"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._pub = self._pin_key()
        self._lock = threading.Lock()
        self._state = self._load_state()
        self._work: queue.Queue = queue.Queue()
        self._inbox: queue.Queue = queue.Queue(maxsize=256)
        self._job: Job | None = None
        self._queued: dict[str, Job] = {}
        self._subs: set[str] = set()
        self._last_status: bytes | None = None
        self._thread: threading.Thread | None = None
        service.add_command("model_update", self._cmd_update)
        service.add_command("model_rollback", self._cmd_rollback)
        service.route(f"{topics.ROOT}/{topics.FLEET}/models/", self._on_message)
        service.on_connect(self._on_connect)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "ModelUpdateAgent":
        """Start the worker; an unfinished job (crash, kill -9) is resumed from the chunks on disk."""
        for jf in sorted(self.dir.glob("*/*/job.json")):
            try:
                d = json.loads(jf.read_text())
            except (OSError, ValueError):
                continue
            if d.get("state") not in TERMINAL:
                job = Job(d["name"], d["version"], d.get("rollout", ""), progress={"resumed_job": True})
                log.info("resuming update %s (was %s)", job.key, d.get("state"))
                self._enqueue(job)
        self._publish_models()
        self._thread = threading.Thread(target=self._run, name="model-update", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if self._job is not None:
            self._job.cancel.set()
        self._work.put(None)
        if self._thread is not None:
            self._thread.join(timeout)

    def active(self, name: str) -> str | None:
        """Active version of a model: the `current` symlink, else the zoo's built version, else None."""
        link = self.zoo.cache / "models" / name / "current"
        if link.is_symlink():
            return os.readlink(link)
        try:
            v = self.zoo.manifest(name)["version"]
        except KeyError:
            return None
        return v if (self.zoo.cache / "models" / name / v / "built.json").is_file() else None

    def models(self) -> dict[str, dict]:
        with self._lock:
            recs = json.loads(json.dumps(self._state["models"]))
        for name in set(recs) | {n for n in self.zoo.names() if self.active(n)}:
            recs.setdefault(name, {})["active"] = self.active(name)
        return recs

    # ------------------------------------------------------------------ commands (command worker thread)
    def _cmd_update(self, args: dict) -> dict:
        a = _parse(args)
        if self.active(a.name) == a.version:
            return {"state": SUCCEEDED, "note": f"{a.name}@{a.version} is already active"}
        job = Job(a.name, a.version, a.rollout)
        with self._lock:
            cur = self._job
            if (cur and cur.key == job.key and not cur.cancel.is_set()) or job.key in self._queued:
                return {"state": (cur.state if cur and cur.key == job.key else QUEUED), "note": "already in progress"}
        self._enqueue(job)
        return {"state": QUEUED, "job": job.key}

    def _cmd_rollback(self, args: dict) -> dict:
        a = _parse(args)
        with self._lock:
            cur = self._job
            if cur is not None and cur.key == f"{a.name}@{a.version}":
                cur.cancel.set()
            queued = self._queued.pop(f"{a.name}@{a.version}", None)
        if queued is not None:
            queued.cancel.set()
        self._work.put(("rollback", a))
        return {"queued": True}

    def _enqueue(self, job: Job) -> None:
        with self._lock:
            self._queued[job.key] = job
        self._report(job)
        self._work.put(("job", job))

    # ------------------------------------------------------------------ MQTT (network thread)
    def _on_message(self, msg) -> None:
        try:
            self._inbox.put_nowait((msg.topic, bytes(msg.payload)))
        except queue.Full:
            log.warning("update inbox full: dropped %s (it is re-requested)", msg.topic)

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

    # ------------------------------------------------------------------ worker
    def _run(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            kind, obj = item
            try:
                if kind == "job":
                    with self._lock:
                        canceled = self._queued.get(obj.key) is not obj
                        if not canceled:
                            self._queued.pop(obj.key)
                            self._job = obj
                    if canceled:
                        self._finish(obj, FAILED, "canceled by a fleet rollback before it started", phase=QUEUED)
                    else:
                        self._run_job(obj)
                else:
                    self._run_rollback(obj)
            except Exception:  # never kill the worker
                log.exception("model update %s failed unexpectedly", kind)
            finally:
                with self._lock:
                    self._job = None
                for t in list(self._subs):
                    self._unsubscribe(t)

    def _run_job(self, job: Job) -> None:
        stage = self.dir / job.name / job.version
        if job.progress.get("resumed_job") and self.active(job.name) == job.version:
            self._resume_activated(job)  # crashed after the swap, before the health check finished
            return
        try:
            self._precheck(job)
            stage.mkdir(parents=True, exist_ok=True)
            self._set(job, DOWNLOADING)
            t0 = time.monotonic()
            payload = self._manifest(job, stage)
            st = Staging(stage / "files", payload)
            self._recover_unswapped(job, st)
            st.dir.mkdir(exist_ok=True)
            kept = st.scan()
            job.progress.update(chunks_total=st.total_chunks, chunks_resumed=kept, chunks_fetched=0,
                                chunk_retries=0, bytes_total=payload.get("total_bytes"))
            st.check_space(self.opts.reserve_bytes)
            self._download(job, st)
            job.timings["download_s"] = round(time.monotonic() - t0, 3)
            self._set(job, VERIFYING)
            t0 = time.monotonic()
            st.finish()
            payload = verify(stage / "update.json", self._key(), name=job.name, version=job.version,
                             runtime=_runtime())
            try:
                sign.verify_files(st.dir, payload)
            except sign.SignatureError as e:
                raise UpdateError(f"verification failed: {e}") from None
            job.timings["verify_s"] = round(time.monotonic() - t0, 3)
            self._set(job, SELF_TEST)
            t0 = time.monotonic()
            try:
                job.selftest = self_test(st.dir, payload, backends=self.opts.backends, threads=self.opts.threads)
            except UpdateError as e:
                job.selftest = e.details
                raise
            job.timings["selftest_s"] = round(time.monotonic() - t0, 3)
            self._set(job, ACTIVATING)
            self._activate(job, st, stage / "update.json")
        except UpdateError as e:
            self._fail(job, str(e), stage, keep_chunks="stalled" in str(e) or "canceled" in str(e))
        except Exception as e:  # noqa: BLE001 - a bug must still end in a reported state
            log.exception("update %s", job.key)
            self._fail(job, f"internal error: {type(e).__name__}: {e}", stage, keep_chunks=True)

    def _precheck(self, job: Job) -> None:
        if job.cancel.is_set():
            raise UpdateError("canceled by a fleet rollback")
        if job.name not in self.zoo.names():
            raise UpdateError(f"unknown model {job.name!r} (this device knows {self.zoo.names()})")
        try:
            topics.check_version(job.version)
        except ValueError as e:
            raise UpdateError(str(e)) from None
        floor = self._rec(job.name).get("floor")
        active = self.active(job.name)
        for what, v in (("installed", floor), ("active", active)):
            if v is not None and not newer(job.version, v):
                raise UpdateError(f"downgrade/replay refused: {job.version} is not newer than the {what} {v}")
        if self._pub is None:
            raise UpdateError("bad signature: no pinned fleet public key on this device")

    def _manifest(self, job: Job, stage: Path) -> dict:
        """Fetch (unless staged) and verify the signed manifest before downloading anything."""
        path = stage / "update.json"
        if not path.is_file():
            topic = topics.model_manifest(job.name, job.version)
            self._drain()
            self._subscribe(topic)
            deadline = time.monotonic() + self.opts.manifest_timeout_s
            raw = None
            while raw is None:
                left = deadline - time.monotonic()
                if left <= 0 or job.cancel.is_set():
                    raise UpdateError(f"no manifest for {job.key} on the broker within "
                                      f"{self.opts.manifest_timeout_s:g} s (not published?)")
                try:
                    t, data = self._inbox.get(timeout=min(left, 0.5))
                except queue.Empty:
                    continue
                if t == topic:
                    raw = data
            self._unsubscribe(topic)
            if not raw:
                raise UpdateError(f"no manifest for {job.key} (retained manifest was cleared)")
            if len(raw) > MAX_MANIFEST_BYTES:
                raise UpdateError(f"manifest of {len(raw)} bytes is over {MAX_MANIFEST_BYTES}")
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(raw)
            tmp.replace(path)
        try:
            return verify(path, self._key(), name=job.name, version=job.version, runtime=_runtime())
        except UpdateError:
            path.unlink(missing_ok=True)
            raise

    def _download(self, job: Job, st: Staging) -> None:
        """Fetch missing chunks with `window` retained-chunk subscriptions in flight; re-request bad ones."""
        todo = sorted(st.missing)
        pending: dict[tuple[int, int], str] = {}
        retries: dict[tuple[int, int], int] = {}
        stalls, last, fetched_bytes, t0 = 0, time.monotonic(), 0, time.monotonic()
        last_report = 0.0
        while st.missing:
            if job.cancel.is_set():
                raise UpdateError("canceled by a fleet rollback")
            while len(pending) < self.opts.window and todo:
                key = todo.pop(0)
                pending[key] = topics.model_chunk(job.name, job.version, *key)
                self._subscribe(pending[key])
            try:
                topic, data = self._inbox.get(timeout=0.25)
            except queue.Empty:
                if time.monotonic() - last > self.opts.chunk_timeout_s:
                    stalls += 1
                    if stalls > self.opts.max_stalls:
                        raise UpdateError(f"download stalled: no chunk for {self.opts.chunk_timeout_s:g} s, "
                                          f"{len(st.missing)} of {st.total_chunks} chunks missing") from None
                    log.warning("update %s: no chunk for %.0f s, re-requesting %d", job.key,
                                self.opts.chunk_timeout_s, len(pending))
                    for t in pending.values():
                        self._subscribe(t)
                    last = time.monotonic()
                continue
            key = _chunk_key(topic, job)
            if key is None or key not in st.missing:
                continue  # another job's, a duplicate after a re-request, or the manifest
            if st.write(*key, data):
                self._unsubscribe(pending.pop(key, topic))
                job.progress["chunks_fetched"] += 1
                fetched_bytes += len(data)
                last, stalls = time.monotonic(), 0
                if last - last_report > 1.0 or not st.missing:
                    job.progress["chunks_done"] = st.total_chunks - len(st.missing)
                    last_report = last
                    self._report(job)
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

    # ------------------------------------------------------------------ activation and rollback
    def _recover_unswapped(self, job: Job, st: Staging) -> None:
        """After a crash between the move into the zoo and the `current` swap, move the files back to staging."""
        vdir = self.zoo.cache / "models" / job.name / job.version
        if vdir.is_dir() and not st.dir.exists() and self.active(job.name) != job.version:
            vdir.rename(st.dir)

    def _activate(self, job: Job, st: Staging, manifest: Path) -> None:
        t0 = time.monotonic()
        mdir = self.zoo.cache / "models" / job.name
        vdir = mdir / job.version
        prev = self.active(job.name)
        shutil.copyfile(manifest, st.dir / "built.json")
        if vdir.exists():
            shutil.rmtree(vdir)  # leftover of an earlier failed attempt (never the active or previous one)
        mdir.mkdir(parents=True, exist_ok=True)
        st.dir.rename(vdir)
        _swap(mdir, job.version)
        self._save_model(job.name, previous=prev)
        job.timings["activate_s"] = round(time.monotonic() - t0, 3)
        self._check_activated(job, prev, prune=True)

    def _resume_activated(self, job: Job) -> None:
        job.state = ACTIVATING
        self._check_activated(job, self._rec(job.name).get("previous"), prune=False)

    def _check_activated(self, job: Job, prev: str | None, *, prune: bool) -> None:
        """Post-activation health check: SUCCEEDED (version becomes the anti-rollback floor) or roll back."""
        ok, why = self._health(job.name, job.version)
        if not ok:
            self._rollback_to(job.name, prev, job.version)
            self._finish(job, ROLLED_BACK, f"health check failed after activation: {why}; back on {prev}",
                         phase=ACTIVATING)
            return
        self._save_model(job.name, previous=prev, floor=job.version)
        if prune:
            self._prune(job.name)
        shutil.rmtree(self.dir / job.name / job.version, ignore_errors=True)
        self._finish(job, SUCCEEDED, None)

    def _run_rollback(self, a: _OfferArgs) -> None:
        """Fleet rollback of name@version: if active, go back to the kept previous version."""
        reason = a.reason or "rollback requested by the fleet"
        if self.active(a.name) != a.version:
            log.info("rollback of %s@%s: not active (active %s), nothing to do", a.name, a.version,
                     self.active(a.name))
            return
        prev = self._rec(a.name).get("previous")
        job = Job(a.name, a.version, a.rollout, state=ACTIVATING)
        if prev is None or not (self.zoo.cache / "models" / a.name / prev).is_dir():
            self._finish(job, FAILED, f"cannot roll back: no previous version of {a.name} kept", phase=ACTIVATING)
            return
        self._rollback_to(a.name, prev, a.version)
        self._finish(job, ROLLED_BACK, f"{reason}; back on {prev}", phase=SUCCEEDED)

    def _rollback_to(self, name: str, prev: str | None, bad: str) -> None:
        mdir = self.zoo.cache / "models" / name
        if prev is None:
            (mdir / "current").unlink(missing_ok=True)
        else:
            _swap(mdir, prev)
        self._save_model(name, previous=None)
        shutil.rmtree(mdir / bad, ignore_errors=True)
        if prev is not None:
            ok, why = self._health(name, prev)
            if not ok:
                log.error("rollback of %s to %s: health check failed too: %s", name, prev, why)

    def _health(self, name: str, version: str) -> tuple[bool, str]:
        try:
            ok = bool(self.on_activated(name, version))
            return ok, "" if ok else "on_activated returned False"
        except Exception as e:  # noqa: BLE001 - the runtime's check raising is a failed check
            log.exception("health check of %s@%s raised", name, version)
            return False, f"{type(e).__name__}: {e}"

    def _prune(self, name: str) -> None:
        """Delete agent-installed versions that are neither active nor the kept previous one."""
        rec = self._rec(name)
        keep = {rec.get("previous"), self.active(name), self.zoo.manifest(name)["version"]}
        for v in rec.get("installed", []):
            if v not in keep:
                shutil.rmtree(self.zoo.cache / "models" / name / v, ignore_errors=True)
        with self._lock:
            self._state["models"][name]["installed"] = [v for v in rec.get("installed", []) if v in keep]
            self._save_state()

    # ------------------------------------------------------------------ state and reporting
    def _fail(self, job: Job, reason: str, stage: Path, keep_chunks: bool) -> None:
        phase = job.state
        state = ROLLED_BACK if phase == SELF_TEST else FAILED
        if state == ROLLED_BACK:
            reason = f"{reason}; {self.active(job.name)} stays active"
        self._finish(job, state, reason, phase=phase)
        if not keep_chunks:
            shutil.rmtree(stage, ignore_errors=True)

    def _finish(self, job: Job, state: str, reason: str | None, phase: str | None = None) -> None:
        job.state, job.reason, job.phase = state, reason, phase
        job.timings["total_s"] = round(time.time() - job.started, 3)
        (log.info if state == SUCCEEDED else log.warning)("update %s: %s%s", job.key, state,
                                                          f" ({reason})" if reason else "")
        self._report(job)

    def _set(self, job: Job, state: str) -> None:
        job.state = state
        log.info("update %s: %s", job.key, state)
        self._report(job)

    def _report(self, job: Job) -> None:
        """Retained status + outbox event + device state; job.json for crash recovery."""
        with self._lock:
            self._state["seq"] = self._state.get("seq", 0) + 1
            seq = self._state["seq"]
            if job.state in TERMINAL and job.name in self.zoo.names():
                self._state["models"].setdefault(job.name, {})["last"] = {
                    "version": job.version, "state": job.state, "reason": job.reason}
            self._save_state()
        d = job.to_dict()
        stage = self.dir / job.name / job.version
        if job.state not in TERMINAL:
            stage.mkdir(parents=True, exist_ok=True)  # so a crash at any point resumes the job
        if stage.is_dir():
            _write_json(stage / "job.json", d)
        status = {"v": 1, "device": self.cfg.device.id, "store": self.cfg.device.store, "seq": seq, "ts": time.time(),
                  "job": d, "models": self.models()}
        raw = json.dumps(status, separators=(",", ":")).encode()
        self._last_status = raw
        client = self.svc.client
        if client is not None and client.connected:
            client.publish(self.topics.update, raw, retain=True)
        if job.state != DOWNLOADING or "chunks_done" not in job.progress:  # progress ticks: status topic only
            self.svc.outbox.emit(Event("model_update", {k: d[k] for k in ("name", "version", "rollout", "state",
                                                                         "reason", "phase", "timings")},
                                       stream="events"))
        if job.state in TERMINAL:
            self._publish_models()

    def _publish_models(self) -> None:
        self.svc.set_state(model_updates=self.models())

    def _rec(self, name: str) -> dict:
        with self._lock:
            return dict(self._state["models"].get(name, {}))

    def _save_model(self, name: str, **fields) -> None:
        with self._lock:
            rec = self._state["models"].setdefault(name, {})
            rec.update(fields)
            active, installed = self.active(name), rec.setdefault("installed", [])
            if active and active not in installed and active != self.zoo.manifest(name)["version"]:
                installed.append(active)
            self._save_state()

    def _load_state(self) -> dict:
        try:
            st = json.loads((self.dir / "agent.json").read_text())
        except (OSError, ValueError):
            st = {}
        st.setdefault("models", {})
        return st

    def _save_state(self) -> None:
        _write_json(self.dir / "agent.json", self._state)

    def _pin_key(self):
        path = self.opts.public_key or sign.public_key_path(self.zoo.cache)
        try:
            return sign.load_public_key(Path(path).read_bytes())
        except (OSError, sign.SignatureError) as e:
            log.error("model updates: no usable pinned public key %s (%s): every update will be refused", path, e)
            return None

    def _key(self):
        if self._pub is None:
            raise UpdateError("bad signature: no pinned fleet public key on this device")
        return self._pub

    def _drain(self) -> None:
        while True:
            try:
                self._inbox.get_nowait()
            except queue.Empty:
                return


def _parse(args: dict) -> _OfferArgs:
    try:
        a = _OfferArgs.model_validate(args)
        topics.check_name(a.name, "model name")
        topics.check_version(a.version)
        return a
    except (ValidationError, ValueError) as e:
        raise CommandError(f"bad args: {e}".splitlines()[0]) from None


def _chunk_key(topic: str, job: Job) -> tuple[int, int] | None:
    prefix = topics.model_base(job.name, job.version) + "/chunk/"
    if not topic.startswith(prefix):
        return None
    try:
        f, c = topic[len(prefix):].split("/")
        return int(f), int(c)
    except ValueError:
        return None


def _swap(mdir: Path, version: str) -> None:
    """Point `current` at version atomically (new symlink, then rename over the old one)."""
    tmp = mdir / f".current.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(version, tmp)
    os.replace(tmp, mdir / "current")
    fd = os.open(mdir, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.{threading.get_ident()}.tmp")  # the worker and a command may race
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True))
    tmp.replace(path)


def _runtime() -> str:
    from sync.service import _sw_version

    return _sw_version()
