"""`edge data purge`: remove the device's stored history (docs/PRIVACY.md), and the retention the running device
enforces itself.

What is removed:

- outbox: undelivered records of `[privacy] session_kinds` (try-on sessions) older than `session_retention_days`
  (a `_gap` record with reason `retention` takes their place, so the cloud's ack watermark moves on); dead-lettered
  records older than `history_retention_days`; their content is overwritten (SQLite secure_delete), the WAL is
  emptied and (`edge data purge` only) the file rewritten (VACUUM), so delivered and deleted records are gone from
  the disk, not only from the tables;
- decision log: records older than `[decisions] retention_days` (rotated segments by age, the active segment
  rewritten without the old records);
- shelf references: every stored reference of the planograms (`[analytics.planogram]`, `[[cameras]]`) in their
  `reference_dir` (they hold only the facings, but a shopper standing still in front of one is not ruled out); the
  device takes them again at its next clear view;
- files a crash left half-written in those folders and the decision log's (`write_atomic`'s
  `.<name>.<pid>.<thread>.tmp`), and the damaged copies the device moved aside (`<outbox>.corrupt-*`, `<alert state>.damaged-*`) older than
  `history_retention_days` (they are undeliverable, like dead letters).

`--older-than DURATION` uses one cutoff for all of them instead (a shelf reference goes when it was saved before
it); `--all` removes every session record, every dead letter, the whole decision log, every shelf reference and
every damaged copy.
Undelivered events and alerts other than session data are never removed here (they are the store's data in transit;
they leave the device when delivered). Each purge (not --dry-run) is recorded in the decision log (`data_purge`,
counts only) when `[decisions] enabled`.

`edge run` holds a lock beside the outbox while it runs; `edge data purge` refuses to run then (the running device
enforces the retention itself every `[privacy] retention_check_s`: `RetentionLoop`).
"""
from __future__ import annotations

import fcntl
import glob
import json
import logging
import os
import re
import sqlite3
import time
from pathlib import Path

from edge.core.periodic import Periodic

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    pp = sub.add_parser("purge", help="remove stored history past its retention (or all of it)",
                        description="Remove undelivered session records, dead letters and decision-log records "
                                    "past their retention ([privacy], [decisions]), or all of them (--all), and the "
                                    "stored shelf references; the "
                                    "device must not be running. See docs/PRIVACY.md.")
    pp.add_argument("--config", required=True, help="device TOML (its outbox, decision log and [privacy] retention)")
    when = pp.add_mutually_exclusive_group()
    when.add_argument("--all", action="store_true",
                      help="remove all session data, dead letters, decision logs and shelf references")
    when.add_argument("--older-than", metavar="DURATION",
                      help="one cutoff for everything instead of the configured retention: 90s, 15m, 2h, 7d, 1w")
    pp.add_argument("--dry-run", action="store_true", help="count what would be removed, remove nothing")
    pp.add_argument("--json", action="store_true", help="print the counts as JSON")


# ------------------------------------------------------------------------------------------------ the run lock
def lock_path(cfg) -> Path:
    """`<outbox>.lock`: held by `edge run` while it runs."""
    p = cfg.sync.resolved_outbox_path(cfg.device.id)
    return p.with_name(p.name + ".lock")


