"""The steps `edge models train` runs in the isolated `train` venv, shared by every kind (landmark QAT, student,
detector QAT): one subprocess with its output logged, and train → export → run.json."""
from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def run_logged(cmd: list[str], log_path: Path) -> int:
    """Run a build-venv step, appending its output to log_path and echoing its progress lines; its exit code."""
    log.info("$ %s  (log %s)", shlex.join(cmd), log_path)
    env = dict(os.environ, PYTHONNOUSERSITE="1", PYTHONPATH="", PYTHONUNBUFFERED="1")
    with open(log_path, "a") as f:
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        assert p.stdout is not None
        for line in p.stdout:  # progress to the terminal and the log
            f.write(line)
            if " INFO train:" in line or "WARNING" in line or "Error" in line:
                log.info("%s", line.rstrip().split(": ", 1)[-1])
        return p.wait()


def train_then_export(args: argparse.Namespace, work: Path, train_cmd: list[str], made_by: str,
                      export_cmd) -> tuple[Path, str, dict] | None:
    """Train (`train_cmd`, unless --from-run) and export the final weights (`export_cmd(final, out)`, which writes
    out/run.json) into a fresh <work>/export: (that folder, the command that made the weights, run.json), or None
    after saying which step failed and where its log is."""
    if args.from_run:
        final = Path(args.from_run)
        command = f"packaged from {final} (made by: {made_by}, see recipe)"
    else:
        rc = run_logged(train_cmd, work / "train.log")
        if rc not in (0, 3):  # 3: stopped at --time-limit with a final checkpoint
            print(f"edge models train: training failed (exit {rc}); log {work / 'train.log'}")
            return None
        final = work / "final.pt"
        command = "edge models train " + " ".join(a for a in sys.argv[3:] if a != "--install")
    out = work / "export"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    rc = run_logged(export_cmd(final, out), work / "export.log")
    if rc != 0:
        print(f"edge models train: export failed (exit {rc}); log {work / 'export.log'}")
        return None
    return out, command, json.loads((out / "run.json").read_text())


def install(files: list[Path], prov: dict, notice: str, model: str, trained_root: str | None) -> int:
    """Copy a run's files, its PROVENANCE.json and NOTICE into models/trained/<model>/ (or trained_root/<model>):
    0, or 1 after saying why when a file is over the 5 MB the repository takes."""
    from models.build import trained

    too_big = [p.name for p in files if p.stat().st_size > trained.MAX_COMMITTED_BYTES]
    if too_big:
        print(f"edge models train: not installing, files over 5 MB cannot be committed: {too_big}")
        return 1
    dst = trained.folder(model, Path(trained_root) if trained_root else None)
    dst.mkdir(parents=True, exist_ok=True)
    for p in files:
        shutil.copyfile(p, dst / p.name)
    (dst / "PROVENANCE.json").write_text(json.dumps(prov, indent=1))
    (dst / "NOTICE").write_text(notice)
    print(f"installed {len(files)} file(s) into {dst}; `edge models build` picks them up")
    return 0
