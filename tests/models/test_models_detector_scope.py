"""Person-detector INT8 (issue 11 item 4): the ignored-scope selectors on the BlazePose SSD detector's real FP32 IR
(two outputs: the box + keypoint regressor `Identity`, the scores `Identity_1`), and the manifest's scope resolves
to real convolutions of it."""
from __future__ import annotations

import json
import subprocess
import textwrap

from models import manifest
from models.build import venvs
from models.build.plan import STEPS_DIR, scope_selectors
from tests.models.nncf_step import run_small

RESOLVE = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])
    import openvino as ov
    import nncf_scope as s
    m = ov.Core().read_model(sys.argv[2])
    g, outs = s.openvino_graph(m)
    scope = json.loads(sys.argv[3])
    print(json.dumps({
        "outputs": sorted(outs.values()),
        "backbone": s.backbone_convs(g, outs),
        "converts_as_convs": [n.node_name for n in g.get_all_nodes() if s.is_conv(n) and "Convert" in n.metatype.__name__],
        "head_regressor": s.head_convs(g, outs, ["Identity"]),
        "head_classifier": s.head_convs(g, outs, ["Identity_1"]),
        "branch_regressor": s.branch_nodes(g, outs, ["Identity"]),
        "manifest": s.resolve(g, outs, scope) if scope else [],
    }))
""")


def _resolve(built_cache, scope: dict, model: str = "pose_detection") -> dict:
    m = manifest.load(manifest.MANIFEST_DIR / f"{model}.toml")
    xml = built_cache / "models" / model / m["version"] / f"{model}_fp32.xml"
    py = str(venvs.ensure(built_cache, "quant"))
    r = subprocess.run([py, "-c", RESOLVE, str(STEPS_DIR), str(xml), json.dumps(scope)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1]) | {"xml": xml}


def test_selectors_on_the_ssd_detector_and_the_manifest_scope(built_cache):
    import openvino as ov

    m = manifest.load(manifest.MANIFEST_DIR / "pose_detection.toml")
    scope = scope_selectors(m["quantization"].get("ignored_scope"))
    got = _resolve(built_cache, scope)
    ops = {op.get_friendly_name(): op.get_type_name() for op in ov.Core().read_model(str(got["xml"])).get_ordered_ops()}
    convs = {n for n, t in ops.items() if t in ("Convolution", "GroupConvolution")}
    assert got["outputs"] == ["Identity", "Identity_1"]
    # the backbone is every conv both outputs depend on: real convolutions only (no Convert op counted as one)
    assert got["converts_as_convs"] == [] and set(got["backbone"]) <= convs and len(got["backbone"]) == 61
    # 3 feature levels (28x28, 14x14, 7x7): one 1x1 regressor and one 1x1 classifier conv each, disjoint
    assert len(got["head_regressor"]) == len(got["head_classifier"]) == 3
    assert set(got["head_regressor"]) <= convs and not set(got["head_regressor"]) & set(got["head_classifier"])
    branch_convs = set(got["branch_regressor"]) & convs  # depthwise + 1x1 per level
    assert len(branch_convs) == 6 and set(got["head_regressor"]) <= branch_convs
    assert not branch_convs & set(got["backbone"])
    if scope:  # the manifest's scope names real ops of this IR, among them the convs it selects
        assert got["manifest"] and set(got["manifest"]) <= set(ops)
        want = set(got["backbone"][:scope.get("first_convs", 0)])
        assert want <= set(got["manifest"])


def test_nanodet_manifest_scope_on_its_ir(built_cache):
    """NanoDet's GFL head writes the class probabilities and the box distributions from one conv per level, so its
    head convs are the same 3 for either output, and the manifest's scope (first 18 convs + heads) names 21 real
    convolutions of the FP32 IR; the build's int8 keeps exactly those FP32."""
    import openvino as ov

    m = manifest.load(manifest.MANIFEST_DIR / "nanodet_m_416.toml")
    scope = scope_selectors(m["quantization"]["ignored_scope"])
    got = _resolve(built_cache, scope, "nanodet_m_416")
    ops = {op.get_friendly_name(): op.get_type_name() for op in ov.Core().read_model(str(got["xml"])).get_ordered_ops()}
    convs = {n for n, t in ops.items() if t in ("Convolution", "GroupConvolution")}
    assert got["outputs"] == ["Identity", "Identity_1"] and len(got["backbone"]) == len(convs) == 34
    assert len(got["head_regressor"]) == 3 and set(got["head_regressor"]) == set(got["head_classifier"])
    want = set(got["backbone"][:18]) | set(got["head_regressor"])
    assert len(want) == 21 and set(got["manifest"]) & convs == want
    info = json.loads((built_cache / "models" / "nanodet_m_416" / m["version"] / "work" /
                       "nanodet_m_416_int8.xml.json").read_text())
    assert info["ignored_scope"] == scope and info["fp32_convs"] == 21, info


