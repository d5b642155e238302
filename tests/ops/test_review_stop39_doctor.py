"""`edge doctor` vouches for the file `edge run` loads (stop 39 review)."""
from __future__ import annotations

import pytest

from edge.app.config import load_config
from edge.app.doctor import check_models
from edge.backends import auto
from edge.backends.auto import bf16_default
from models.zoo import ModelZoo


@pytest.mark.parametrize("flags, want", [({"avx512_bf16"}, "openvino/bf16"), (set(), "openvino/int8")],
                         ids=["bf16-cpu", "no-bf16"])
def test_doctor_checks_the_precision_the_runtime_loads(repo, monkeypatch, flags, want):
    """NanoDet's OpenVINO default is bf16 on a CPU with native bf16 (manifest [bf16]): `edge run` loads that file,
    but the doctor's "needs" line checked the manifest default (int8) and said ok for a file the device does not
    load (a missing bf16 file passed the doctor and failed the start)."""
    zoo = ModelZoo()
    if not bf16_default(zoo.manifest("nanodet_m_416")):
        pytest.fail("nanodet_m_416's manifest no longer makes bf16 its default on bf16 CPUs: update this test")
    monkeypatch.setattr(auto, "cpu_flags", lambda: set(flags))
    cfg = load_config(repo / "device_configs" / "shelf-camera.toml")
    cfg.models.person_detector = cfg.models.pose_detector.model_copy(update={"name": "nanodet_m_416"})
    problems, warnings = [], []
    rep = check_models(cfg, ["openvino"], problems, warnings)
    (need,) = [r for r in rep["required"] if r["name"] == "nanodet_m_416"]
    assert need["status"] == f"ok ({want})", need
