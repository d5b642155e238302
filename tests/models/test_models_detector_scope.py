"""Person-detector INT8 (issue 11 item 4): the ignored-scope selectors on the BlazePose SSD detector's real FP32 IR
(two outputs: the box + keypoint regressor `Identity`, the scores `Identity_1`), and the manifest's scope resolves
to real convolutions of it."""
from __future__ import annotations

import json
import subprocess
import textwrap

from models import manifest
from models.build import venvs
from models.build.plan import STEPS_DIR

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


def _resolve(built_cache, scope: dict) -> dict:
    m = manifest.load(manifest.MANIFEST_DIR / "pose_detection.toml")
    xml = built_cache / "models" / "pose_detection" / m["version"] / "pose_detection_fp32.xml"
    py = str(venvs.ensure(built_cache, "quant"))
    r = subprocess.run([py, "-c", RESOLVE, str(STEPS_DIR), str(xml), json.dumps(scope)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1]) | {"xml": xml}


def test_selectors_on_the_ssd_detector_and_the_manifest_scope(built_cache):
    import openvino as ov

    m = manifest.load(manifest.MANIFEST_DIR / "pose_detection.toml")
    scope = {k: v for k, v in m["quantization"].get("ignored_scope", {}).items() if k != "note"}
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
