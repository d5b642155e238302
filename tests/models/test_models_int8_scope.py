"""Mixed-precision INT8 (issue 11): the manifest's `[quantization.ignored_scope]` is validated, the chain hands it to
the NNCF step, and a real quantization of the real landmark model keeps exactly the selected layers FP32."""
from __future__ import annotations

import copy
import json
import subprocess
import tomllib

import pytest

from edge.backends import auto
from models import manifest
from models.manifest import ManifestError
from tests.models.nncf_step import run_small


def _lmk() -> dict:
    with open(manifest.MANIFEST_DIR / "pose_landmark_full.toml", "rb") as f:
        return tomllib.load(f)


def _with_scope(scope) -> dict:
    m = copy.deepcopy(_lmk())
    m["quantization"]["ignored_scope"] = scope
    return m


@pytest.mark.parametrize("scope, expect", [
    ({"first_conv": 3}, "quantization.ignored_scope.first_conv: unknown key"),
    ({"first_convs": "three"}, "quantization.ignored_scope.first_convs: expected int"),
    ({"first_convs": -1}, "quantization.ignored_scope.first_convs: must be >= 0"),
    ({"head_convs": ["Identity_9"]}, "head_convs: 'Identity_9' is not an output of the model (outputs: Identity,"),
    ({"branches": ["Identity", "Identity_1"]}, "branches: expected a list of output-name lists"),
    ({"branches": [["Identity"], []]}, "branches: expected a list of output-name lists"),
    ({"branches": [["Identity", "seg"]]}, "branches: 'seg' is not an output of the model"),
    ({"upsampling": "yes"}, "quantization.ignored_scope.upsampling: expected bool"),
    ({"note": "nothing"}, "quantization.ignored_scope: selects nothing"),
    ("first_convs=3", "quantization.ignored_scope: expected a table"),
])
def test_bad_ignored_scope_gives_clear_error(scope, expect):
    with pytest.raises(ManifestError) as e:
        manifest.validate(_with_scope(scope), "bad.toml")
    assert "bad.toml" in str(e.value) and expect in str(e.value)


def test_good_ignored_scope_validates():
    scope = {"first_convs": 10, "head_convs": ["Identity"], "branches": [["Identity", "Identity_1"], ["Identity_2"]],
             "upsampling": False, "note": "why"}
    assert manifest.validate(_with_scope(scope))["quantization"]["ignored_scope"] == scope


def _nncf_step(chain):
    return next(s for s in chain.plan() if s.name == "nncf_int8")


def test_chain_passes_the_scope_to_the_nncf_step(built_cache, monkeypatch):
    """The `int8` step gets the manifest's scope (the note left out) and re-runs when it changes; `int8_full`
    stays full INT8; without a scope the step keeps the first keep_first_convs convs + the heads."""
    from models.build.chain import Chain

    chain = Chain(built_cache, only=["pose_landmark_full"])
    scope = {"first_convs": 2, "head_convs": ["Identity"], "note": "test"}
    chain.all["pose_landmark_full"] = _with_scope(scope)
    step = _nncf_step(chain)
    cmd = step.command()
    assert cmd[cmd.index("--ignored-scope") + 1] == json.dumps({"first_convs": 2, "head_convs": ["Identity"]},
                                                               sort_keys=True)
    assert "--keep-first" not in cmd and any(p.name == "nncf_scope.py" for p in step.code)
    full = next(s for s in chain.plan() if s.name == "nncf_int8_full").command()
    assert full[full.index("--keep-first") + 1] == "0" and "--ignored-scope" not in full
    other = _with_scope({"first_convs": 3})
    chain.all["pose_landmark_full"] = other
    assert _nncf_step(chain).params != step.params  # a changed scope changes the step key
    plain = copy.deepcopy(_lmk())
    plain["quantization"].pop("ignored_scope", None)
    chain.all["pose_landmark_full"] = plain
    cmd = _nncf_step(chain).command()
    assert cmd[cmd.index("--keep-first") + 1] == str(plain["quantization"]["keep_first_convs"])


