"""Device-side model-update agent: offer -> signed manifest -> QoS1 chunks -> verify -> self-test -> activate,
health check, rollback. See docs/MODEL_UPDATES.md.

States (reported retained on `retail/v1/{store}/{device}/update`, as `model_update` events in the outbox, and as
`model_updates` in the device's retained state): QUEUED, DOWNLOADING, VERIFYING, SELF_TEST, ACTIVATING,
SUCCEEDED, FAILED, ROLLED_BACK. FAILED means nothing active changed; ROLLED_BACK means the new version is not
active (self-test or health check failed, or the fleet asked) and the previous one is.

`ModelUpdateAgent` is the façade: bounded offer queue (one pending offer per model, the latest) and a worker
thread over three parts,
- `UpdateTransport` (sync/update_transport.py): commands, manifest/chunk subscriptions, the retained status;
- `UpdateInstaller` (sync/update_installer.py): the download/verify/self-test/activate/rollback state machine;
- `ModelStore` (sync/update_installer.py): the `current` symlinks and agent.json (active, previous, floor).
"""
from __future__ import annotations

import json
import logging
import threading
import time

from edge.core.device import DeviceIdentity
from edge.core.events import Event
from models.zoo import ModelZoo
from sync.commands import CommandError, current_request, stale
from sync.update_installer import ModelStore, OnActivated, UpdateInstaller
from sync.update_job import (ACTIVATING, DOWNLOADING, FAILED, QUEUED, SHADOW, STOPPING, SUCCEEDED, TERMINAL, Job,
                             OfferArgs, RollbackArgs, UpdateOptions)
from sync.update_shadow import ShadowHost
from sync.update_transport import UpdateTransport

__all__ = ["ModelUpdateAgent", "OnActivated", "UpdateOptions"]

log = logging.getLogger(__name__)

SETTLE_S = 0.05  # an offer starts once it is this old: a burst of offers is coalesced into its last one
EARLY_EVENTS_PER_MIN = 10  # per model: FAILED events of jobs refused before a verified manifest (not published...)
OFFER_MAX_AGE_S = 24 * 3600  # an offer older than this by its sender's `ts` (or this far ahead) is refused


class _Bucket:
    """Token bucket: `take()` is True at most `burst` times at once and `rate_per_s` on average."""

    def __init__(self, burst: float, rate_per_s: float) -> None:
        self.burst, self.rate, self.tokens, self.t = burst, rate_per_s, burst, time.monotonic()
        self.suppressed = 0

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        self.suppressed += 1
        return False


