"""`calibration.camera_cli`: a bad size or an unwritable --out is one error line and exit 1 (no traceback, no file);
--out never replaces a device config; the output always loads as the runtime's [tryon.camera]."""
from __future__ import annotations

import logging
import shutil
import tomllib
from pathlib import Path

import pytest

from calibration.camera_cli import main

REPO = Path(__file__).resolve().parents[2]
FOV = ["fov", "--width", "1280", "--height", "720", "--hfov", "70"]


def _errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("args, says", [
    (["fov", "--width", "0", "--height", "720", "--hfov", "70"], "image size 0x720 must be positive"),
    (["fov", "--width", "-1280", "--height", "720", "--hfov", "70"], "image size -1280x720 must be positive"),
    (["fov", "--width", "100000", "--height", "720", "--hfov", "70"], "not a valid [tryon.camera] section (width"),
])
def test_bad_size_is_one_error_line(tmp_path, caplog, args, says):
    out = tmp_path / "camera.toml"
    with caplog.at_level(logging.INFO):
        rc = main(args + ["--out", str(out)])
    assert rc == 1
    errors = _errors(caplog)
    assert len(errors) == 1 and says in errors[0], errors
    assert not out.exists()


@pytest.mark.parametrize("where", ["missing/camera.toml", "."])
def test_unwritable_out_is_one_error_line(tmp_path, caplog, where):
    out = tmp_path / where
    assert main(FOV + ["--out", str(out)]) == 1
    errors = _errors(caplog)
    assert len(errors) == 1 and errors[0].startswith(f"cannot write {out}: "), errors
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no temporary left behind


def test_out_does_not_replace_a_device_config(tmp_path, caplog):
    cfg = tmp_path / "tryon-mirror.toml"
    shutil.copy(REPO / "device_configs" / "tryon-mirror.toml", cfg)
    before = cfg.read_bytes()
    assert main(FOV + ["--out", str(cfg)]) == 1
    assert cfg.read_bytes() == before
    errors = _errors(caplog)
    assert len(errors) == 1 and "not overwritten" in errors[0] and "paste its [tryon.camera]" in errors[0], errors


def test_out_replaces_an_earlier_snippet(tmp_path):
    out = tmp_path / "camera.toml"
    assert main(FOV + ["--out", str(out)]) == 0
    assert main(["fov", "--width", "1280", "--height", "720", "--hfov", "90", "--out", str(out)]) == 0
    cam = tomllib.loads(out.read_text())["tryon"]["camera"]
    assert cam["fx"] == pytest.approx(640.0, abs=0.01)  # tan(45 deg) = 1: the second run's result
    assert sorted(p.name for p in tmp_path.iterdir()) == ["camera.toml"]
