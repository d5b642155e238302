"""The build lock against a build started from inside one of its own steps (stop 39 review)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from models.build.chain import BuildError, Chain, build_lock

ROOT = Path(__file__).resolve().parents[2]


def test_a_build_started_from_one_of_its_steps_fails_instead_of_waiting_for_good(tmp_path):
    """A step (a subprocess holding its build's lock) that starts `edge models build` of the same cache: the inner
    build waited for the lock its own parent holds until the parent ends, which it never does (a hung build with
    no error). It now fails at once and names the cause; the step fails with it."""
    inner = ("import sys\nfrom pathlib import Path\nfrom models.build.chain import build_lock\n"
             "with build_lock(Path(sys.argv[1])):\n    pass\n")
    chain = Chain(tmp_path, only=["face_detection_full_range"])
    with build_lock(tmp_path) as chain._lock_fd:
        with pytest.raises(BuildError, match="failed") as err:
            chain._subprocess("face:step", [sys.executable, "-c", inner, str(tmp_path)], tmp_path / "step.log")
    log = (tmp_path / "step.log").read_text()
    assert "called from inside a build step" in log, log
    assert "step.log" in str(err.value)
    with build_lock(tmp_path):  # another cache, or this one after the build: no error
        pass
