"""`edge data purge` on broken storage: a clear error and exit 1, never a traceback (the real CLI and outbox)."""
from __future__ import annotations

import subprocess
import sys

HEAD = '[device]\nid = "d1"\nstore = "s1"\nkind = "kiosk"\n'


def purge(cfg):
    return subprocess.run([sys.executable, "-m", "edge.app.cli", "data", "purge", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=120)


def test_outbox_folder_that_cannot_be_made(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    cfg = tmp_path / "dev.toml"
    cfg.write_text(HEAD + f'[sync]\noutbox_path = "{blocker / "ob.sqlite"}"\n')
    r = purge(cfg)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"cannot create the run lock {blocker / 'ob.sqlite.lock'}" in r.stderr
    assert f"set [sync] outbox_path in {cfg}" in r.stderr


def test_damaged_outbox(tmp_path):
    ob = tmp_path / "ob.sqlite"
    ob.write_bytes(b"not a database " * 100)
    cfg = tmp_path / "dev.toml"
    cfg.write_text(HEAD + f'[sync]\noutbox_path = "{ob}"\n[decisions]\npath = "{tmp_path / "dec"}"\n')
    r = purge(cfg)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"purge of device d1 stopped: file is not a database (outbox {ob};" in r.stderr
    assert ob.read_bytes() == b"not a database " * 100  # left as it was, for the operator to look at
