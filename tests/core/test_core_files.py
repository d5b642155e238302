"""edge.core.files.write_atomic under a failing write: the old content stays and no temporary file is left."""
from __future__ import annotations

import subprocess
import sys


def test_write_atomic_that_fails_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    """Disk full (here the file-size limit, the same OSError path): the write raises, `path` keeps its old bytes,
    and the half-written temporary file beside it is removed (before, it stayed and held the disk space)."""
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    script = ("import resource, signal, sys\n"
              "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))\n"
              "from edge.core.files import write_atomic\n"
              "try:\n"
              "    write_atomic(sys.argv[1], b'x' * 65536)\n"
              "except OSError as e:\n"
              "    print('raised', e.errno)\n"
              "    sys.exit(3)\n")
    r = subprocess.run([sys.executable, "-c", script, str(target)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and "raised" in r.stdout, r.stdout + r.stderr
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_write_atomic_replaces_and_creates_the_folder(tmp_path):
    from edge.core.files import write_atomic

    target = tmp_path / "a" / "b.json"
    write_atomic(target, b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two"
    assert sorted(p.name for p in target.parent.iterdir()) == ["b.json"]
