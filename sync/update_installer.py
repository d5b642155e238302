"""Install, verify, activate and roll back model versions: the update state machine and the active-model pointer
it owns. No MQTT here: manifests and chunks come from an `UpdateSource` (sync/update_transport.py), and every
state change goes to a `report(job)` callback.

Layout: `<cache>/models/<name>/<version>/` (zoo layout, `built.json` = the signed update manifest) and a
`<cache>/models/<name>/current` symlink swapped atomically; staging and resumable downloads in
`<cache>/updates/<name>/<version>/` (with `job.json` for crash recovery, and `checks.json`: the process starts that
ran its self-test or the health check of the swapped-in version, and a failed check's rollback in progress), created
only once the version's signed manifest has been verified,
at most one per model; agent state (per model: previous, anti-rollback floor,
installed versions, last job; pending offers; the status seq) in `<cache>/updates/agent.json`.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, Protocol

from edge.backends.parity import score_logits
from edge.core import decisions
from edge.core.files import fsync_dir, write_atomic
from models import sign
from models.zoo import TRUSTED_DIR, ModelZoo
from sync import topics
from sync.update_download import Staging
from sync.update_job import (ACTIVATING, DOWNLOADING, FAILED, QUEUED, ROLLED_BACK, SELF_TEST, SHADOW, STOPPING,
                             SUCCEEDED, TERMINAL, VERIFYING, Job, RollbackArgs, UpdateOptions)
from sync.update_manifest import UpdateError, newer, verify, verify_raw
from sync.update_selftest import self_test
from sync.update_shadow import ShadowCanceled, ShadowHost
from sync.update_shadow import evaluate as shadow_evaluate

log = logging.getLogger(__name__)

OnActivated = Callable[[str, str], bool]
Audit = Callable[[dict], None]
SEQ_BLOCK = 1000  # status seqs reserved per agent.json write (the seq stays monotonic across restarts)
PENDING_FLUSH_S = 0.5
MAX_JOB_FILE = 1 << 20
MAX_CHECK_ATTEMPTS = 3  # process starts that may die with a swapped-in version unchecked before it is rolled back
CANCEL_GRACE_S = 10.0  # a canceled update waits this long for its running self-test before its files are removed
_PROCESS = uuid.uuid4().hex[:12]  # this process start, as counted in checks.json


class UpdateSource(Protocol):
    """Where manifests and chunks come from (the MQTT transport)."""

    def fetch_manifest(self, job: Job) -> bytes: ...

    def download(self, job: Job, st: Staging, on_progress: Callable[[Job], None]) -> None: ...


class ModelStore:
    """The active-model pointer (`current` symlinks) and the agent state file, under one zoo's cache."""

    def __init__(self, zoo: ModelZoo) -> None:
        self.zoo = zoo
        self.dir = Path(zoo.cache) / "updates"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._state = self._load_state()
        self._seq = self._state["seq"]
        self._models: dict | None = None  # models() cache; every change below drops it
        self._pending_saved = 0.0
        self._pending_timer: threading.Timer | None = None

    # ------------------------------------------------------------------ the pointer
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

    def point(self, name: str, version: str | None) -> None:
        """Make version the active one (atomic swap of `current`); None removes the pointer (zoo version)."""
        mdir = self.model_dir(name)
        self._models = None
        if version is None:
            (mdir / "current").unlink(missing_ok=True)
        else:
            _swap(mdir, version)

    def model_dir(self, name: str) -> Path:
        return self.zoo.cache / "models" / name

    def stage_dir(self, name: str, version: str) -> Path:
        return self.dir / name / version

    # ------------------------------------------------------------------ agent state
    def models(self) -> dict[str, dict]:
        """Per model: active, previous, floor, installed, last job (what the status and device state carry)."""
        with self._lock:
            if self._models is None:
                recs = json.loads(json.dumps(self._state["models"]))
                for name in set(recs) | {n for n in self.zoo.names() if self.active(n)}:
                    recs.setdefault(name, {})["active"] = self.active(name)
                self._models = recs
            return json.loads(json.dumps(self._models))

    def record(self, name: str) -> dict:
        with self._lock:
            return dict(self._state["models"].get(name, {}))

    def save_model(self, name: str, **fields) -> None:
        """Merge fields into the model's record; an agent-installed active version joins `installed`."""
        with self._lock:
            rec = self._state["models"].setdefault(name, {})
            rec.update(fields)
            active, installed = self.active(name), rec.setdefault("installed", [])
            if active and active not in installed and active != self.zoo.manifest(name)["version"]:
                installed.append(active)
            self._save_state()

    def prune(self, name: str) -> None:
        """Delete agent-installed versions that are neither active nor the kept previous one."""
        rec = self.record(name)
        keep = {rec.get("previous"), self.active(name), self.zoo.manifest(name)["version"]}
        for v in rec.get("installed", []):
            if v not in keep:
                shutil.rmtree(self.model_dir(name) / v, ignore_errors=True)
        with self._lock:
            self._state["models"][name]["installed"] = [v for v in rec.get("installed", []) if v in keep]
            self._save_state()

    def note_report(self, job: Job) -> int:
        """Next status seq (monotonic across restarts: reserved in blocks); a terminal job becomes its model's
        `last`."""
        with self._lock:
            self._seq += 1
            dirty = self._seq > self._state["seq"]
            if dirty:
                self._state["seq"] = self._seq + SEQ_BLOCK
            if job.state in TERMINAL and job.name in self.zoo.names() and not _superseded(job):
                self._state["models"].setdefault(job.name, {})["last"] = {
                    "version": job.version, "state": job.state, "reason": job.reason}
                dirty = True
            if dirty:
                self._save_state()
            return self._seq

    # ------------------------------------------------------------------ pending offers (one per model)
    def set_pending(self, name: str, job: Job | None, *, only_version: str | None = None) -> None:
        """Remember the pending offer of a model (None: forget it; with only_version, only if it is that one).
        Written to agent.json at most every PENDING_FLUSH_S (an offer flood costs no disk writes per offer; a
        crash may forget the offers of the last half second)."""
        with self._lock:
            pend = self._state["pending"]
            if job is None:
                if name not in pend or (only_version is not None and pend[name].get("version") != only_version):
                    return
                del pend[name]
            else:
                pend[name] = {"version": job.version, "rollout": job.rollout, "started": job.started}
            now = time.monotonic()
            if now - self._pending_saved >= PENDING_FLUSH_S:
                self._pending_saved = now
                self._save_state()
            elif self._pending_timer is None:
                self._pending_timer = threading.Timer(PENDING_FLUSH_S, self._flush_pending)
                self._pending_timer.daemon = True
                self._pending_timer.start()

    def _flush_pending(self) -> None:
        with self._lock:
            self._pending_timer = None
            self._pending_saved = time.monotonic()
            self._save_state()

    def flush(self) -> None:
        """Write agent.json now (pending offers included) and drop a scheduled write."""
        with self._lock:
            if self._pending_timer is not None:
                self._pending_timer.cancel()
            self._flush_pending()

    # ------------------------------------------------------------------ jobs on disk (crash recovery)
    def save_job(self, job: Job) -> None:
        """job.json in the job's staging folder, if it has one (a folder exists only after the version's manifest
        was verified, so nothing refused is ever staged)."""
        stage = self.stage_dir(job.name, job.version)
        if stage.is_dir():
            _write_json(stage / "job.json", job.to_dict())

    def drop_stage(self, name: str, version: str) -> None:
        """Delete one staging folder (and its model's folder once empty). Its checks.json goes first: a folder only
        partly removed must not hand its crash counts or rollback record to a later offer of the same version."""
        _remove(self.stage_dir(name, version) / "checks.json")
        _remove(self.stage_dir(name, version))
        try:
            (self.dir / name).rmdir()
        except OSError:
            pass  # not empty, or gone

    def remove_staging(self, name: str, *, keep: str | None = None) -> None:
        """Delete the staging folders of a model (all, or all but version `keep`)."""
        mdir = self.dir / name
        if not mdir.is_dir() or mdir.is_symlink():
            return
        for v in list(mdir.iterdir()):
            if v.name != keep:
                _remove(v)

    def startup(self, can_continue: Callable[[str, str], bool]) -> tuple[list[Job], list[Job]]:
        """Clean `updates/` at agent start (after `guard_boot`). Returns (jobs to resume, pending offers to queue
        again).

        Kept: per model, the newest unfinished job that can continue (known model, version newer than the active
        one and the floor) or whose version was swapped in and never health-checked (ACTIVATING: resumed in that
        state), else a stalled download of such a version (chunks for a new offer). Everything else is deleted:
        jobs that cannot continue, older or finished jobs, unreadable `job.json`, stray files."""
        self.guard_boot()
        keep: dict[str, tuple[int, float, Path, dict]] = {}  # model -> (rank, started, folder, job.json)
        for entry in list(self.dir.iterdir()):
            if entry.name == "agent.json" and entry.is_file():
                continue
            if _AGENT_TMP.fullmatch(entry.name) and _age_s(entry) < TMP_GRACE_S:
                continue  # agent.json being written now (a command handler may run while the agent starts)
            if not entry.is_dir() or entry.is_symlink() or entry.name not in self.zoo.names():
                log.info("update staging: removing %s (not a known model's folder)", entry)
                _remove(entry)
                continue
            for vdir in list(entry.iterdir()):
                d = _read_job(vdir)
                ok = (d is not None and d.get("name") == entry.name and d.get("version") == vdir.name
                      and (self._unchecked(entry.name, vdir, d) or can_continue(entry.name, vdir.name)))
                rank = 0 if not ok else 2 if d.get("state") not in TERMINAL else 1 if d.get("resumable") else 0
                started = d.get("started") if ok and isinstance(d.get("started"), (int, float)) else 0.0
                if rank and (entry.name not in keep or (rank, started) > keep[entry.name][:2]):
                    if entry.name in keep:
                        _remove(keep[entry.name][2])
                    keep[entry.name] = (rank, started, vdir, d)
                    continue
                log.info("update staging: removing %s (%s)", vdir, "cannot continue" if not rank else "superseded")
                _remove(vdir)
            if entry.name not in keep:
                try:
                    entry.rmdir()
                except OSError:
                    pass  # not empty
        resume = [Job(name, d["version"], str(d.get("rollout", ""))[:64], progress={"resumed_job": True},
                      started=started, state=ACTIVATING if self._unchecked(name, vdir, d) else QUEUED)
                  for name, (rank, started, vdir, d) in keep.items() if rank == 2]
        with self._lock:
            pend = dict(self._state["pending"])
        pending = []
        for name, p in pend.items():
            v = p.get("version") if isinstance(p, dict) else None
            if not isinstance(v, str) or not can_continue(name, v) or any(j.key == f"{name}@{v}" for j in resume):
                self.set_pending(name, None)
                continue
            pending.append(Job(name, v, str(p.get("rollout", ""))[:64]))
        return resume, pending

    # ------------------------------------------------------------------ swapped in, not yet health-checked
    def guard_boot(self, max_attempts: int = MAX_CHECK_ATTEMPTS) -> list[str]:
        """Call before anything loads a model (the runtime at boot; `startup` calls it too). A model whose `current`
        is a version swapped in but never health-checked (its job.json still ACTIVATING: the process died during
        the check) gets this process start counted in the staging folder's checks.json (once per process). When
        max_attempts starts already died that way (a version that kills the process on load: a crash loop),
        `current` goes back to the previous version now, before it is loaded again; the agent's start then
        finishes the rollback and reports it ROLLED_BACK. Returns the models pointed back."""
        back = []
        for entry in self.dir.iterdir() if self.dir.is_dir() else ():
            if not entry.is_dir() or entry.is_symlink() or entry.name not in self.zoo.names():
                continue
            active = self.active(entry.name)
            vdir = entry / active if active and "/" not in active and active not in (".", "..") else None
            d = _read_job(vdir) if vdir is not None else None
            if d is None or d.get("name") != entry.name or not self._unchecked(entry.name, vdir, d):
                continue
            checks = self.checks(entry.name, vdir.name)
            if _PROCESS in checks["starts"]:
                continue
            if checks["rollback"] is not None:  # its health check failed; the process died before swapping back
                prev = checks["rollback"]["to"]
                log.error("update %s@%s: failed its health check and the process stopped before the rollback "
                          "finished: back on %s before it is loaded again", entry.name, vdir.name, prev)
                self.point(entry.name, prev)
                back.append(entry.name)
                continue
            if len(checks["starts"]) < max_attempts:
                checks["starts"].append(_PROCESS)
                log.warning("update %s@%s: swapped in but not health-checked before the process stopped; start %d "
                            "of %d with it active", entry.name, vdir.name, len(checks["starts"]), max_attempts)
            else:
                prev = self.record(entry.name).get("previous")
                log.error("update %s@%s: the process died on %d starts with it active and unchecked (crash loop?): "
                          "back on %s before it is loaded again", entry.name, vdir.name, len(checks["starts"]), prev)
                self.point(entry.name, prev)
                checks["gave_up"] = True
                back.append(entry.name)
            _write_json(vdir / "checks.json", checks)
        return back

    def checks(self, name: str, version: str) -> dict:
        """checks.json of a staging folder: {"starts": [process starts that ran its health check], "gave_up",
        "selftests": [process starts that ran its self-test and did not finish it], "rollback": {"to", "reason",
        "trigger"} of a failed health check whose rollback has begun, or None}."""
        try:
            with open(self.stage_dir(name, version) / "checks.json", "rb") as f:
                d = json.loads(f.read(MAX_JOB_FILE))
        except (OSError, ValueError, RecursionError):
            d = {}
        d = d if isinstance(d, dict) else {}

        def ids(key: str) -> list[str]:
            v = d.get(key)
            return [x for x in v if isinstance(x, str)][:64] if isinstance(v, list) else []
        rb = d.get("rollback")
        ok = isinstance(rb, dict) and all(isinstance(rb.get(k), str) for k in ("reason", "trigger")) \
            and (rb.get("to") is None or isinstance(rb.get("to"), str))
        return {"starts": ids("starts"), "gave_up": bool(d.get("gave_up")), "selftests": ids("selftests"),
                "rollback": {k: rb.get(k) for k in ("to", "reason", "trigger")} if ok else None}

    def _write_checks(self, name: str, version: str, checks: dict) -> None:
        stage = self.stage_dir(name, version)
        if stage.is_dir():
            _write_json(stage / "checks.json", checks)

    def note_selftest(self, job: Job, *, done: bool = False) -> int:
        """Count this process start as one that runs the job's self-test (checks.json, written before it runs, so
        that a self-test that kills the process counts); done: it ended without killing the process, so this start
        is no longer counted. Returns the starts counted."""
        checks = self.checks(job.name, job.version)
        counted = _PROCESS in checks["selftests"]
        if done and counted:
            checks["selftests"].remove(_PROCESS)
        elif not done and not counted:
            checks["selftests"].append(_PROCESS)
        else:
            return len(checks["selftests"])
        self._write_checks(job.name, job.version, checks)
        return len(checks["selftests"])

    def note_rollback(self, job: Job, to: str | None, reason: str, trigger: str) -> None:
        """Record in checks.json, before `current` is swapped back, that job's version is being rolled back: a
        process that dies before the rollback finished is pointed back at start (guard_boot) and the rollback
        finishes then, instead of the version being taken for a download to resume."""
        checks = self.checks(job.name, job.version)
        checks.update(gave_up=True, rollback={"to": to, "reason": reason, "trigger": trigger})
        self._write_checks(job.name, job.version, checks)

    def note_check(self, job: Job) -> int:
        """Count this process start as one that runs the job's health check (checks.json, written before the check
        so that a crash during it counts). Returns the starts counted so far."""
        checks = self.checks(job.name, job.version)
        if _PROCESS not in checks["starts"]:
            checks["starts"].append(_PROCESS)
            self._write_checks(job.name, job.version, checks)
        job.progress["check_attempts"] = len(checks["starts"])
        return len(checks["starts"])

    # ------------------------------------------------------------------ fleet rollbacks accepted, not finished
    def note_fleet_rollback(self, a: RollbackArgs, *, to: str | None = None, done: bool = False) -> None:
        """Record in agent.json (fsynced) that a fleet rollback of a.name@a.version was accepted (before its
        command is answered), then its target `to` just before `current` is swapped back; done: forget it. A process
        that dies in between runs it again at the next start (ModelUpdateAgent.start)."""
        with self._lock:
            rec = self._state["models"].setdefault(a.name, {})
            if done:
                if (rec.get("fleet_rollback") or {}).get("version") != a.version:
                    return
                rec.pop("fleet_rollback", None)
            else:
                old = rec.get("fleet_rollback") or {}
                if to is None and old.get("version") == a.version and old.get("to") is not None:
                    return  # a repeat of a rollback already swapping back: keep its target (a crash finishes it)
                rec["fleet_rollback"] = {"version": a.version, "rollout": a.rollout, "reason": a.reason, "to": to}
            self._save_state()

    def fleet_rollbacks(self) -> list[RollbackArgs]:
        """The fleet rollbacks accepted and not finished (note_fleet_rollback), one per known model."""
        out = []
        for name, rec in self.models().items():
            fr = rec.get("fleet_rollback")
            if name not in self.zoo.names() or not isinstance(fr, dict):
                continue
            try:
                out.append(RollbackArgs(name=name, version=fr.get("version"), rollout=fr.get("rollout") or "",
                                        reason=fr.get("reason") or ""))
            except ValueError:
                log.warning("agent.json: unreadable fleet rollback of %s dropped: %r", name, fr)
        return out

    def _unchecked(self, name: str, vdir: Path, d: dict | None) -> bool:
        """The job of staging folder vdir swapped its version in and never finished the health check (its version
        is active, or guard_boot pointed `current` back after a crash loop)."""
        return (d is not None and d.get("state") == ACTIVATING and d.get("version") == vdir.name
                and (self.active(name) == vdir.name or self.checks(name, vdir.name)["gave_up"]))

    def _load_state(self) -> dict:
        try:
            with open(self.dir / "agent.json", "rb") as f:
                st = json.loads(f.read(MAX_JOB_FILE))
        except (OSError, ValueError, RecursionError):
            st = {}
        if not isinstance(st, dict):
            st = {}
        for key, typ in (("models", dict), ("pending", dict), ("seq", int)):
            if not isinstance(st.get(key), typ):
                st[key] = typ()
        st["models"] = {k: v for k, v in st["models"].items() if isinstance(v, dict)}
        return st

    def _save_state(self) -> None:
        self._models = None
        _write_json(self.dir / "agent.json", self._state)


