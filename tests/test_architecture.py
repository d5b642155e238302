"""The layering of docs/ARCHITECTURE.md holds: import contracts (import-linter, [tool.importlinter] in
pyproject.toml) and, at run time, `edge run` loads no build-time package."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BUILD_TIME = ("models.build", "calibration", "devtools")


def test_import_contracts_are_kept(repo):
    lint = Path(sys.executable).with_name("lint-imports")
    r = subprocess.run([str(lint), "--no-cache"], cwd=repo, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "BROKEN" not in r.stdout and " broken." in r.stdout  # the report ran and counted contracts


def test_a_broken_contract_is_reported(repo, tmp_path):
    """The checker is live: a stage importing sync is refused (a copy of the tree with one bad import)."""
    import shutil

    for pkg in ("edge", "sync", "models", "calibration", "devtools"):
        shutil.copytree(repo / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__", "manifests"))
    shutil.copy(repo / "pyproject.toml", tmp_path / "pyproject.toml")
    bad = tmp_path / "edge" / "pose" / "events.py"
    bad.write_text("import sync.outbox  # forbidden: stages never import sync\n" + bad.read_text())
    lint = Path(sys.executable).with_name("lint-imports")
    r = subprocess.run([str(lint), "--no-cache"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                       env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 1, r.stdout[-3000:]
    assert "edge.pose.events -> sync.outbox" in r.stdout


def test_edge_run_loads_no_build_time_package(repo, tmp_path):
    """`edge run` on the kiosk config (backend = "auto" included) imports neither the build chain, nor
    calibration, nor the developer tooling."""
    cfg_text = (repo / "device_configs" / "kiosk.toml").read_text()
    cfg_text = cfg_text.replace('broker = ""', f'broker = ""\noutbox_path = "{tmp_path / "outbox.sqlite"}"')
    cfg = tmp_path / "kiosk.toml"
    cfg.write_text(cfg_text)
    out = tmp_path / "modules.json"
    code = ("import json, sys\nfrom edge.app.cli import main\n"
            f"rc = main(['run', '--config', {str(cfg)!r}, '--max-frames', '30', '--no-http'])\n"
            f"json.dump(sorted(sys.modules), open({str(out)!r}, 'w'))\nsys.exit(rc)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    modules = json.loads(out.read_text())
    assert "edge.pose.pipeline" in modules and "edge.backends.auto" in modules  # it really ran the pipeline
    loaded = [m for m in modules if any(m == b or m.startswith(b + ".") for b in BUILD_TIME)]
    assert loaded == [], f"edge run imported build-time code: {loaded}"
