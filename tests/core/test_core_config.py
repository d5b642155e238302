"""Device config validation: valid files pass, invalid ones name file, key and fix."""
from __future__ import annotations

import subprocess
import sys

import pytest

from edge.app.config import ConfigError, load_config, parse_config

DEVICE = {"id": "d1", "store": "s1", "kind": "kiosk"}


def edge(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edge.app.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_shipped_device_configs_are_valid(repo):
    files = sorted((repo / "device_configs").glob("*.toml"))
    names = {f.stem for f in files}
    assert {"tryon-mirror", "kiosk", "shelf-camera"} <= names
    r = edge("config", "check", *map(str, files))
    assert r.returncode == 0, r.stderr
    for f in files:
        assert f"{f}: ok" in r.stdout
        assert load_config(f).device.kind == f.stem


def test_unknown_key_is_an_error_with_a_suggestion(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('[device]\nid = "d1"\nstore = "s1"\nkind = "kiosk"\n[pose]\nmax_peeple = 3\n')
    r = edge("config", "check", str(p))
    assert r.returncode == 1
    assert f"{p}: pose.max_peeple: Extra inputs are not permitted" in r.stderr
    assert "rename it to 'max_people'" in r.stderr


def test_bad_value_names_key_and_allowed_values(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text('[device]\nid = "d1"\nstore = "s1"\nkind = "kiosk"\n'
                 '[models.pose_landmarks]\nname = "pose_landmark_full"\nbackend = "tensorrt"\n')
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}: models.pose_landmarks.backend:")
    assert "'onnxruntime', 'openvino', 'tflite' or 'auto'" in msg


def test_missing_section_and_syntax_error_and_missing_file(tmp_path):
    p = tmp_path / "nodevice.toml"
    p.write_text("[source]\ntype = 'demo'\n")
    with pytest.raises(ConfigError, match=r"device: Field required \(fix: add a \[device\] table with id, store, kind\)"):
        load_config(p)
    q = tmp_path / "syntax.toml"
    q.write_text("[device\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(q)
    with pytest.raises(ConfigError, match="cannot read file"):
        load_config(tmp_path / "absent.toml")


def test_every_problem_is_reported_and_good_files_still_pass(tmp_path, repo):
    bad = tmp_path / "two.toml"
    bad.write_text('[device]\nid = "has space"\nstore = "s1"\nkind = "toaster"\n')
    r = edge("config", "check", str(bad), str(repo / "device_configs" / "kiosk.toml"))
    assert r.returncode == 1
    assert "device.id" in r.stderr and "device.kind" in r.stderr
    assert "kiosk.toml: ok" in r.stdout


def test_ranges_are_enforced():
    with pytest.raises(ConfigError, match="source.fps"):
        parse_config({"device": DEVICE, "source": {"fps": 0}})
    with pytest.raises(ConfigError, match="http.port"):
        parse_config({"device": DEVICE, "http": {"port": 70000}})
    cfg = parse_config({"device": DEVICE})
    assert cfg.sync.broker == "" and cfg.source.type == "demo"


def test_device_data_shares_one_root(tmp_path, monkeypatch):
    """$STOREFRONT_EDGE_DATA moves the outbox (and the decision log beside it) with the shelf references."""
    from edge.analytics.config import PlanogramConfig
    from edge.analytics.facings import reference_dir_of
    from edge.app.operations import decision_log_dir
    from edge.app.config import parse_config

    monkeypatch.setenv("STOREFRONT_EDGE_DATA", str(tmp_path / "data"))
    cfg = parse_config({"device": {"id": "d1", "store": "s1", "kind": "shelf-camera"}})
    assert cfg.sync.resolved_outbox_path("d1") == tmp_path / "data" / "outbox-d1.sqlite"
    assert decision_log_dir(cfg) == tmp_path / "data" / "decisions-d1"
    assert reference_dir_of(PlanogramConfig(camera="aisle-1")) == tmp_path / "data" / "shelf" / "aisle-1"