class ModelUpdateAgent:
    """Runs update jobs one at a time on its own thread. `on_activated(name, version) -> bool` is the runtime's
    post-activation health check (reload the model, run it); False or an exception rolls back. `shadow(name)` gives
    the live session of a model the runtime runs (sync/update_shadow.py): with it and `options.shadow` enabled, an
    update that passed its self-test runs in shadow (SHADOW) before it is activated.

    Offers are bounded: per model only the latest pending offer is kept (an earlier one is reported FAILED
    "superseded"), and a new offer also cancels that model's running job while it still waits for its manifest.
    Offers that can be refused at once (unknown model, downgrade/replay, no key) are answered with a command
    error and leave no job, no folder and no event. An offer whose `ts` is more than `offer_max_age_s` old (it
    waited in the broker while the device was offline: its rollout may have been aborted since), more than that
    ahead of this device's clock, or missing, is refused too, and reported FAILED in the status."""

    def __init__(self, identity: DeviceIdentity, zoo: ModelZoo, service, on_activated: OnActivated,
                 options: UpdateOptions | None = None, *, shadow: ShadowHost | None = None,
                 offer_max_age_s: float = OFFER_MAX_AGE_S) -> None:
        if not offer_max_age_s > 0:
            raise ValueError(f"offer_max_age_s must be > 0 seconds, not {offer_max_age_s!r}")
        self.identity, self.zoo, self.svc = identity, zoo, service
        self.opts = options or UpdateOptions()
        self.offer_max_age_s = float(offer_max_age_s)
        self.store = ModelStore(zoo)
        self.transport = UpdateTransport(identity, service, self.opts, on_update=self._offer,
                                         on_rollback=self._rollback)
        self.installer = UpdateInstaller(self.store, self.transport, self.opts, on_activated, self._report,
                                         self._audit)
        self.installer.shadow = shadow
        self._cv = threading.Condition()  # guards everything below
        self._job: Job | None = None  # running
        self._resume: list[Job] = []  # unfinished jobs found at start: run first
        self._pending: dict[str, Job] = {}  # model -> latest pending offer, in arrival order
        self._rollbacks: dict[str, RollbackArgs] = {}  # model -> latest accepted rollback
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._early: dict[str, _Bucket] = {}
        self._refusal_log = _Bucket(5, 0.2)
        self.counters = {"offers": 0, "offers_refused": 0, "offers_expired": 0, "superseded": 0, "rollbacks": 0,
                         "rollbacks_refused": 0, "events_suppressed": 0}

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "ModelUpdateAgent":
        """Start the worker. `updates/` is cleaned first: an unfinished job that can still continue (crash,
        kill -9) resumes from the chunks on disk, pending offers are queued again, everything else is deleted."""
        resume, pending = self.store.startup(self.installer.can_continue)
        canceled = []
        with self._cv:
            for a in self.store.fleet_rollbacks():  # accepted before a crash, not finished: run again first
                self._rollbacks[a.name] = a
                for job in [j for j in resume + pending if j.key == f"{a.name}@{a.version}"]:
                    if job.state == ACTIVATING and self.store.active(a.name) != a.version:
                        continue  # guard_boot swapped it out (crash loop): its resumed job finishes that rollback
                    (resume if job in resume else pending).remove(job)
                    if job.state != ACTIVATING:  # a swapped-in version is rolled back by run_rollback itself
                        canceled.append(job)
            self._resume = resume
            for job in pending:
                self._pending[job.name] = job
        for job in canceled:
            self.store.set_pending(job.name, None, only_version=job.version)
            self.installer.cancel_queued(job, "canceled by a fleet rollback")
        for job in resume + pending:
            log.info("update %s: %s at start", job.key, "resuming" if job in resume else "queued again")
            self._report(job, event=False)
        self._publish_models()
        self._thread = threading.Thread(target=self._run, name="model-update", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the worker; a running job is interrupted and resumes at the next start."""
        with self._cv:
            self._stopping = True
            if self._job is not None:
                self._job.cancel_with(STOPPING)
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
        self.store.flush()

    def active(self, name: str) -> str | None:
        """Active version of a model: the `current` symlink, else the zoo's built version, else None."""
        return self.store.active(name)

    def models(self) -> dict[str, dict]:
        """Per model: active, previous, floor, installed versions and the last job."""
        return self.store.models()

    def metrics(self) -> dict:
        """Offer and rollback counters (refused, superseded) and messages the transport dropped."""
        return {**self.counters, "transport_dropped": self.transport.dropped}

    # ------------------------------------------------------------------ commands (command worker thread)
    def _offer(self, a: OfferArgs) -> dict:
        self.counters["offers"] += 1
        job = Job(a.name, a.version, a.rollout)
        with self._cv:  # a job resumed at start may be a swapped-in version whose health check is still due
            busy = next((j for j in (self._job, *self._resume)
                         if j is not None and j.key == job.key and not j.cancel.is_set()), None)
            queued = self._pending.get(a.name)
        if busy is not None:
            return {"state": busy.state, "note": "already in progress"}
        if queued is not None and queued.key == job.key:
            return {"state": QUEUED, "note": "already queued"}
        if self.active(a.name) == a.version:
            return {"state": SUCCEEDED, "note": f"{a.name}@{a.version} is already active"}
        why = self.installer.refusal(a.name, a.version)
        if why is not None:
            self.counters["offers_refused"] += 1
            if self._refusal_log.take():
                log.warning("offer of %s@%s refused: %s (%d more refusals not logged)", a.name, a.version, why,
                            self._refusal_log.suppressed)
            raise CommandError(why)
        why = self._stale_offer()
        if why is not None:
            self.counters["offers_expired"] += 1
            log.warning("offer of %s@%s refused: %s", a.name, a.version, why)
            self.installer.finish(job, FAILED, why, phase=QUEUED)  # in the status: the fleet sees why
            raise CommandError(why)
        with self._cv:
            cur = self._job
            if cur is not None and cur.key == job.key and not cur.cancel.is_set():
                return {"state": cur.state, "note": "already in progress"}
            old = self._pending.get(a.name)
            if old is not None and old.key == job.key:
                return {"state": QUEUED, "note": "already queued"}
            self._pending.pop(a.name, None)
            self._pending[a.name] = job
            if cur is not None and cur.name == a.name and not cur.staged and cur.state in (QUEUED, DOWNLOADING):
                cur.cancel_with(f"superseded by {a.version} before its manifest arrived")
            self.store.set_pending(a.name, job)
            self._cv.notify_all()
        if old is not None:
            self.counters["superseded"] += 1
            self.installer.cancel_queued(old, f"superseded by a newer offer ({a.version}) before it started")
        self._report(job, event=False)
        return {"state": QUEUED, "job": job.key}

    def _stale_offer(self) -> str | None:
        """Why the `model_update` command being handled is too old to run, by its sender's `ts`, or None (also when
        called outside a command). Clocks are compared as they are: skew up to `offer_max_age_s` either way
        passes; a `ts` further ahead means one of the clocks is wrong, so its age cannot be trusted."""
        req = current_request()
        if req is None:
            return None
        if req.ts is None:
            return "offer refused: it has no `ts`, so its age cannot be told; send offers with `edge fleet rollout`"
        return stale(req.ts, self.offer_max_age_s, "offer", "offer it again if it is still wanted")

    def _rollback(self, a: RollbackArgs) -> dict:
        """Roll back a.version (named by the sender as the version to roll back from): cancel its pending offer
        or running job, or queue the swap back to the previous version if it is active; anything else is
        refused as stale or replayed."""
        key = f"{a.name}@{a.version}"
        with self._cv:
            cur, pend = self._job, self._pending.get(a.name)
            resumed = next((j for j in self._resume if j.key == key), None)
            if pend is not None and pend.key == key:
                del self._pending[a.name]
                self.store.set_pending(a.name, None, only_version=a.version)
                action = "canceled_pending"
            elif resumed is not None and resumed.state == ACTIVATING:  # swapped in before a crash, unchecked
                why = None if self.active(a.name) != a.version else self.installer.rollback_refusal(a)
                if why is None and self.active(a.name) == a.version:  # else guard_boot swapped it out already
                    self._resume.remove(resumed)  # and its resumed job finishes that rollback
                    self._rollbacks[a.name] = a
                    self._cv.notify_all()
                action = "queued" if why is None else "refused"
            elif resumed is not None:
                self._resume.remove(resumed)
                pend, action = resumed, "canceled_pending"
            elif cur is not None and cur.key == key and cur.state not in TERMINAL:
                cur.cancel_with("canceled by a fleet rollback")
                self._rollbacks[a.name] = a  # runs after the job: rolls back if it got activated meanwhile
                action = "canceled"
            else:
                why = self.installer.rollback_refusal(a)
                if why is None:
                    self._rollbacks[a.name] = a
                    self._cv.notify_all()
                action = "queued" if why is None else "refused"
            if self._rollbacks.get(a.name) is a:  # on disk before the answer, and before the worker can take it (and
                self.store.note_fleet_rollback(a)  # clear it): a crash before it ran runs it at the start
        self.counters["rollbacks" if action != "refused" else "rollbacks_refused"] += 1
        if action == "refused":
            log.warning("model_rollback of %s refused: %s", key, why)
            self._audit({"name": a.name, "version": a.version, "to": None, "action": "refused", "trigger": "fleet",
                         "reason": why, "rollout": a.rollout}, limited=True)
            raise CommandError(why)
        if action == "canceled_pending":
            self._audit({"name": a.name, "version": a.version, "to": self.active(a.name), "action": "canceled",
                         "trigger": "fleet", "reason": a.reason or "rollback requested by the fleet",
                         "rollout": a.rollout})
            self.installer.cancel_queued(pend, "canceled by a fleet rollback before it started")
        elif action == "canceled":
            self._audit({"name": a.name, "version": a.version, "to": self.active(a.name), "action": "canceled",
                         "trigger": "fleet", "reason": a.reason or "rollback requested by the fleet",
                         "rollout": a.rollout})
        return {"action": action, "version": a.version}

    # ------------------------------------------------------------------ worker
    def _next(self) -> tuple[str, object] | None:
        """The next piece of work (rollbacks first, then resumed jobs, then offers in arrival order)."""
        with self._cv:
            while True:
                while not self._stopping and not (self._rollbacks or self._resume or self._pending):
                    self._cv.wait()
                if self._stopping or self._rollbacks or self._resume:
                    break
                young = SETTLE_S - (time.time() - next(iter(self._pending.values())).started)
                if young <= 0:
                    break
                self._cv.wait(young)
            if self._stopping:
                return None
            if self._rollbacks:
                name = next(iter(self._rollbacks))
                return "rollback", self._rollbacks.pop(name)
            job = self._resume.pop(0) if self._resume else self._pending.pop(next(iter(self._pending)))
            self._job = job
            return "job", job

    def _run(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            kind, obj = item
            try:
                if kind == "job":
                    self.installer.run_job(obj)
                else:
                    self.installer.run_rollback(obj)
            except Exception:  # never kill the worker
                log.exception("model update %s failed unexpectedly", kind)
            finally:
                with self._cv:
                    self._job = None
                    again = self._pending.get(obj.name) if kind == "job" else None
                    if kind == "job" and obj.state in TERMINAL and (again is None or again.version != obj.version):
                        self.store.set_pending(obj.name, None, only_version=obj.version)
                self.transport.release()

    # ------------------------------------------------------------------ reporting
    def _report(self, job: Job, event: bool = True) -> None:
        """Retained status, outbox event (not for offers, progress ticks, superseded offers; FAILED before a
        verified manifest rate-limited per model), device state; job.json for crash recovery."""
        seq = self.store.note_report(job)
        self.store.save_job(job)
        d = job.to_dict()
        status = {"v": 1, "device": self.identity.id, "store": self.identity.store, "seq": seq, "ts": time.time(),
                  "job": d, "models": self.models()}
        self.transport.publish_status(json.dumps(status, separators=(",", ":")).encode())
        if event and self._wants_event(job):
            data = {k: d[k] for k in ("name", "version", "rollout", "state", "reason", "phase", "timings")}
            if job.shadow:
                data["shadow"] = d["shadow"]
            self.svc.outbox.emit(Event("model_update", data, stream="events"))
        if job.state in TERMINAL and not (job.reason or "").startswith("superseded"):
            self._publish_models()

    def _wants_event(self, job: Job) -> bool:
        if job.state == QUEUED:
            return False  # offers: the command result and the status say it
        if job.state == DOWNLOADING:
            return job.staged and "chunks_done" not in job.progress  # once, when its manifest is verified
        if job.state == SHADOW:
            return "shadow_samples" not in job.progress  # once, not its progress ticks
        if job.state != FAILED or job.staged:
            return True
        if job.reason and job.reason.startswith("superseded"):
            return False
        bucket = self._early.setdefault(job.name, _Bucket(EARLY_EVENTS_PER_MIN, EARLY_EVENTS_PER_MIN / 60))
        if bucket.take():
            return True
        self.counters["events_suppressed"] += 1
        return False

    def _audit(self, data: dict, limited: bool = False) -> None:
        """A `model_rollback` event (every rollback, cancel and refused rollback; refusals rate-limited)."""
        if limited:
            bucket = self._early.setdefault("rollback-refusals", _Bucket(EARLY_EVENTS_PER_MIN,
                                                                          EARLY_EVENTS_PER_MIN / 60))
            if not bucket.take():
                self.counters["events_suppressed"] += 1
                return
        self.svc.outbox.emit(Event("model_rollback", dict(data), stream="events"))

    def _publish_models(self) -> None:
        self.svc.set_state(model_updates=self.models())
