"""Device-side model-update agent: offer -> signed manifest -> QoS1 chunks -> verify -> self-test -> activate,
health check, rollback. See docs/MODEL_UPDATES.md.

States (reported retained on `retail/v1/{store}/{device}/update`, as `model_update` events in the outbox, and as
`model_updates` in the device's retained state): QUEUED, DOWNLOADING, VERIFYING, SELF_TEST, ACTIVATING,
SUCCEEDED, FAILED, ROLLED_BACK. FAILED means nothing active changed; ROLLED_BACK means the new version is not
active (self-test or health check failed, or the fleet asked) and the previous one is.

`ModelUpdateAgent` is the façade: a job queue and worker thread over three parts,
- `UpdateTransport` (sync/update_transport.py): commands, manifest/chunk subscriptions, the retained status;
- `UpdateInstaller` (sync/update_installer.py): the download/verify/self-test/activate/rollback state machine;
- `ModelStore` (sync/update_installer.py): the `current` symlinks and agent.json (active, previous, floor).
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time

from edge.core.device import DeviceIdentity
from edge.core.events import Event
from models.zoo import ModelZoo
from sync.update_installer import ModelStore, OnActivated, UpdateInstaller
from sync.update_job import DOWNLOADING, QUEUED, SUCCEEDED, TERMINAL, Job, OfferArgs, UpdateOptions
from sync.update_transport import UpdateTransport

__all__ = ["ModelUpdateAgent", "OnActivated", "UpdateOptions"]

log = logging.getLogger(__name__)


class ModelUpdateAgent:
    """Runs update jobs one at a time on its own thread. `on_activated(name, version) -> bool` is the runtime's
    post-activation health check (reload the model, run it); False or an exception rolls back."""

    def __init__(self, identity: DeviceIdentity, zoo: ModelZoo, service, on_activated: OnActivated,
                 options: UpdateOptions | None = None) -> None:
        self.identity, self.zoo, self.svc = identity, zoo, service
        self.opts = options or UpdateOptions()
        self.store = ModelStore(zoo)
        self.transport = UpdateTransport(identity, service, self.opts, on_update=self._offer,
                                         on_rollback=self._rollback)
        self.installer = UpdateInstaller(self.store, self.transport, self.opts, on_activated, self._report)
        self._lock = threading.Lock()  # guards _job and _queued
        self._work: queue.Queue = queue.Queue()
        self._job: Job | None = None
        self._queued: dict[str, Job] = {}
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "ModelUpdateAgent":
        """Start the worker; an unfinished job (crash, kill -9) is resumed from the chunks on disk."""
        for job, was in self.store.unfinished_jobs():
            log.info("resuming update %s (was %s)", job.key, was)
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
        return self.store.active(name)

    def models(self) -> dict[str, dict]:
        """Per model: active, previous, floor, installed versions and the last job."""
        return self.store.models()

    # ------------------------------------------------------------------ commands (command worker thread)
    def _offer(self, a: OfferArgs) -> dict:
        if self.active(a.name) == a.version:
            return {"state": SUCCEEDED, "note": f"{a.name}@{a.version} is already active"}
        job = Job(a.name, a.version, a.rollout)
        with self._lock:
            cur = self._job
            if (cur and cur.key == job.key and not cur.cancel.is_set()) or job.key in self._queued:
                return {"state": (cur.state if cur and cur.key == job.key else QUEUED), "note": "already in progress"}
        self._enqueue(job)
        return {"state": QUEUED, "job": job.key}

    def _rollback(self, a: OfferArgs) -> dict:
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
                        self.installer.cancel_queued(obj)
                    else:
                        self.installer.run_job(obj)
                else:
                    self.installer.run_rollback(obj)
            except Exception:  # never kill the worker
                log.exception("model update %s failed unexpectedly", kind)
            finally:
                with self._lock:
                    self._job = None
                self.transport.release()

    # ------------------------------------------------------------------ reporting
    def _report(self, job: Job) -> None:
        """Retained status + outbox event + device state; job.json for crash recovery."""
        seq = self.store.note_report(job)
        self.store.save_job(job)
        d = job.to_dict()
        status = {"v": 1, "device": self.identity.id, "store": self.identity.store, "seq": seq, "ts": time.time(),
                  "job": d, "models": self.models()}
        self.transport.publish_status(json.dumps(status, separators=(",", ":")).encode())
        if job.state != DOWNLOADING or "chunks_done" not in job.progress:  # progress ticks: status topic only
            self.svc.outbox.emit(Event("model_update", {k: d[k] for k in ("name", "version", "rollout", "state",
                                                                         "reason", "phase", "timings")},
                                       stream="events"))
        if job.state in TERMINAL:
            self._publish_models()

    def _publish_models(self) -> None:
        self.svc.set_state(model_updates=self.models())
