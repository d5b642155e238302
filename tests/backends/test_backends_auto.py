"""backend = "auto": picks the fastest backend that passes golden parity, caches the choice, rejects failures."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging

import numpy as np
import pytest

from edge.backends import registry
from edge.backends.auto import NoBackendPassed, open_model
from edge.backends.parity import Tolerance, check, tolerance_for
from edge.app.config import ModelRef

DET = "pose_detection"


class ZooView:
    """The real zoo with one thing changed: another file for one backend, or perturbed golden outputs."""

    def __init__(self, zoo, files: dict | None = None, golden_scale: float | None = None):
        self._zoo, self._files, self._scale = zoo, files or {}, golden_scale

    def __getattr__(self, name):
        return getattr(self._zoo, name)

    def artifact(self, name, backend, precision="default"):
        a = self._zoo.artifact(name, backend, precision)
        if backend in self._files:
            p = self._files[backend]
            a = dataclasses.replace(a, path=p, sha256=hashlib.sha256(p.read_bytes()).hexdigest())
        return a

    def check_artifact(self, a):
        """A swapped-in file stands for a runtime that computes garbage from a verified one: not checked."""
        if a.backend not in self._files:
            self._zoo.check_artifact(a)

    def golden(self, name):
        inputs, outputs = self._zoo.golden(name)
        if self._scale is not None:
            outputs = {k: v * self._scale + 0.5 for k, v in outputs.items()}
        return inputs, outputs


def _sign_flipped_weights(src, dst):
    """A copy of a .tflite with the largest weight buffer's signs flipped: loads fine, computes garbage."""
    from ai_edge_litert import schema_py_generated as schema

    data = bytearray(src.read_bytes())
    m = schema.Model.GetRootAs(data, 0)
    best = (0, 0)
    for i in range(m.BuffersLength()):
        b = m.Buffers(i)
        o = b._tab.Offset(4)
        if o and b._tab.VectorLen(o) > best[1]:
            best = (b._tab.Vector(o), b._tab.VectorLen(o))
    start, n = best
    for j in range(start + 1, start + n, 2):  # fp16 little-endian: the high byte holds the sign
        data[j] ^= 0x80
    dst.write_bytes(bytes(data))
    return dst


def test_auto_picks_a_passing_backend_and_caches_it(zoo, tmp_path, caplog):
    cache = tmp_path / "choice.json"
    ref = ModelRef(name=DET, backend="auto", precision="fp32", threads=2)
    with caplog.at_level(logging.INFO, logger="edge.backends.auto"):
        s = open_model(zoo, ref, cache_path=cache)
    assert any("chose" in r.message for r in caplog.records)
    entries = json.loads(cache.read_text())
    assert len(entries) == 1
    (entry,) = entries.values()
    assert entry["backend"] == s.info.backend and entry["precision"] == "fp32"
    assert set(entry["median_ms"]) == {"onnxruntime", "openvino", "tflite"}  # all three installed and passing
    assert entry["median_ms"][entry["backend"]] == min(entry["median_ms"].values())
    assert entry["sha256"] == zoo.artifact(DET, s.info.backend, "fp32").sha256
    inputs, golden = zoo.golden(DET)
    assert check(s, inputs, golden, tolerance_for(zoo.manifest(DET), "fp32"))[0]

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="edge.backends.auto"):
        s2 = open_model(zoo, ref, cache_path=cache)
    assert s2.info.backend == entry["backend"]
    assert any("cached choice" in r.message for r in caplog.records)
    assert json.loads(cache.read_text()) == entries  # reused, not re-benchmarked

    # another thread count is another device setting: new key, new measurement
    open_model(zoo, ref.model_copy(update={"threads": 1}), cache_path=cache)
    assert len(json.loads(cache.read_text())) == 2


def test_auto_rejects_a_backend_that_fails_golden(zoo, tmp_path):
    bad = _sign_flipped_weights(zoo.artifact(DET, "tflite", "fp32").path, tmp_path / "flipped.tflite")
    view = ZooView(zoo, files={"openvino": bad})  # OpenVINO gets a model that loads but computes garbage
    cache = tmp_path / "choice.json"
    s = open_model(view, ModelRef(name=DET, precision="fp32"), cache_path=cache)
    assert s.info.backend in ("onnxruntime", "tflite")
    (entry,) = json.loads(cache.read_text()).values()
    assert "fails golden parity" in entry["reasons"]["openvino"]
    assert "openvino" not in entry["median_ms"]


def test_auto_with_no_passing_backend_lists_why_each_failed(zoo, tmp_path):
    with pytest.raises(NoBackendPassed) as ei:
        open_model(ZooView(zoo, golden_scale=1.01), ModelRef(name=DET, precision="fp32"),
                   cache_path=tmp_path / "c.json")
    msg = str(ei.value)
    assert msg.startswith("auto: no backend passed for model 'pose_detection'")
    for b in ("onnxruntime", "openvino", "tflite"):
        assert f"{b}: fp32 fails golden parity" in msg
    assert not (tmp_path / "c.json").exists()


def test_zero_tolerance_rejects_every_backend_that_differs(zoo, tmp_path):
    """Forced tolerance 0: only a bit-identical backend (the golden's own runtime) could pass."""
    try:
        s = open_model(zoo, ModelRef(name=DET, precision="fp32"), cache_path=tmp_path / "c.json",
                       tolerance=Tolerance(0.0, 0.0))
    except NoBackendPassed as e:
        assert set(e.reasons) == {"onnxruntime", "openvino", "tflite"}
        return
    (entry,) = json.loads((tmp_path / "c.json").read_text()).values()
    for b, why in entry["reasons"].items():
        if b != s.info.backend:
            assert "fails golden parity" in why, (b, why)
    errs = entry["parity"][s.info.backend]
    assert all(e["max"] == 0.0 for e in errs.values())


def test_auto_skips_a_missing_backend_with_its_reason(zoo, tmp_path, monkeypatch):
    monkeypatch.setitem(registry.BACKENDS, "hailo", "edge.backends.hailo_backend:HailoBackend")
    s = open_model(zoo, ModelRef(name=DET, precision="fp32"), cache_path=tmp_path / "c.json")
    assert s.info.backend in ("onnxruntime", "openvino", "tflite")
    (entry,) = json.loads((tmp_path / "c.json").read_text()).values()
    assert "not installed/usable" in entry["reasons"]["hailo"] and "hailo_backend" in entry["reasons"]["hailo"]


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino", "tflite"])
def test_explicit_backend_loads_the_zoo_artifact(zoo, backend):
    ref = ModelRef(name="pose_landmark_full", backend=backend, precision="default", threads=1)
    s = open_model(zoo, ref)
    a = zoo.artifact("pose_landmark_full", backend, "default")
    assert s.info.backend == backend and s.info.path == str(a.path) and s.info.threads == 1
    assert s.info.precision == zoo.default_precision("pose_landmark_full", backend)
    x = zoo.golden("pose_landmark_full")[0]["input_1"][:1]
    out = s.run({"input_1": x})
    assert set(out) == {"Identity", "Identity_1", "Identity_2", "Identity_3", "Identity_4"}
    assert np.isfinite(out["Identity"]).all()


def test_explicit_backend_that_is_missing_is_named(zoo, monkeypatch):
    from edge.backends import BackendError

    monkeypatch.setitem(registry.BACKENDS, "onnxruntime", "edge.backends.no_such_module:Nope")
    with pytest.raises(BackendError, match=r"backend 'onnxruntime' is not usable here"):
        open_model(zoo, ModelRef(name=DET, backend="onnxruntime", precision="fp32"))