def test_score_offset_on_the_real_int8_detector(built_cache):
    """`detector_sensitivity --offsets`: an offset of 0 is the plain comparison; a large one (+3 logits: score
    0.05 -> 0.73) lets background anchors through, finds every FP32 detection and adds empty-scene false positives:
    what an offset costs, and why the gate bounds it."""
    import numpy as np

    from calibration.accuracy import detector_agreement, empty_scenes
    from models.build.detector_sensitivity import TARGETS, score_offset
    from models.build.runners import open_model, run_batch
    from models.build.verify import normalize

    t = TARGETS["pose_detection"]
    m = manifest.load(manifest.MANIFEST_DIR / "pose_detection.toml")
    mdir = built_cache / "models" / "pose_detection" / m["version"]
    val = normalize(t.val_set(built_cache, m, 48), t.norm)
    empty = normalize(empty_scenes(built_cache, "calib", t.metric, t.size, windows=1, shelves=8), t.norm)
    fp32, int8 = open_model(mdir / "pose_detection_fp32.xml", 1), open_model(mdir / "pose_detection_int8.xml", 1)
    with np.errstate(over="ignore"):
        ref, q, ref_e, q_e = run_batch(fp32, val), run_batch(int8, val), run_batch(fp32, empty), run_batch(int8, empty)
    detect = t.detect()
    rows = [score_offset(t, ref, q, ref_e, q_e, o, detect) for o in (0.0, 0.2, 3.0)]
    plain = detector_agreement(ref, q, t.metric, t.size)
    assert plain["n_ref_detections"] > 5
    assert rows[0]["recall"] == plain["recall"] and rows[0]["n_test_detections"] == plain["n_test_detections"]
    assert rows[1]["offset"] == 0.2 and rows[1]["recall"] >= rows[0]["recall"]
    assert rows[2]["n_test_detections"] > rows[0]["n_test_detections"] and rows[2]["recall"] == 1.0
    assert rows[2]["new_false_positives"] > rows[0]["new_false_positives"] and rows[2]["new_max_score"] >= 0.5


def test_nncf_step_adds_the_manifest_output_offset(built_cache, tmp_path):
    """The detector's `int8` step gets the manifest's int8_output_offset (int8_full does not); a real NNCF run with
    it puts an Add of exactly that constant before the score output, which keeps its name, and records it; an offset
    naming an output the model lacks fails with a message naming it."""
    import numpy as np
    import openvino as ov

    from models.build.chain import Chain

    m = manifest.load(manifest.MANIFEST_DIR / "pose_detection.toml")
    offsets = m["quantization"]["int8_output_offset"]
    chain = Chain(built_cache, only=["pose_detection"])
    steps = {s.name: s for s in chain.plan()}
    cmd = steps["nncf_int8"].command()
    assert json.loads(cmd[cmd.index("--output-offset") + 1]) == offsets
    assert "--output-offset" not in steps["nncf_int8_full"].command()
    out, cmd = run_small(cmd, tmp_path)
    q = ov.Core().read_model(str(out))
    by_name = {n: r for r in q.get_results() for n in r.input_value(0).get_names()}
    assert set(by_name) == {"Identity", "Identity_1"}
    add = by_name["Identity_1"].input_value(0).get_node()
    assert add.get_type_name() == "Add" and by_name["Identity"].input_value(0).get_node().get_type_name() != "Add"
    const = next(v.get_node() for v in add.input_values() if v.get_node().get_type_name() == "Constant")
    assert np.allclose(const.get_data(), offsets["Identity_1"])
    assert json.loads((tmp_path / "info.json").read_text())["output_offset"] == offsets
    cmd[cmd.index("--output-offset") + 1] = json.dumps({"Identity_9": 0.2})
    bad = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert bad.returncode == 2 and "no output ['Identity_9']" in bad.stdout + bad.stderr


def test_output_offsets_shift_logits_of_both_detector_kinds(built_cache):
    """add_output_offsets on the real FP32 IRs: BlazePose's score output is a logit (an Add before the Result),
    NanoDet's class output is sigmoid probabilities (an Add in front of each level's Sigmoid): either way the score
    logits move by exactly the offset, the other output not at all, and the outputs keep their names. The built
    OpenVINO `int8` carries an offset where the manifest sets one."""
    import sys

    import numpy as np
    import openvino as ov

    from models.build.plan import STEPS_DIR

    sys.path.insert(0, str(STEPS_DIR))  # the step imports its siblings (_util) as the build runs it
    try:
        from nncf_quantize import add_output_offsets
    finally:
        sys.path.remove(str(STEPS_DIR))

    core = ov.Core()
    logit = lambda p: np.log(np.clip(p, 1e-6, 1 - 1e-6) / (1 - np.clip(p, 1e-6, 1 - 1e-6)))  # noqa: E731
    for name, out, other, is_prob in (("pose_detection", "Identity_1", "Identity", False),
                                      ("nanodet_m_416", "Identity", "Identity_1", True)):
        m = manifest.load(manifest.MANIFEST_DIR / f"{name}.toml")
        d = built_cache / "models" / name / m["version"]
        size = m["inputs"][0]["shape"][1]
        x = np.random.default_rng(0).random((1, size, size, 3), dtype=np.float32)
        base = core.compile_model(core.read_model(str(d / f"{name}_fp32.xml")), "CPU")({0: x})
        shifted_model = core.read_model(str(d / f"{name}_fp32.xml"))
        assert add_output_offsets(shifted_model, {out: 0.25}) == [out]
        got = core.compile_model(shifted_model, "CPU")({0: x})
        assert {n for o in shifted_model.outputs for n in o.get_names()} == {out, other}
        a, b = base[out].astype(np.float64), got[out].astype(np.float64)
        if is_prob:
            sel = (a > 1e-4) & (a < 1 - 1e-4)
            assert sel.sum() > 1000 and np.allclose(logit(b[sel]) - logit(a[sel]), 0.25, atol=1e-3)
        else:
            assert np.allclose(b - a, 0.25, atol=1e-4)
        assert np.array_equal(base[other], got[other])
        # the built `int8` carries an offset exactly when the manifest asks for one (pose_detection: yes, nanodet: no)
        ops = {op.get_friendly_name() for op in core.read_model(str(d / f"{name}_int8.xml")).get_ordered_ops()}
        want = m["quantization"].get("int8_output_offset", {})
        assert list(want) in ([out], []), name
        assert any(n.startswith(f"{out}/int8_") and "offset" in n for n in ops) == bool(want), name
