"""Install, verify, activate and roll back model versions: the update state machine and the active-model pointer
it owns. No MQTT here: manifests and chunks come from an `UpdateSource` (sync/update_transport.py), and every
state change goes to a `report(job)` callback.

Layout: `<cache>/models/<name>/<version>/` (zoo layout, `built.json` = the signed update manifest) and a
`<cache>/models/<name>/current` symlink swapped atomically; staging and resumable downloads in
`<cache>/updates/<name>/<version>/` (with `job.json` for crash recovery); agent state (per model: previous,
anti-rollback floor, installed versions, last job; the status seq) in `<cache>/updates/agent.json`.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Protocol

from models import sign
from models.zoo import ModelZoo
from sync import topics
from sync.update_download import Staging
from sync.update_job import (ACTIVATING, DOWNLOADING, FAILED, QUEUED, ROLLED_BACK, SELF_TEST, SUCCEEDED, TERMINAL,
                             VERIFYING, Job, OfferArgs, UpdateOptions)
from sync.update_manifest import UpdateError, newer, verify
from sync.update_selftest import self_test

log = logging.getLogger(__name__)

OnActivated = Callable[[str, str], bool]


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
        self._lock = threading.Lock()
        self._state = self._load_state()

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
            recs = json.loads(json.dumps(self._state["models"]))
        for name in set(recs) | {n for n in self.zoo.names() if self.active(n)}:
            recs.setdefault(name, {})["active"] = self.active(name)
        return recs

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
        """Next status seq; a terminal job becomes its model's `last`."""
        with self._lock:
            self._state["seq"] = self._state.get("seq", 0) + 1
            if job.state in TERMINAL and job.name in self.zoo.names():
                self._state["models"].setdefault(job.name, {})["last"] = {
                    "version": job.version, "state": job.state, "reason": job.reason}
            self._save_state()
            return self._state["seq"]

    # ------------------------------------------------------------------ jobs on disk (crash recovery)
    def save_job(self, job: Job) -> None:
        """job.json in the job's staging folder (created for an unfinished job, so a crash at any point resumes)."""
        stage = self.stage_dir(job.name, job.version)
        if job.state not in TERMINAL:
            stage.mkdir(parents=True, exist_ok=True)
        if stage.is_dir():
            _write_json(stage / "job.json", job.to_dict())

    def unfinished_jobs(self) -> Iterator[tuple[Job, str]]:
        """(job to resume, the state it was in) for every job.json not in a terminal state."""
        for jf in sorted(self.dir.glob("*/*/job.json")):
            try:
                d = json.loads(jf.read_text())
            except (OSError, ValueError):
                continue
            if d.get("state") not in TERMINAL:
                yield Job(d["name"], d["version"], d.get("rollout", ""), progress={"resumed_job": True}), d.get("state")

    def _load_state(self) -> dict:
        try:
            st = json.loads((self.dir / "agent.json").read_text())
        except (OSError, ValueError):
            st = {}
        st.setdefault("models", {})
        return st

    def _save_state(self) -> None:
        _write_json(self.dir / "agent.json", self._state)