class RunLock:
    """An exclusive `flock` on the lock file (released by the kernel when the process ends, however it ends)."""

    def __init__(self, path: Path):
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> bool:
        """True if taken; False if another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return True

    def holder(self) -> str:
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# ------------------------------------------------------------------------------------------------ purging
def purge_outbox(outbox, privacy, *, session_before: float | None, history_before: float | None,
                 vacuum: bool = True, dry_run: bool = False) -> dict:
    """Expire session records and dead letters of an open `sync.outbox.Outbox` (None cutoff: all of them); the
    deleted content is overwritten (secure_delete) and the WAL emptied; `vacuum` also rewrites the file."""
    kinds = list(privacy.session_kinds)
    s_before = time.time() + 1 if session_before is None else session_before
    if dry_run:  # what expire() and purge_dead_letters() would delete (a dead session record counts as a session)
        h_before = time.time() + 1 if history_before is None else history_before
        n_s, n_d = outbox.expiring(kinds, s_before, h_before)
        return {"session_records": n_s, "dead_letters": n_d, "compacted": False}
    n_s = outbox.expire(kinds, s_before)
    n_d = outbox.purge_dead_letters(history_before)
    written_back = True
    if n_s or n_d or vacuum:  # an explicit purge always rewrites the file: rows deleted before leave no trace
        written_back = outbox.compact(vacuum=vacuum)
    out = {"session_records": n_s, "dead_letters": n_d, "compacted": bool(vacuum)}
    if vacuum and not written_back:
        # another process's read transaction kept the checkpoint from writing the rewritten file back: the old
        # pages, deleted records included, are still in the file
        out.update(compacted=False, outbox_busy=True)
    return out


def purge_decisions(folder: Path, before: float | None, *, dry_run: bool = False) -> dict:
    """Remove decision-log records older than `before` (None: the whole log) from a log no process writes."""
    from edge.core.decisions import segment_paths, trim_segment

    out = {"decision_records": 0, "decision_files": 0}
    if not folder.is_dir():
        return out
    for path in segment_paths(folder):
        if path.exists():
            removed, deleted = trim_segment(path, before, dry_run=dry_run)
            out["decision_records"] += removed
            out["decision_files"] += deleted
    return out


def shelf_reference_dirs(cfg) -> list[Path]:
    """The folders of the device's stored shelf references: each planogram with facings (`[analytics]`, each
    `[[cameras]]`; `reference_dir` "" keeps them in memory: none)."""
    from edge.analytics.facings import reference_dir_of

    out: list[Path] = []
    for a in (cfg.analytics, *(c.analytics for c in cfg.cameras)):
        d = reference_dir_of(a.planogram) if a.planogram.facings else None
        if d is not None and d not in out:
            out.append(d)
    return out


def purge_shelf_references(folders: list[Path], before: float | None, *, dry_run: bool = False) -> dict:
    """Remove the stored shelf references in these folders (saved before `before`; None: all of them)."""
    from edge.analytics.facings import REFERENCE_FILES

    n = 0
    for d in folders:
        files = [d / name for name in REFERENCE_FILES if (d / name).is_file()]
        if not files:
            continue
        if before is not None and max(f.stat().st_mtime for f in files) >= before:
            continue
        n += 1
        if dry_run:
            continue
        for f in files:
            f.unlink(missing_ok=True)
    return {"shelf_references": n}


def purge_leftovers(places: list[tuple[Path, tuple[str, ...]]], *, dry_run: bool = False) -> dict:
    """Remove what a process killed while writing left beside these files ((folder, file name globs)): the
    temporary files of `edge.core.files.write_atomic` (`.<name>.<pid>.<thread>.tmp`: a shelf reference's pixels,
    decision records). Nothing writes them while the purge holds the run lock, so each one is an orphan."""
    n = 0
    for d, names in places:
        found = {f for name in names for f in d.glob(f".{name}.*.tmp")} if d.is_dir() else set()
        for f in sorted(found):
            if f.is_file() and not f.is_symlink():
                n += 1
                if not dry_run:
                    f.unlink(missing_ok=True)
    return {"leftover_files": n}


def quarantined_files(cfg) -> list[Path]:
    """Copies the device moved aside as damaged and never reads again: the outbox (`<outbox>.corrupt-<time>`, with
    its -wal and -shm) and the alert states (`<state file>.damaged-<time>`, main and each `[[cameras]]`)."""
    from edge.app.behaviour import alert_state_path

    ob = cfg.sync.resolved_outbox_path(cfg.device.id)
    places = [ob.with_name(ob.name + ".corrupt-")]
    for camera, alerts in ((None, cfg.alerts), *((c.id, c.alerts) for c in cfg.cameras)):
        state = alert_state_path(cfg, alerts, camera)
        if state is not None:
            places.append(state.with_name(state.name + ".damaged-"))
    found: set[Path] = set()
    for prefix in places:
        if prefix.parent.is_dir():
            found.update(f for f in prefix.parent.glob(glob.escape(prefix.name) + "*")
                         if f.is_file() and not f.is_symlink())
    return sorted(found)


def moved_aside_at(f: Path) -> float:
    """When a damaged copy was moved aside: the local time in its name (`.corrupt-` / `.damaged-YYYYmmddTHHMMSS`),
    else its last change (a rename keeps the mtime of the data: an old outbox moved aside today is new here)."""
    m = re.search(r"\.(?:corrupt|damaged)-(\d{8}T\d{6})", f.name)
    if m:
        try:
            return time.mktime(time.strptime(m.group(1), "%Y%m%dT%H%M%S"))
        except (ValueError, OverflowError):
            pass
    st = f.stat()
    return max(st.st_mtime, st.st_ctime)


def purge_quarantined(files: list[Path], before: float | None, *, dry_run: bool = False) -> dict:
    """Remove the damaged copies moved aside before `before` (None: all of them): undeliverable, like dead
    letters; their age counts from when they were moved aside (`moved_aside_at`)."""
    n = 0
    for f in files:
        if before is not None and moved_aside_at(f) >= before:
            continue
        n += 1
        if not dry_run:
            f.unlink(missing_ok=True)
    return {"quarantined_files": n}


def older_than_cutoff(value: str, now: float | None = None) -> float:
    """The wall-time cutoff of `--older-than`: a duration ago (90s, 15m, 2h, 7d, 1w) or an ISO 8601 time. A bare
    number is refused (ValueError): `30` is not 30 days but 1970 (nothing purged), `nan` / `inf` no time at all."""
    from edge.core.decisions import parse_since

    forms = "use a duration ago with its unit (90s, 15m, 2h, 7d, 1w) or an ISO 8601 time (2026-05-01T09:00:00+02:00)"
    try:
        float(value)
    except ValueError:
        pass
    else:
        raise ValueError(f"--older-than {value!r}: a number without its unit: {forms}")
    try:
        return parse_since(value, now)
    except ValueError:
        raise ValueError(f"--older-than {value!r}: {forms}") from None


def cutoffs(cfg, *, all_: bool, older_than: str | None, now: float | None = None) -> dict[str, float | None]:
    """Wall-time cutoffs (None: everything) for session records, dead letters, decision records and shelf
    references (these have no retention: every purge removes them, --older-than only the older ones)."""
    now = time.time() if now is None else now
    if all_:
        return {"session": None, "history": None, "decisions": None, "shelf": None}
    if older_than:
        t = older_than_cutoff(older_than, now)
        return {"session": t, "history": t, "decisions": t, "shelf": t}
    p = cfg.privacy
    return {"session": now - p.session_retention_days * 86400, "history": now - p.history_retention_days * 86400,
            "decisions": now - cfg.decisions.retention_days * 86400, "shelf": None}


def purge(cfg, *, all_: bool = False, older_than: str | None = None, dry_run: bool = False) -> dict:
    """Purge one device's stored data (the device must not be running: see RunLock). Returns the counts."""
    from edge.analytics.facings import REFERENCE_FILES
    from edge.app.operations import decision_log_dir
    from sync.outbox import Outbox

    cut = cutoffs(cfg, all_=all_, older_than=older_than)
    counts: dict = {"session_records": 0, "dead_letters": 0, "compacted": False}
    path = cfg.sync.resolved_outbox_path(cfg.device.id)
    if path.exists():
        # a corrupt outbox raises here (reported by `edge data purge`); `edge run` is what moves one aside
        with Outbox(path, max_bytes=int(cfg.sync.max_outbox_mb * 2**20), quarantine_corrupt=False) as ob:
            counts.update(purge_outbox(ob, cfg.privacy, session_before=cut["session"],
                                       history_before=cut["history"], dry_run=dry_run))
    folder = decision_log_dir(cfg)
    counts.update(purge_decisions(folder, cut["decisions"], dry_run=dry_run))
    shelves = shelf_reference_dirs(cfg)
    counts.update(purge_shelf_references(shelves, cut["shelf"], dry_run=dry_run))
    counts.update(purge_quarantined(quarantined_files(cfg), cut["history"], dry_run=dry_run))
    counts.update(purge_leftovers([(folder, ("decisions*.jsonl",)), *((d, REFERENCE_FILES) for d in shelves)],
                                  dry_run=dry_run))
    counts.update({"outbox": str(path), "decision_log": str(folder), "shelf_reference_dirs": [str(d) for d in shelves],
                   "dry_run": dry_run,
                   "mode": "all" if all_ else f"older than {older_than}" if older_than else "retention"})
    if not dry_run and cfg.decisions.enabled:
        _record(cfg, folder, counts)
    return counts


