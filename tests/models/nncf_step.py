"""Run the chain's real `nncf_int8` step command on a few calibration samples, into a temp folder."""
from __future__ import annotations

import subprocess
from pathlib import Path


def run_small(cmd: list[str], tmp_path: Path, limit: int = 8) -> tuple[Path, list[str]]:
    """(the quantized IR, the command as run): the step's own command with its output, info file and calibration
    sample count redirected; fails the test with the step's output when it fails."""
    cmd = list(cmd)
    out = tmp_path / "q.xml"
    cmd[3] = str(out)  # python, script, src, dst, ...
    cmd[cmd.index("--limit") + 1] = str(limit)
    cmd[cmd.index("--info") + 1] = str(tmp_path / "info.json")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return out, cmd