class UpdateInstaller:
    """One job through DOWNLOADING, VERIFYING, SELF_TEST, ACTIVATING to SUCCEEDED / FAILED / ROLLED_BACK, and fleet
    rollbacks. `on_activated(name, version) -> bool` is the runtime's post-activation health check; `audit(data)`
    records every rollback (a `model_rollback` event)."""

    def __init__(self, store: ModelStore, source: UpdateSource, options: UpdateOptions, on_activated: OnActivated,
                 report: Callable[[Job], None], audit: Audit | None = None) -> None:
        self.store, self.source, self.opts = store, source, options
        self.zoo = store.zoo
        self.on_activated, self.report = on_activated, report
        self._audit_to = audit or (lambda data: None)
        self._pub = self._pin_key()
        self.shadow: ShadowHost | None = None  # the runtime's live models, for the shadow evaluation (set by the agent)

    def audit(self, data: dict) -> None:
        """A rollback (done, refused or canceled): to the agent's `model_rollback` event and the decision log."""
        decisions.record("model_rollback", f"{data.get('name')}@{data.get('version')}", data,
                         reason=f"{data.get('action')} ({data.get('trigger')}): {data.get('reason') or ''}"[:500])
        self._audit_to(data)

    # ------------------------------------------------------------------ decisions (any thread)
    def refusal(self, name: str, version: str) -> str | None:
        """Why an offer of name@version is refused at once (unknown model, bad version, downgrade/replay, no
        pinned key), or None."""
        if name not in self.zoo.names():
            return f"unknown model {name!r} (this device knows {self.zoo.names()})"
        try:
            topics.check_version(version)
        except ValueError as e:
            return str(e)
        floor = self.store.record(name).get("floor")
        active = self.store.active(name)
        for what, v in (("installed", floor), ("active", active)):
            if v is not None and not newer(version, v):
                return f"downgrade/replay refused: {version} is not newer than the {what} {v}"
        if self._pub is None:
            return "bad signature: no pinned fleet public key on this device"
        return None

    def can_continue(self, name: str, version: str) -> bool:
        return self.refusal(name, version) is None

    def rollback_refusal(self, a: RollbackArgs) -> str | None:
        """Why a fleet rollback of a.version (the version it expects to be active) cannot run now, or None."""
        active = self.store.active(a.name)
        if active != a.version:
            return (f"stale or replayed rollback refused: it names {a.name}@{a.version}, but {active} is active "
                    "and no job installs that version")
        rec = self.store.record(a.name)
        if a.rollout and rec.get("rollout") and a.rollout != rec["rollout"]:
            return (f"rollback refused: rollout {a.rollout} names {a.name}@{a.version}, which rollout "
                    f"{rec['rollout']} installed")
        prev = rec.get("previous")
        if prev is None or not (self.store.model_dir(a.name) / prev).is_dir():
            return f"cannot roll back: no previous version of {a.name} kept"
        return None

    # ------------------------------------------------------------------ update jobs (worker thread)
    def run_job(self, job: Job) -> None:
        stage = self.store.stage_dir(job.name, job.version)
        if job.progress.get("resumed_job") and job.state == ACTIVATING:
            self._resume_activated(job)  # crashed after the swap, before the health check finished
            return
        try:
            self._precheck(job)
            self._set(job, DOWNLOADING)
            t0 = time.monotonic()
            raw = self.source.fetch_manifest(job)
            payload = verify_raw(raw, self._key(), name=job.name, version=job.version, runtime=_runtime())
            self._stage_manifest(job, stage, raw)
            st = Staging(stage / "files", payload)
            self._recover_unswapped(job, st)
            st.dir.mkdir(exist_ok=True)
            kept = st.scan()
            job.progress.update(chunks_total=st.total_chunks, chunks_resumed=kept, chunks_fetched=0,
                                chunk_retries=0, bytes_total=payload.get("total_bytes"))
            self.report(job)
            st.check_space(self.opts.reserve_bytes)
            self.source.download(job, st, self.report)
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
                job.selftest = self._self_test(job, st, payload)
            except UpdateError as e:
                job.selftest = e.details
                raise
            job.timings["selftest_s"] = round(time.monotonic() - t0, 3)
            self._shadow(job, st, payload)
            self._check_cancel(job)  # a fleet rollback or the agent stopping: never activate after it
            self._set(job, ACTIVATING)
            self._activate(job, st, stage / "update.json")
        except UpdateError as e:
            if job.cancel.is_set() and job.cancel_reason == STOPPING:
                log.info("update %s interrupted by the agent stopping: it resumes at the next start", job.key)
                return
            self._fail(job, str(e), stage, keep=e.retryable)
        except Exception as e:  # noqa: BLE001 - a bug must still end in a reported state
            log.exception("update %s", job.key)
            self._fail(job, f"internal error: {type(e).__name__}: {e}", stage, keep=False)

    def _self_test(self, job: Job, st: Staging, payload: dict) -> dict:
        """`self_test` on a helper thread, counted in checks.json before it runs: a version whose self-test killed
        the process on MAX_CHECK_ATTEMPTS starts fails instead of being resumed into the same crash forever; one
        that runs past `selftest_timeout_s` (a runtime stuck in a load or a run) fails instead of blocking the
        agent for good (the stuck thread is left behind: a native call cannot be interrupted); a cancel (fleet
        rollback, agent stopping) is honoured while it runs."""
        died = self.store.note_selftest(job) - 1
        if died >= MAX_CHECK_ATTEMPTS:
            raise UpdateError(f"self-test never finished: the process died on {died} starts while it ran (an "
                              "artefact crashes the runtime on this device?)")
        out: dict = {}

        def run() -> None:
            try:
                out["report"] = self_test(st.dir, payload, backends=self.opts.backends, threads=self.opts.threads,
                                          score_logits=score_logits(self.store.zoo.manifest(job.name)))
            except Exception as e:  # noqa: BLE001 - re-raised on the worker thread
                out["error"] = e
        t = threading.Thread(target=run, name=f"selftest-{job.key}", daemon=True)
        t.start()
        deadline = time.monotonic() + self.opts.selftest_timeout_s
        try:
            while t.is_alive():
                try:
                    self._check_cancel(job)
                except UpdateError:  # let a self-test in progress end (briefly) before its staged files go
                    t.join(max(0.0, min(CANCEL_GRACE_S, deadline - time.monotonic())))
                    raise
                if time.monotonic() > deadline:
                    log.error("update %s: self-test still running after %g s: left behind", job.key,
                              self.opts.selftest_timeout_s)
                    raise UpdateError(f"self-test did not finish within {self.opts.selftest_timeout_s:g} s (an "
                                      "artefact hangs on this device?)")
                t.join(0.1)
        finally:
            self.store.note_selftest(job, done=True)  # this start did not die in it
        if "error" in out:
            raise out["error"]
        return out["report"]

    def _shadow(self, job: Job, st: Staging, payload: dict) -> None:
        """SHADOW: the staged version beside the active model on live inputs (sync/update_shadow.py); a failed or
        inconclusive evaluation is an UpdateError (nothing was activated)."""
        cfg = self.opts.shadow
        if self.shadow is None or cfg is None or not cfg.enabled:
            return
        self._set(job, SHADOW)
        t0 = time.monotonic()

        def progress(done: int, target: int) -> None:
            job.progress.update(shadow_samples=done, shadow_target=target)
            self.report(job)
        try:
            job.shadow = shadow_evaluate(job.name, st.dir, payload, self.shadow(job.name), cfg,
                                         cancelled=lambda: job.cancel_reason if job.cancel.is_set() else None,
                                         progress=progress)
        except ShadowCanceled as e:
            raise UpdateError(str(e)) from None
        job.timings["shadow_s"] = round(time.monotonic() - t0, 3)
        if not job.shadow.get("passed"):
            raise UpdateError("shadow evaluation failed: " + "; ".join(job.shadow.get("reasons", [])))

    def cancel_queued(self, job: Job, reason: str) -> None:
        """A pending offer (or a job resumed at start) that never ran: superseded, or canceled by a fleet
        rollback. Its staging folder, if any, goes."""
        self.finish(job, FAILED, reason, phase=QUEUED, quiet=_superseded_reason(reason))
        if self.store.active(job.name) != job.version:
            self.store.drop_stage(job.name, job.version)

    @staticmethod
    def _check_cancel(job: Job) -> None:
        if job.cancel.is_set():
            raise UpdateError(job.cancel_reason or "canceled")

    def _precheck(self, job: Job) -> None:
        self._check_cancel(job)
        why = self.refusal(job.name, job.version)
        if why is not None:
            raise UpdateError(why)

    def _stage_manifest(self, job: Job, stage: Path, raw: bytes) -> None:
        """The verified manifest becomes the staging folder's update.json (the only staging of its model)."""
        self.store.remove_staging(job.name, keep=job.version)
        stage.mkdir(parents=True, exist_ok=True)
        path = stage / "update.json"
        if not path.is_file() or path.read_bytes() != raw:
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(raw)
            tmp.replace(path)
        job.staged = True
        self.store.save_job(job)

    # ------------------------------------------------------------------ activation and rollback
    def _recover_unswapped(self, job: Job, st: Staging) -> None:
        """After a crash between the move into the zoo and the `current` swap, move the files back to staging."""
        vdir = self.store.model_dir(job.name) / job.version
        if vdir.is_dir() and not st.dir.exists() and self.store.active(job.name) != job.version:
            vdir.rename(st.dir)

    def _activate(self, job: Job, st: Staging, manifest: Path) -> None:
        t0 = time.monotonic()
        mdir = self.store.model_dir(job.name)
        vdir = mdir / job.version
        prev = self.store.active(job.name)
        write_atomic(st.dir / "built.json", manifest.read_bytes())  # on disk before `current` can point at it
        if vdir.exists():
            shutil.rmtree(vdir)  # leftover of an earlier failed attempt (never the active or previous one)
        mdir.mkdir(parents=True, exist_ok=True)
        st.dir.rename(vdir)
        # recorded before the swap: a crash right after it still knows the version to go back to
        self.store.save_model(job.name, previous=prev, rollout=job.rollout or None)
        self.store.point(job.name, job.version)
        job.timings["activate_s"] = round(time.monotonic() - t0, 3)
        self._check_activated(job, prev, prune=True)

    def _resume_activated(self, job: Job) -> None:
        """A version swapped in before the process died, never health-checked: check it now, or finish its rollback
        if `guard_boot` gave up on it (the process died on MAX_CHECK_ATTEMPTS starts with it active)."""
        prev = self.store.record(job.name).get("previous")
        checks = self.store.checks(job.name, job.version)
        if checks["rollback"] is not None:  # the process died while this failed version was being rolled back
            job.progress["check_attempts"] = len(checks["starts"])
            rb = checks["rollback"]
            self._roll_back_job(job, rb["to"], rb["reason"], rb["trigger"])
            return
        if checks["gave_up"]:
            job.progress["check_attempts"] = len(checks["starts"])
            reason = (f"health check never finished: the process died on {len(checks['starts'])} starts with "
                      f"{job.version} active (it crashes on load?); back on {prev}")
            self._roll_back_job(job, prev, reason, "crash_loop")
            return
        if self.store.active(job.name) != job.version:  # a fleet rollback swapped it out meanwhile
            log.info("update %s: no longer active, nothing to check", job.key)
            self.store.drop_stage(job.name, job.version)
            return
        self._check_activated(job, prev, prune=False)

    def _check_activated(self, job: Job, prev: str | None, *, prune: bool) -> None:
        """Post-activation health check: SUCCEEDED (version becomes the anti-rollback floor) or roll back. This
        process start is counted in checks.json first (see ModelStore.guard_boot)."""
        self.store.note_check(job)
        ok, why = self._health(job.name, job.version)
        if not ok:
            self._roll_back_job(job, prev, f"health check failed after activation: {why}; back on {prev}",
                                "health_check")
            return
        self.store.save_model(job.name, previous=prev, floor=job.version, rollout=job.rollout or None)
        if prune:
            self.store.prune(job.name)
        self.store.drop_stage(job.name, job.version)
        self.finish(job, SUCCEEDED, None)

    def _roll_back_job(self, job: Job, prev: str | None, reason: str, trigger: str) -> None:
        """ROLLED_BACK in ACTIVATING: `current` back to prev, V deleted, audited; its staging goes before the
        report. The rollback is recorded in checks.json first: a process that dies before it finished (e.g. in the
        health check of prev) finishes it at the next start, instead of resuming V as a new download."""
        self.store.note_rollback(job, prev, reason, trigger)
        self._rollback_to(job.name, prev, job.version)
        self.audit({"name": job.name, "version": job.version, "to": prev, "action": "rolled_back",
                    "trigger": trigger, "reason": reason, "rollout": job.rollout})
        self.store.drop_stage(job.name, job.version)
        self.finish(job, ROLLED_BACK, reason, phase=ACTIVATING)

    def run_rollback(self, a: RollbackArgs) -> None:
        """Fleet rollback of name@version to the kept previous version, if it still names the active version
        (checked again here: a job may have ended since the command was answered)."""
        try:
            self._run_rollback(a)
        finally:
            self.store.note_fleet_rollback(a, done=True)

    def _run_rollback(self, a: RollbackArgs) -> None:
        rec = self.store.record(a.name)
        begun = rec.get("fleet_rollback") or {}
        why = self.rollback_refusal(a)
        if why is not None:
            prev = begun.get("to")
            if begun.get("version") == a.version and prev is not None and self.store.active(a.name) == prev:
                log.warning("rollback of %s@%s to %s: the process stopped before it finished; finishing it", a.name,
                            a.version, prev)  # swapped back before a crash: the clean-up and the report are left
                self._finish_rollback(a, prev, begun_before_crash=True)
            elif self.store.active(a.name) != a.version:  # the job it canceled never got activated
                log.info("rollback of %s@%s: not active (active %s), nothing to do", a.name, a.version,
                         self.store.active(a.name))
            else:
                log.warning("rollback of %s@%s refused: %s", a.name, a.version, why)
                self.audit({"name": a.name, "version": a.version, "to": None, "action": "refused",
                            "trigger": "fleet", "reason": why, "rollout": a.rollout})
            return
        prev = rec.get("previous")
        if rec.get("floor") is None or newer(a.version, rec["floor"]):  # swapped in, never checked (crash)
            self.store.save_model(a.name, floor=a.version)  # the fleet rejected it: never taken again
        self.store.note_fleet_rollback(a, to=prev)  # before the swap back: a crash after it still finishes it
        self._rollback_to(a.name, prev, a.version)
        self._finish_rollback(a, prev)

    def _finish_rollback(self, a: RollbackArgs, prev: str, begun_before_crash: bool = False) -> None:
        """The fleet rollback of a.version is swapped back to prev: its files go, then the audit and ROLLED_BACK."""
        if begun_before_crash:
            self._drop_version(a.name, a.version)
        self.store.drop_stage(a.name, a.version)
        reason = f"{a.reason or 'rollback requested by the fleet'}; back on {prev}"
        self.audit({"name": a.name, "version": a.version, "to": prev, "action": "rolled_back", "trigger": "fleet",
                    "reason": reason, "rollout": a.rollout})
        self.finish(Job(a.name, a.version, a.rollout, state=ACTIVATING), ROLLED_BACK, reason, phase=SUCCEEDED)

    def _rollback_to(self, name: str, prev: str | None, bad: str) -> None:
        self.store.point(name, prev)
        self._drop_version(name, bad)
        if prev is not None:
            ok, why = self._health(name, prev)
            if not ok:
                log.error("rollback of %s to %s: health check failed too: %s", name, prev, why)

    def _drop_version(self, name: str, bad: str) -> None:
        """The rolled-back version's files go; no previous version is kept after a rollback."""
        self.store.save_model(name, previous=None, rollout=None)
        shutil.rmtree(self.store.model_dir(name) / bad, ignore_errors=True)

    def _health(self, name: str, version: str) -> tuple[bool, str]:
        try:
            ok = bool(self.on_activated(name, version))
            return ok, "" if ok else "on_activated returned False"
        except Exception as e:  # noqa: BLE001 - the runtime's check raising is a failed check
            log.exception("health check of %s@%s raised", name, version)
            return False, f"{type(e).__name__}: {e}"

    # ------------------------------------------------------------------ states
    def _fail(self, job: Job, reason: str, stage: Path, keep: bool) -> None:
        """FAILED (ROLLED_BACK when the self-test or the shadow evaluation failed); the staging folder goes unless
        the download only stalled (then its verified chunks stay for a new offer)."""
        phase = job.state
        state = ROLLED_BACK if phase in (SELF_TEST, SHADOW) else FAILED
        if state == ROLLED_BACK:
            reason = f"{reason}; {self.store.active(job.name)} stays active"
        job.resumable = bool(keep and stage.is_dir())
        if not job.resumable:  # before the report: a device that says FAILED has nothing of the job left on disk
            self.store.drop_stage(job.name, job.version)
        self.finish(job, state, reason, phase=phase, quiet=_superseded_reason(reason))

    def finish(self, job: Job, state: str, reason: str | None, phase: str | None = None,
               quiet: bool = False) -> None:
        """Enter a terminal state and report it (quiet: logged at debug level, e.g. a superseded offer)."""
        job.state, job.reason, job.phase = state, reason, phase
        job.timings["total_s"] = round(time.time() - job.started, 3)
        level = logging.DEBUG if quiet else logging.INFO if state == SUCCEEDED else logging.WARNING
        log.log(level, "update %s: %s%s", job.key, state, f" ({reason})" if reason else "")
        if not quiet:  # activations, failures and rollbacks with their reasons (not superseded offers)
            decisions.record("model_update", job.key, {
                "name": job.name, "version": job.version, "state": state, "phase": phase, "reason": reason,
                "rollout": job.rollout, "timings": dict(job.timings), "selftest": job.selftest,
                "shadow": job.shadow, "active": self.store.active(job.name)},
                reason=f"{state}{f' in {phase}' if phase else ''}{f': {reason}' if reason else ''}"[:500])
        self.report(job)

    def _set(self, job: Job, state: str) -> None:
        job.state = state
        log.info("update %s: %s", job.key, state)
        self.report(job)

    # ------------------------------------------------------------------ the pinned fleet key
    def _pin_key(self):
        path = self.opts.public_key or sign.public_key_path(self.zoo.cache)
        try:
            raw = Path(path).read_bytes()
            key = sign.load_public_key(raw)
        except (OSError, sign.SignatureError) as e:
            log.error("model updates: no usable pinned public key %s (%s): every update will be refused", path, e)
            return None
        if self.opts.public_key:  # the runtime's zoo checks built.json signatures too: let it trust the fleet key
            dest = self.zoo.cache / "keys" / TRUSTED_DIR / f"fleet-{sign.key_id(key)}.pub"
            if not dest.is_file():
                write_atomic(dest, raw)
                log.info("model updates: fleet key %s trusted for the versions it signs (%s)", sign.key_id(key), dest)
        return key

    def _key(self):
        if self._pub is None:
            raise UpdateError("bad signature: no pinned fleet public key on this device")
        return self._pub