def _record(cfg, folder: Path, counts: dict) -> None:
    """One `data_purge` decision (counts only) in the device's decision log, written now."""
    from edge.core.decisions import DecisionLog

    try:
        dl = DecisionLog.from_config(cfg.decisions, folder).open()
    except OSError as e:
        log.warning("purge not recorded in the decision log %s: %s", folder, e)
        return
    try:
        dl.record("data_purge", "cli", {k: v for k, v in counts.items()
                                            if k not in ("outbox", "decision_log", "shelf_reference_dirs")},
                  reason=f"edge data purge ({counts['mode']})", wait=True)
    finally:
        dl.close()


def run(args) -> int:
    from edge.app.config import ConfigError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        log.error("invalid config:\n%s", e)
        return 2
    if args.older_than:
        try:
            older_than_cutoff(args.older_than)
        except ValueError as e:
            log.error("%s", e)
            return 2
    lock = RunLock(lock_path(cfg))
    try:
        taken = lock.acquire()
    except OSError as e:
        log.error("cannot create the run lock %s: %s (fix: make the outbox's folder writable, or set [sync] "
                  "outbox_path in %s)", lock.path, e, args.config)
        return 1
    if not taken:
        log.error("edge run is running for device %s (pid %s holds %s): stop it first; while it runs it enforces "
                  "the retention itself every [privacy] retention_check_s", cfg.device.id, lock.holder(), lock.path)
        return 3
    try:
        counts = purge(cfg, all_=args.all, older_than=args.older_than, dry_run=args.dry_run)
    except (OSError, sqlite3.Error) as e:  # an unreadable / damaged outbox, a read-only disk
        log.error("purge of device %s stopped: %s (outbox %s; fix: check the file and its disk; a damaged outbox "
                  "is moved aside by `edge run`, which starts a new one)", cfg.device.id, e,
                  cfg.sync.resolved_outbox_path(cfg.device.id))
        return 1
    finally:
        lock.release()
    if args.json:
        print(json.dumps(counts, indent=1))
    else:
        verb = "would remove" if args.dry_run else "removed"
        print(f"{cfg.device.id}: {verb} {counts['session_records']} session record(s) and "
              f"{counts['dead_letters']} dead letter(s) from {counts['outbox']}"
              f"{' (compacted)' if counts['compacted'] else ''}; {counts['decision_records']} decision record(s) "
              f"from {counts['decision_log']}; {counts['shelf_references']} shelf reference(s); "
              f"{counts['quarantined_files']} damaged copy(ies) and {counts['leftover_files']} file(s) left by a "
              f"crash ({counts['mode']})")
    if counts.get("outbox_busy"):
        log.error("the deleted records are still in %s: another process has it open (a read transaction: an "
                  "`sqlite3` shell, a backup) and the file could not be rewritten; fix: close it and run `edge data "
                  "purge` again", counts["outbox"])
        return 1
    return 0


# ------------------------------------------------------------------------------------------------ while running
class RetentionLoop(Periodic):
    """The running device's retention: every `[privacy] retention_check_s`, undelivered session records and dead
    letters past their retention leave the outbox (recorded as `data_purge` when something went), and the decision
    log drops its records older than its own retention (DecisionLog.enforce_retention)."""

    thread_name = "privacy-retention"
    join_s = 5.0

    def __init__(self, outbox, privacy, *, clock=time.time):
        super().__init__()
        self.outbox, self.privacy, self._clock = outbox, privacy, clock
        self.interval_s = privacy.retention_check_s

    def run_once(self) -> dict:
        from edge.core import decisions

        now = self._clock()
        p = self.privacy
        counts = purge_outbox(self.outbox, p, session_before=now - p.session_retention_days * 86400,
                              history_before=now - p.history_retention_days * 86400, vacuum=False)
        if counts["session_records"] or counts["dead_letters"]:
            decisions.record("data_purge", "retention", counts, reason="retention enforced on the running device")
        log_ = decisions.get_default()
        if log_ is not None:
            log_.enforce_retention()
        return counts

