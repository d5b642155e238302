"""OpenVINO bf16 (issue 11): the manifest's `[bf16]` table is validated, the chain's ov_bf16 step marks exactly the
regression branch of the real landmark model to stay f32, OpenVINO runs the rest in bf16 where the CPU has native
bf16 (and everything in f32 where it does not), and a device asking for bf16 on a CPU without it gets its default."""
from __future__ import annotations

import copy
import logging
import tomllib

import numpy as np
import pytest

from edge.backends import auto, load_session
from edge.backends.parity import compare, judge, run_batched, tolerance_for
from models import manifest
from models.manifest import ManifestError
from tests.models.test_models_cpu_precision import SAMPLES, _cfg, _rows

NAME = "pose_landmark_full"
REGRESSION = {"Identity", "Identity_1", "Identity_4"}  # the outputs of the branch [bf16] fp32_scope keeps f32
NATIVE = auto.bf16_supported(auto.cpu_flags())[0]


def _lmk() -> dict:
    with open(manifest.MANIFEST_DIR / f"{NAME}.toml", "rb") as f:
        return tomllib.load(f)


def _without_bf16_artefact(m: dict) -> dict:
    m["artifacts"] = [a for a in m["artifacts"] if a["precision"] != "bf16"]
    return m


@pytest.mark.parametrize("edit, expect", [
    (lambda m: m.pop("bf16"), "bf16: required by the bf16 artefact"),
    (_without_bf16_artefact, "bf16: no artefact uses it"),
    (lambda m: next(a for a in m["artifacts"] if a["precision"] == "bf16").update(backend="onnxruntime",
                                                                                  format="onnx",
                                                                                  file="x_bf16.onnx"),
     "bf16 artefacts are made by producer 'ov_bf16' for backend 'openvino'"),
    (lambda m: m["bf16"].update(fp32_scope={"branches": [["Identity", "seg"]]}),
     "bf16.fp32_scope.branches: 'seg' is not an output of the model"),
    (lambda m: m["bf16"].update(fp32_scope={"note": "x"}), "bf16.fp32_scope: selects nothing"),
    (lambda m: m["bf16"].update(keep=1), "bf16.keep: unknown key"),
])
def test_bad_bf16_table_gives_clear_error(edit, expect):
    m = copy.deepcopy(_lmk())
    edit(m)
    with pytest.raises(ManifestError, match=expect.replace("(", r"\(").replace(")", r"\)")):
        manifest.validate(m, "pose_landmark_full.toml")


def _feeds_only(model, outputs: set[str]) -> set[str]:
    """Friendly names of the compute ops of an ov.Model whose every path ends at one of `outputs` (and at least
    one does): the branch computing just them, found here independently of the build's nncf_scope."""
    reach: dict[str, set[str]] = {}
    for op in reversed(model.get_ordered_ops()):
        if op.get_type_name() == "Result":
            names = op.input_value(0).get_names() | op.output(0).get_names()
            reach[op.get_friendly_name()] = {n for n in names if n.startswith("Identity")}
            continue
        s: set[str] = set()
        for out in op.outputs():
            for t in out.get_target_inputs():
                s |= reach.get(t.get_node().get_friendly_name(), set())
        reach[op.get_friendly_name()] = s
    return {op.get_friendly_name() for op in model.get_ordered_ops()
            if op.get_type_name() not in ("Constant", "Parameter", "Result")
            and reach[op.get_friendly_name()] and reach[op.get_friendly_name()] <= outputs}


def test_bf16_artefact_marks_exactly_the_regression_branch(zoo):
    import openvino as ov

    bf16, fp32 = zoo.artifact(NAME, "openvino", "bf16"), zoo.artifact(NAME, "openvino", "fp32")
    core = ov.Core()
    model = core.read_model(str(bf16.path))
    marked = {op.get_friendly_name() for op in model.get_ordered_ops()
              if any(k.startswith(("precise", "DisablePrecisionConversion")) for k in op.get_rt_info().keys())}
    want = _feeds_only(core.read_model(str(fp32.path)), REGRESSION)
    assert len(want) > 50 and marked == want
    convs = [op for op in model.get_ordered_ops() if op.get_type_name() in ("Convolution", "GroupConvolution")]
    assert len(convs) == 96 and sum(op.get_friendly_name() in marked for op in convs) == 27
    # same weights as the FP32 IR: only the XML differs
    assert bf16.path.with_suffix(".bin").read_bytes() == fp32.path.with_suffix(".bin").read_bytes()


def test_bf16_runs_in_bf16_where_the_cpu_has_it(zoo):
    """On a CPU with native bf16 the compiled model runs 69 convolutions in bf16 and the 27 marked ones in f32,
    within the manifest's bf16 tolerance of golden; without it OpenVINO runs all in f32 (FP32's outputs). An
    explicit `inference_precision = "f32"` option always wins."""
    ins, gold = zoo.golden(NAME)
    art = zoo.artifact(NAME, "openvino", "bf16")
    s = load_session("openvino", art.path, threads=1, precision="bf16")
    ref = run_batched(load_session("openvino", zoo.artifact(NAME, "openvino", "fp32").path, threads=1), ins)
    out = run_batched(s, ins)
    rt = s._compiled.get_runtime_model()
    conv_prec = [op.get_rt_info()["runtimePrecision"].astype(str) for op in rt.get_ordered_ops()
                 if op.get_rt_info()["layerType"].astype(str) == "Convolution"]
    diff = max(float(np.abs(out[k] - ref[k]).max() / max(1.0, np.abs(ref[k]).max())) for k in ref)
    if NATIVE:
        assert s.info.extra["compiled"]["INFERENCE_PRECISION_HINT"] in ("bf16", "bfloat16")
        assert conv_prec.count("bf16") == 69 and conv_prec.count("f32") == 27
        assert diff > 1e-3  # really bf16
        ok, errs, why = judge(compare(out, gold), tolerance_for(zoo.manifest(NAME), "bf16"))
        assert ok, why
    else:
        assert set(conv_prec) == {"f32"} and diff < 1e-4
    f32 = load_session("openvino", art.path, threads=1, precision="bf16", options={"inference_precision": "f32"})
    forced = run_batched(f32, ins)
    assert max(float(np.abs(forced[k] - ref[k]).max()) for k in ref) < 1e-3