def test_nncf_step_keeps_exactly_the_scope_fp32(built_cache, tmp_path):
    """A real NNCF quantization of the real FP32 IR (8 calibration crops) with a scope: the first 2 backbone convs
    and the landmark head conv keep float weights and float inputs, every other conv is INT8; a scope naming an
    output the model lacks fails with a message naming it."""
    import openvino as ov

    from models.build.chain import Chain
    from models.build.sensitivity import fp32_ops_in

    chain = Chain(built_cache, only=["pose_landmark_full"])
    chain.all["pose_landmark_full"] = _with_scope({"first_convs": 2, "head_convs": ["Identity"]})
    out, cmd = run_small(_nncf_step(chain).command(), tmp_path)
    fp32 = ov.Core().read_model(cmd[2])
    convs = [op for op in fp32.get_ordered_ops() if op.get_type_name() in ("Convolution", "GroupConvolution")]
    result = next(r for r in fp32.get_results() if "Identity" in r.input_value(0).get_names())
    head = result.input_value(0).get_node()
    while head.get_type_name() not in ("Convolution", "GroupConvolution"):  # Reshape <- Transpose <- Add <- conv
        head = head.input_value(0).get_node()
    got = fp32_ops_in(ov.Core().read_model(str(out)))
    assert got["convs"] == len(convs) == 96
    assert sorted(got["fp32_conv_names"]) == sorted([convs[0].get_friendly_name(), convs[1].get_friendly_name(),
                                                     head.get_friendly_name()])
    info = json.loads((tmp_path / "info.json").read_text())
    assert info["ignored_scope"] == {"first_convs": 2, "head_convs": ["Identity"]} and info["fp32_convs"] == 3
    cmd[cmd.index("--ignored-scope") + 1] = json.dumps({"head_convs": ["Identity_9"]})
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "no output 'Identity_9'" in bad.stdout + bad.stderr


def test_sensitivity_study_runs_small(built_cache, tmp_path):
    """`python -m models.build.sensitivity` end to end on 8 + 8 crops: two configurations quantized, measured with
    the bench's drift metric and the build's IoU, timed against FP32 in one process, written as JSON + a table."""
    import sys

    out = tmp_path / "s.json"
    r = subprocess.run([sys.executable, "-m", "models.build.sensitivity", "--work", str(tmp_path / "w"), "--val", "8",
                        "--calib", "8", "--configs", "all_int8", "fp32_landmark_head", "bf16_f32_regression",
                        "--rounds", "1",
                        "--per-round", "1", "--time-threads", "1", "--json", str(out)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    rep = json.loads(out.read_text())
    got = {c["name"]: c for c in rep["configs"]}
    assert set(got) == {"all_int8", "fp32_landmark_head", "bf16_f32_regression"} and rep["val"]["n"] == 8
    assert got["all_int8"]["fp32_convs"] == 0 and got["fp32_landmark_head"]["fp32_convs"] == 1
    # bf16: the FP32 IR marked as the chain's ov_bf16 step marks it; the regression branch's 27 convs stay f32
    assert got["bf16_f32_regression"]["fp32_convs"] == 27 and got["bf16_f32_regression"]["bf16"]
    bf16_native = auto.bf16_supported(auto.cpu_flags())[0]
    for name, c in got.items():
        moved = "bf16" not in c or bf16_native  # without native bf16 OpenVINO runs it in f32: FP32 itself
        assert (0 < c["drift_torso_mean"] < 1 and 0 < c["drift256_mean"] < 0.2) if moved else \
            c["drift_torso_mean"] == c["drift256_mean"] == 0, name
        assert 0 < c["seg_iou"] <= 1
        assert c["timing"]["1t"]["ms_median"] > 0 and c["timing"]["1t_noseg"]["speedup_vs_fp32"] > 0
    assert "| `all_int8`" in r.stdout
