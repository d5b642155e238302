"""The build chain: a second run is a no-op, bad sources and failing steps give clear errors."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from models.build.chain import BuildError, Chain, build


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_second_build_is_a_noop(built_cache):
    before = _snapshot(built_cache / "models") | _snapshot(built_cache / "calibration")
    res = build(built_cache, progress=False)
    assert res.ran == [], f"steps re-ran with nothing changed: {res.ran}"
    assert len(res.skipped) > 20
    after = _snapshot(built_cache / "models") | _snapshot(built_cache / "calibration")
    assert after == before, "files were rewritten by a no-op build"


def test_all_declared_artifacts_built(zoo):
    for name in zoo.names():
        got = {(a.backend, a.precision) for a in zoo.artifacts(name)}
        want = {(a["backend"], a["precision"]) for a in zoo.manifest(name)["artifacts"]}
        assert got == want, name


def test_truncated_source_wheel_is_a_clear_error(built_cache, tmp_path):
    wheel = next((built_cache / "downloads").glob("mediapipe-0.10.21-*.whl"))
    (tmp_path / "downloads").mkdir()
    bad = tmp_path / "downloads" / wheel.name
    with open(wheel, "rb") as f:
        bad.write_bytes(f.read(4096))  # truncated download
    with pytest.raises(BuildError) as e:
        Chain(tmp_path, only=["pose_detection"], skip_int8=True).run(progress=False)
    msg = str(e.value)
    assert "pose_detection" in msg and wheel.name in msg and "edge models build" in msg


def test_failing_step_shows_step_command_and_log_tail(tmp_path):
    c = Chain(tmp_path, skip_int8=True)
    cmd = [sys.executable, "-c", "print('converter said: boom'); raise SystemExit(3)"]
    with pytest.raises(BuildError) as e:
        c._subprocess("pose_detection:tf2onnx", cmd, tmp_path / "logs" / "x.log")
    msg = str(e.value)
    assert "pose_detection:tf2onnx" in msg and "exit 3" in msg and "converter said: boom" in msg
    assert "raise SystemExit(3)" in msg  # the command


def test_unknown_model_is_rejected(tmp_path):
    with pytest.raises(BuildError, match="unknown model"):
        Chain(tmp_path, only=["no_such_model"])


def test_build_tools_stay_out_of_runtime():
    import importlib.util
    for mod in ("tensorflow", "tf2onnx", "nncf", "ai_edge_quantizer", "onnx"):
        assert importlib.util.find_spec(mod) is None, f"{mod} leaked into the runtime venv ({sys.prefix})"
    assert os.path.realpath(sys.prefix)  # runtime venv in use