def test_bf16_is_not_used_without_native_bf16(zoo, monkeypatch, caplog):
    from edge.app.config import ModelRef

    real = auto.cpu_flags
    ref = ModelRef(name=NAME, backend="openvino", precision="bf16", threads=1)
    monkeypatch.setattr(auto, "cpu_flags", lambda cpuinfo=None: real(SAMPLES["amx"]))
    s = auto.open_model(zoo, ref)
    assert s.info.path.endswith("pose_landmark_full_bf16.xml") and s.info.precision == "bf16"
    monkeypatch.setattr(auto, "cpu_flags", lambda cpuinfo=None: real(SAMPLES["avx512_vnni"]))
    with caplog.at_level(logging.WARNING, logger="edge.backends.auto"):
        s = auto.open_model(zoo, ref)
    assert s.info.path.endswith("pose_landmark_full_fp32.xml") and s.info.precision == "fp32"
    assert "bf16 not used on this CPU" in caplog.text and "no native bf16" in caplog.text


@pytest.mark.parametrize("cls", ["amx", "avx512_vnni"])
def test_doctor_says_which_cpus_get_bf16(zoo, tmp_path, cls):
    from edge.app.config import load_config
    from edge.app.doctor import check_cpu, check_precisions

    cpu = check_cpu(SAMPLES[cls])
    assert cpu["bf16"]["used"] == (cls == "amx")
    cfg = load_config(_cfg(tmp_path, {"name": NAME, "backend": "openvino", "precision": "bf16"}))
    rows = _rows(check_precisions(cfg, ["onnxruntime", "openvino", "tflite"], cpu), NAME)
    if cls == "amx":
        assert rows["openvino"]["precision"] == "bf16" and rows["openvino"]["built"]
        assert "native bf16 (avx512_bf16, amx_bf16)" in rows["openvino"]["why"]
        assert rows["*bf16"]["precision"] == "bf16"
    else:
        assert rows["openvino"]["precision"] == "fp32"
        assert rows["openvino"]["why"].startswith("bf16 asked for, fp32 used: no native bf16")
        assert rows["*bf16"]["precision"] is None


def test_bf16_default_needs_a_reason():
    m = copy.deepcopy(_lmk())
    m["bf16"]["default_on_bf16_cpus"] = True
    with pytest.raises(ManifestError, match="bf16.reason: required with default_on_bf16_cpus"):
        manifest.validate(m, "pose_landmark_full.toml")


def test_default_is_bf16_only_where_the_manifest_and_the_cpu_say_so(zoo):
    """nanodet_m_416 ([bf16] default_on_bf16_cpus: its detector gate holds) gets bf16 on OpenVINO on an AMX CPU and
    its INT8 default on a VNNI CPU without bf16; the landmark model (loop gate not met) keeps FP32 on both."""
    amx, vnni = auto.cpu_flags(SAMPLES["amx"]), auto.cpu_flags(SAMPLES["avx512_vnni"])
    assert auto._precision(zoo, "nanodet_m_416", "openvino", "default", flags=amx) == "bf16"
    assert auto._precision(zoo, "nanodet_m_416", "openvino", "default", flags=vnni) == "int8"
    assert auto._precision(zoo, "nanodet_m_416", "onnxruntime", "default", flags=amx) == "fp32"  # no bf16 there
    for flags in (amx, vnni):
        assert auto._precision(zoo, NAME, "openvino", "default", flags=flags) == "fp32"
    assert auto.bf16_default(zoo.manifest("nanodet_m_416")) and not auto.bf16_default(zoo.manifest(NAME))


@pytest.mark.parametrize("cls", ["amx", "avx512_vnni"])
def test_doctor_gives_the_people_detector_bf16_on_bf16_cpus(zoo, tmp_path, cls):
    from edge.app.config import load_config
    from edge.app.doctor import check_cpu, check_precisions

    p = tmp_path / "shelf.toml"
    p.write_text('[device]\nid = "shelf-01"\nstore = "s001"\nkind = "shelf-camera"\n[tryon]\nenabled = false\n'
                 '[models.person_detector]\nname = "nanodet_m_416"\nbackend = "openvino"\n')
    cfg = load_config(p)
    rows = _rows(check_precisions(cfg, ["onnxruntime", "openvino", "tflite"], check_cpu(SAMPLES[cls])),
                 "nanodet_m_416")
    if cls == "amx":
        assert rows["openvino"]["precision"] == "bf16" and rows["openvino"]["built"]
        assert rows["openvino"]["why"].startswith("manifest default on CPUs with native bf16: bf16 holds the")
    else:
        assert rows["openvino"]["precision"] == "int8"
        assert rows["openvino"]["why"].startswith("manifest default: INT8 holds the issue-11 gate")