def _superseded_reason(reason: str | None) -> bool:
    return bool(reason) and reason.startswith("superseded")


def _superseded(job: Job) -> bool:
    return job.state == FAILED and _superseded_reason(job.reason)


def _read_job(vdir: Path) -> dict | None:
    """job.json of a staging folder, or None if it is missing, unreadable or not an object."""
    try:
        if not vdir.is_dir() or vdir.is_symlink():
            return None
        with open(vdir / "job.json", "rb") as f:
            d = json.loads(f.read(MAX_JOB_FILE))
    except (OSError, ValueError, RecursionError):
        return None
    return d if isinstance(d, dict) else None


def _remove(path: Path) -> None:
    """Delete a file, a symlink or a folder tree (never following a symlink out of updates/)."""
    try:
        if path.is_symlink() or path.is_file():
            path.unlink()
        elif path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
    except OSError as e:
        log.warning("cannot remove %s: %s", path, e)


def _swap(mdir: Path, version: str) -> None:
    """Point `current` at version atomically (new symlink, then rename over the old one)."""
    tmp = mdir / f".current.{os.getpid()}.tmp"
    tmp.unlink(missing_ok=True)
    os.symlink(version, tmp)
    os.replace(tmp, mdir / "current")
    fsync_dir(mdir)


_AGENT_TMP = re.compile(r"\.agent\.json\.\d+\.\d+\.tmp")  # write_atomic's temporary of agent.json
TMP_GRACE_S = 60.0  # a temporary younger than this may be a write in progress: the startup cleaning leaves it


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return float("inf")


def _write_json(path: Path, obj: dict) -> None:
    """write_atomic: a failed write (disk full) leaves the old file and no temporary; the worker and a command
    handler may write at once."""
    write_atomic(path, json.dumps(obj, indent=1, sort_keys=True).encode())


def _runtime() -> str:
    from sync.service import _sw_version

    return _sw_version()

