"""`edge doctor` on devices that cannot run: what it must report (the real CLI, backends and model cache)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

HEAD = '[device]\nid = "d1"\nstore = "s1"\nkind = "shelf-camera"\n'


def doctor(tmp_path, config_text: str, *args: str, cache=None) -> tuple[subprocess.CompletedProcess, dict | None]:
    """Run `edge doctor --config` on config_text with an empty (or the given) model cache; (result, JSON report)."""
    cfg = tmp_path / "dev.toml"
    cfg.write_text(HEAD + config_text)
    report = tmp_path / "report.json"
    env = dict(os.environ, STOREFRONT_EDGE_CACHE=str(cache or tmp_path / "cache"))
    r = subprocess.run([sys.executable, "-m", "edge.app.cli", "doctor", "--config", str(cfg), "--egl-timeout",
                        "0.001", "--json", str(report), *args], capture_output=True, text=True, env=env, timeout=180)
    return r, json.loads(report.read_text()) if report.is_file() else None


# pose off, no analytics: with an empty cache nothing is required, so the device is otherwise ready
QUIET = '[pose]\nenabled = false\n[sync]\noutbox_path = "{out}"\n'


def test_unbuilt_person_detector_is_a_problem_and_unused_hand_models_are_not_listed(tmp_path):
    r, rep = doctor(tmp_path, QUIET.format(out=tmp_path / "data" / "ob.sqlite")
                    + '[models.person_detector]\nname = "nanodet_m_416"\n'
                    '[[analytics.zones]]\nname = "a"\npolygon = [[0, 0], [100, 0], [100, 100]]\n')
    assert r.returncode == 1, r.stdout + r.stderr
    assert "PROBLEM: model nanodet_m_416 has no verified artefact" in r.stdout
    required = {x["name"]: x["required"] for x in rep["models"]["required"]}
    assert required["nanodet_m_416"] is True and required["pose_detection"] is False
    assert "palm_detection_lite" not in required and "hand_landmark_lite" not in required  # no gestures here


def test_missing_camera_and_video_file_are_problems(tmp_path):
    r, rep = doctor(tmp_path, QUIET.format(out=tmp_path / "data" / "ob.sqlite")
                    + f'[source]\ntype = "camera"\nuri = "{tmp_path / "video9"}"\n'
                    '[models.person_detector]\nname = "nanodet_m_416"\n'
                    f'[[cameras]]\nid = "c1"\n[cameras.source]\ntype = "video"\nuri = "{tmp_path / "none.mp4"}"\n')
    assert r.returncode == 1
    assert f"PROBLEM: source: camera {tmp_path / 'video9'} not found (fix:" in r.stdout
    assert f"PROBLEM: cameras.0.source: video file {tmp_path / 'none.mp4'} not found (fix:" in r.stdout
    assert [x["ok"] for x in rep["sources"]] == [False, False]


def test_unwritable_outbox_folder_is_a_problem(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    r, rep = doctor(tmp_path, QUIET.format(out=blocker / "ob.sqlite"))
    assert r.returncode == 1, r.stdout
    assert f"PROBLEM: outbox {blocker / 'ob.sqlite'}: {blocker} is not a folder" in r.stdout
    assert f"warning: decision log {blocker / 'decisions-d1'}: {blocker} is not a folder" in r.stdout


def test_ready_device_passes_the_new_checks(tmp_path):
    (tmp_path / "frames").mkdir()
    r, rep = doctor(tmp_path, QUIET.format(out=tmp_path / "data" / "ob.sqlite")
                    + f'[source]\ntype = "images"\nuri = "{tmp_path / "frames"}"\n')
    assert r.returncode == 0, r.stdout
    assert rep["sources"][0]["ok"] and rep["storage"]["outbox"]["problem"] is None
    assert "healthy: ready to run" in r.stdout


def test_damaged_build_record_is_reported_as_damaged_not_as_not_built(tmp_path):
    from models.zoo import ModelZoo

    cache = tmp_path / "cache"
    built = ModelZoo(cache).model_dir("pose_detection") / "built.json"
    built.parent.mkdir(parents=True)
    built.write_text("{broken")
    r, rep = doctor(tmp_path, QUIET.format(out=tmp_path / "data" / "ob.sqlite"), cache=cache)
    assert r.returncode == 1, r.stdout
    assert "is damaged" in rep["models"]["signatures"]["pose_detection"]
    assert f"PROBLEM: model 'pose_detection': {built} is damaged" in r.stdout
    assert r.stderr.count(f"{built} is damaged") <= 1, r.stderr  # the zoo's warning, once (not per lookup)


def test_unwritable_json_path_is_an_error_not_a_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "edge.app.cli", "doctor", "--egl-timeout", "0.001", "--json",
                        str(tmp_path / "no" / "such" / "r.json")], capture_output=True, text=True, timeout=180,
                       env=dict(os.environ, STOREFRONT_EDGE_CACHE=str(tmp_path / "cache")))
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    assert f"--json {tmp_path / 'no' / 'such' / 'r.json'}: cannot write the report" in r.stderr


def test_analytics_that_would_see_nobody_are_a_warning(tmp_path):
    zone = '[[analytics.zones]]\nname = "a"\npolygon = [[0, 0], [100, 0], [100, 100]]\n'
    r, rep = doctor(tmp_path, QUIET.format(out=tmp_path / "data" / "ob.sqlite") + zone)
    assert r.returncode == 0, r.stdout  # it runs; it just cannot see anyone
    assert ("warning: analytics: [[analytics.zones]] will see nobody: [pose] is off and [models.person_detector] is "
            "not set (fix:") in r.stdout
    facings_only = ('[[analytics.planogram.facings]]\nid = "A1"\nsku = "1"\n'
                    'polygon = [[0, 0], [100, 0], [100, 100], [0, 100]]\n')
    r, rep = doctor(tmp_path, QUIET.format(out=tmp_path / "data" / "ob.sqlite") + facings_only)
    assert "will see nobody" not in r.stdout  # shelf facings need no people