class UpdateInstaller:
    """One job through DOWNLOADING, VERIFYING, SELF_TEST, ACTIVATING to SUCCEEDED / FAILED / ROLLED_BACK, and fleet
    rollbacks. `on_activated(name, version) -> bool` is the runtime's post-activation health check."""

    def __init__(self, store: ModelStore, source: UpdateSource, options: UpdateOptions, on_activated: OnActivated,
                 report: Callable[[Job], None]) -> None:
        self.store, self.source, self.opts = store, source, options
        self.zoo = store.zoo
        self.on_activated, self.report = on_activated, report
        self._pub = self._pin_key()

    # ------------------------------------------------------------------ update jobs
    def run_job(self, job: Job) -> None:
        stage = self.store.stage_dir(job.name, job.version)
        if job.progress.get("resumed_job") and self.store.active(job.name) == job.version:
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

    def cancel_queued(self, job: Job) -> None:
        """A job whose offer a fleet rollback canceled before it started."""
        self.finish(job, FAILED, "canceled by a fleet rollback before it started", phase=QUEUED)

    def _precheck(self, job: Job) -> None:
        if job.cancel.is_set():
            raise UpdateError("canceled by a fleet rollback")
        if job.name not in self.zoo.names():
            raise UpdateError(f"unknown model {job.name!r} (this device knows {self.zoo.names()})")
        try:
            topics.check_version(job.version)
        except ValueError as e:
            raise UpdateError(str(e)) from None
        floor = self.store.record(job.name).get("floor")
        active = self.store.active(job.name)
        for what, v in (("installed", floor), ("active", active)):
            if v is not None and not newer(job.version, v):
                raise UpdateError(f"downgrade/replay refused: {job.version} is not newer than the {what} {v}")
        if self._pub is None:
            raise UpdateError("bad signature: no pinned fleet public key on this device")

    def _manifest(self, job: Job, stage: Path) -> dict:
        """Fetch (unless staged) and verify the signed manifest before downloading anything."""
        path = stage / "update.json"
        if not path.is_file():
            raw = self.source.fetch_manifest(job)
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(raw)
            tmp.replace(path)
        try:
            return verify(path, self._key(), name=job.name, version=job.version, runtime=_runtime())
        except UpdateError:
            path.unlink(missing_ok=True)
            raise

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
        shutil.copyfile(manifest, st.dir / "built.json")
        if vdir.exists():
            shutil.rmtree(vdir)  # leftover of an earlier failed attempt (never the active or previous one)
        mdir.mkdir(parents=True, exist_ok=True)
        st.dir.rename(vdir)
        self.store.point(job.name, job.version)
        self.store.save_model(job.name, previous=prev)
        job.timings["activate_s"] = round(time.monotonic() - t0, 3)
        self._check_activated(job, prev, prune=True)

    def _resume_activated(self, job: Job) -> None:
        job.state = ACTIVATING
        self._check_activated(job, self.store.record(job.name).get("previous"), prune=False)

    def _check_activated(self, job: Job, prev: str | None, *, prune: bool) -> None:
        """Post-activation health check: SUCCEEDED (version becomes the anti-rollback floor) or roll back."""
        ok, why = self._health(job.name, job.version)
        if not ok:
            self._rollback_to(job.name, prev, job.version)
            self.finish(job, ROLLED_BACK, f"health check failed after activation: {why}; back on {prev}",
                        phase=ACTIVATING)
            return
        self.store.save_model(job.name, previous=prev, floor=job.version)
        if prune:
            self.store.prune(job.name)
        shutil.rmtree(self.store.stage_dir(job.name, job.version), ignore_errors=True)
        self.finish(job, SUCCEEDED, None)

    def run_rollback(self, a: OfferArgs) -> None:
        """Fleet rollback of name@version: if active, go back to the kept previous version."""
        reason = a.reason or "rollback requested by the fleet"
        if self.store.active(a.name) != a.version:
            log.info("rollback of %s@%s: not active (active %s), nothing to do", a.name, a.version,
                     self.store.active(a.name))
            return
        prev = self.store.record(a.name).get("previous")
        job = Job(a.name, a.version, a.rollout, state=ACTIVATING)
        if prev is None or not (self.store.model_dir(a.name) / prev).is_dir():
            self.finish(job, FAILED, f"cannot roll back: no previous version of {a.name} kept", phase=ACTIVATING)
            return
        self._rollback_to(a.name, prev, a.version)
        self.finish(job, ROLLED_BACK, f"{reason}; back on {prev}", phase=SUCCEEDED)

    def _rollback_to(self, name: str, prev: str | None, bad: str) -> None:
        self.store.point(name, prev)
        self.store.save_model(name, previous=None)
        shutil.rmtree(self.store.model_dir(name) / bad, ignore_errors=True)
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

    # ------------------------------------------------------------------ states
    def _fail(self, job: Job, reason: str, stage: Path, keep_chunks: bool) -> None:
        phase = job.state
        state = ROLLED_BACK if phase == SELF_TEST else FAILED
        if state == ROLLED_BACK:
            reason = f"{reason}; {self.store.active(job.name)} stays active"
        self.finish(job, state, reason, phase=phase)
        if not keep_chunks:
            shutil.rmtree(stage, ignore_errors=True)

    def finish(self, job: Job, state: str, reason: str | None, phase: str | None = None) -> None:
        """Enter a terminal state and report it."""
        job.state, job.reason, job.phase = state, reason, phase
        job.timings["total_s"] = round(time.time() - job.started, 3)
        (log.info if state == SUCCEEDED else log.warning)("update %s: %s%s", job.key, state,
                                                          f" ({reason})" if reason else "")
        self.report(job)

    def _set(self, job: Job, state: str) -> None:
        job.state = state
        log.info("update %s: %s", job.key, state)
        self.report(job)

    # ------------------------------------------------------------------ the pinned fleet key
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
