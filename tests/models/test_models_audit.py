"""`edge models audit`: end to end on a small fixed set (real models, real MediaPipe reference), the flagging rule on
hand-made numbers, the card section, and the default-precision gate of `edge models build`."""
from __future__ import annotations

import copy
import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from calibration import audit as ca
from models.build import audit as ma
from models.build.report import KEEP_MARK
from models.manifest import load_all

REPO = Path(__file__).resolve().parents[2]
PEOPLE = ("grace_hopper/0", "astronaut/0", "t1/2")


# ------------------------------------------------------------------------------------------- end to end (slow-ish)

@pytest.fixture(scope="module")
def small_run(zoo, tmp_path_factory):
    """The audit CLI on 3 people of 3 photos + 2 synthetic renders, as shot and under a colour cast, on
    onnxruntime FP32 and INT8: the real zoo, the real pose pipeline, the real MediaPipe reference."""
    from edge.app.cli import main

    d = tmp_path_factory.mktemp("audit")
    real = tomllib.loads(ca.TABLE.read_text())
    lines = ["[settings]", "factor = 1.5", "min_n = 1", "", "[synthetic]", "monk = [2, 9]", "girth = [1.0]",
             'shirt = ["dark"]', ""]
    for p in real["people"]:
        if p["id"] in PEOPLE:
            lines.append("[[people]]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in p.items()]
    (d / "table.toml").write_text("\n".join(lines) + "\n")
    cards = d / "cards"
    cards.mkdir()
    card = (REPO / "models" / "cards" / "pose_landmark_full.md").read_text()
    if ma.BEGIN in card:  # the committed audit section: the test writes its own
        card = card[:card.index(ma.BEGIN)] + card[card.index(ma.END) + len(ma.END):]
    (cards / "pose_landmark_full.md").write_text(card)
    rc = main(["models", "audit", "--only", "pose_landmark_full", "--table", str(d / "table.toml"),
               "--variants", "original", "colour_cast", "--backends", "onnxruntime", "--precisions", "fp32", "int8",
               "--json", str(d / "audit.json"), "--cards-dir", str(cards), "--reports-dir", str(d / "reports")])
    assert rc == 0
    return d, card, json.loads((d / "audit.json").read_text())


def test_audit_measures_every_config_per_group(small_run):
    _, _, r = small_run
    assert r["complete"] is False  # a subset: can never clear a default
    assert r["reference"]["versions"]["mediapipe"] == "0.10.21"
    assert len(r["data"]["samples"]) == (3 + 2) * 2
    photos_found, photos_total = r["reference"]["found"]["photos"]
    assert photos_total == 6 and photos_found >= 4, r["reference"]["found"]
    configs = {(c["backend"], c["precision"]): c for c in r["models"]["pose_landmark_full"]["configs"]}
    assert set(configs) == {("onnxruntime", "fp32"), ("onnxruntime", "int8")}
    fp32, int8 = configs["onnxruntime", "fp32"], configs["onnxruntime", "int8"]
    assert fp32["default"] and not int8["default"]
    # FP32 is the reference network: it finds every person the reference finds, at a few thousandths of a torso
    assert fp32["overall"]["photos"]["n"] == photos_found
    assert fp32["overall"]["photos"]["recall"] == 1.0
    assert fp32["overall"]["photos"]["drift_mean"] < 0.03
    # post-training INT8 moves the landmarks measurably more (the audit can tell the two apart)
    assert int8["overall"]["photos"]["drift_mean"] > 2 * fp32["overall"]["photos"]["drift_mean"]
    for c in configs.values():
        for g in c["groups"]:
            assert {"source", "dimension", "value", "n", "drift_mean", "recall", "flagged"} <= set(g)
        got = {(g["source"], g["dimension"], g["value"]) for g in c["groups"]}
        assert ("photos", "lighting", "colour cast") in got and ("photos", "lighting", "as shot") in got
        assert ("photos", "distance", "near") in got
        if r["reference"]["found"]["synthetic"][0]:
            assert {("synthetic", "skin_tone", v) for v in ("light", "dark")} & got
    # the synthetic renders have exact landmarks: the reference itself is scored against them
    vt = r["reference_vs_truth"]
    assert vt["overall"]["synthetic"]["n"] == 4
    assert vt["overall"]["synthetic"]["found"] == r["reference"]["found"]["synthetic"][0]


def test_audit_writes_the_card_section_and_keeps_the_rest(small_run):
    d, before, r = small_run
    after = (d / "cards" / "pose_landmark_full.md").read_text()
    head, tail = before.split(KEEP_MARK, 1)
    assert after.startswith(head + KEEP_MARK)  # the generated card is untouched
    assert after.count("## Audit (`edge models audit`)") == 1
    assert after.index(KEEP_MARK) < after.index(ma.BEGIN) < after.index(ma.END)
    rest = after.replace(after[after.index(ma.BEGIN):after.index(ma.END) + len(ma.END)], "")
    for line in tail.splitlines():  # every hand-written line below the marker is still there
        assert line in rest
    assert "onnxruntime int8" in after and "Limits of this data set" in after and "(partial audit)" in after
    # a second write replaces the section instead of adding one
    ma.write_card_section(d / "cards" / "pose_landmark_full.md", ma.card_section(r, "pose_landmark_full"))
    again = (d / "cards" / "pose_landmark_full.md").read_text()
    assert again.count(ma.BEGIN) == 1 and again == after
    rep = json.loads((d / "reports" / "pose_landmark_full.audit.json").read_text())
    assert rep["model"] == "pose_landmark_full" and rep["complete"] is False and len(rep["configs"]) == 2


def test_card_section_goes_into_a_new_card(tmp_path, small_run):
    _, _, r = small_run
    card = tmp_path / "new.md"
    ma.write_card_section(card, ma.card_section(r, "pose_landmark_full"))
    text = card.read_text()
    assert text.startswith(KEEP_MARK) and text.count(ma.BEGIN) == 1


# ------------------------------------------------------------------------------------------ flags on given numbers

ST = ca.AuditSettings(factor=1.5, min_n=3, min_drift_excess=0.01, min_miss_excess=0.1)


def _g(n, found, drift):
    return ca.GroupStat("photos", "skin_tone", "x", n, found, drift)


@pytest.mark.parametrize("group, overall, flagged", [
    (_g(10, 10, 0.050), _g(100, 100, 0.030), True),    # 1.67x the mean and 0.02 above it
    (_g(10, 10, 0.040), _g(100, 100, 0.030), False),   # 1.33x: under the factor
    (_g(10, 10, 0.012), _g(100, 100, 0.004), False),   # 3x, but only 0.008 above: below the noise floor
    (_g(2, 2, 0.200), _g(100, 100, 0.030), False),     # too few samples to flag
    (_g(10, 6, 0.030), _g(100, 90, 0.030), True),      # miss rate 0.4 vs 0.1
    (_g(10, 9, 0.030), _g(100, 95, 0.030), False),     # miss 0.10 vs 0.05: 2x, but only 0.05 more
    (_g(10, 8, 0.030), _g(100, 100, 0.030), True),     # misses where the overall set has none
    (_g(10, 0, None), _g(100, 90, 0.030), True),       # found nobody
])
def test_flag_rule(group, overall, flagged):
    assert bool(ca.flag_reasons(group, overall, ST)) is flagged


def test_flag_factor_is_configurable():
    g, o = _g(10, 10, 0.050), _g(100, 100, 0.030)
    assert ca.flag_reasons(g, o, ST) == ["drift 0.0500 > 1.5 x overall 0.0300"]
    assert ca.flag_reasons(g, o, ST.model_copy(update={"factor": 2.0})) == []


def _sample(source, skin, variant="original"):
    attrs = {"skin_tone": skin, "body_size": "average", "clothing": "dark", "distance": "near",
             "lighting": "as shot", "occlusion": "none"}
    return ca.Sample("s", source, variant, np.zeros((4, 4, 3), np.uint8), np.zeros(4), np.zeros(2),
                     np.zeros((0, 2)), attrs)


def test_groups_compare_within_their_source():
    """Dark-skinned synthetic renders are compared with the synthetic mean, never with the photos."""
    samples = [_sample("photos", "light") for _ in range(6)] + [_sample("synthetic", "dark") for _ in range(3)] \
        + [_sample("synthetic", "light") for _ in range(3)] + [_sample("photos", "light")]
    outcomes = [ca.Outcome(True, 0.01)] * 6 + [ca.Outcome(True, 0.09)] * 3 + [ca.Outcome(True, 0.02)] * 3 + [None]
    r = ca.group_stats(samples, outcomes, ST)
    assert r["overall"]["photos"]["n"] == 6 and r["reference_missed"] == {"photos": 1, "synthetic": 0}
    assert r["overall"]["synthetic"]["drift_mean"] == pytest.approx(0.055)
    by = {(g["source"], g["value"]): g for g in r["groups"] if g["dimension"] == "skin_tone"}
    assert by["synthetic", "dark"]["flagged"] and not by["synthetic", "light"]["flagged"]
    assert not by["photos", "light"]["flagged"]


def test_people_table_is_valid_and_errors_name_file_key_and_fix(tmp_path):
    t = ca.load_table()
    assert len(t.people) >= 10 and {p.photo for p in t.people} == {"bus", "zidane", "t1", "grace_hopper",
                                                                      "astronaut", "camera"}
    assert t.settings.factor == 1.5
    bad = tmp_path / "t.toml"
    bad.write_text('[[people]]\nid = "x"\nphoto = "bus"\nbox = [0, 0, 10, 10]\nshoulders = [5, 5]\n'
                   'skin_tone = "olive"\nbody_size = "slim"\nclothing = "dark"\nframing = "portrait"\n'
                   'occlusion = "none"\nheight_cm = 180\n')
    with pytest.raises(ca.AuditTableError) as e:
        ca.load_table(bad)
    msg = str(e.value)
    assert str(bad) in msg and "people[0].skin_tone" in msg and "people[0].height_cm" in msg and "fix:" in msg


def test_variants_keep_the_annotation_on_the_person():
    t = ca.load_table()
    base = ca.build_samples(t, variants=("original", "far", "bar"), people={"astronaut/0"})
    orig, far, bar = base
    assert far.image.shape[:2] == (480, 640)
    h = far.box[3] - far.box[1]
    assert h == pytest.approx(t.settings.far_height * 480, rel=0.02)
    # the shoulder point moved with the image: same place relative to the box
    rel = lambda s: (s.shoulders - s.box[:2]) / (s.box[2:] - s.box[:2])  # noqa: E731
    assert np.allclose(rel(orig), rel(far), atol=0.01)
    ya = int(bar.box[1] + 0.55 * (bar.box[3] - bar.box[1]))
    assert (bar.image[ya, int(bar.box[0]) + 5] == (60, 75, 95)).all()
    assert not (orig.image[ya, int(orig.box[0]) + 5] == (60, 75, 95)).all()


# ------------------------------------------------------------------------------------------------------------ gate

def _report(d: Path, *, precision="int8", flagged=False, complete=True, version=None, sha="abc"):
    m = load_all()["pose_landmark_full"]
    g = {"source": "photos", "dimension": "distance", "value": "far", "n": 8, "drift_mean": 0.14, "recall": 0.62,
         "flagged": flagged, "reasons": ["recall 0.62 vs overall 0.92 (miss rate > 1.5 x overall)"] if flagged else []}
    rep = {"model": "pose_landmark_full", "version": version or m["version"], "complete": complete,
           "date": "2026-11-29", "command": "edge models audit",
           "configs": [{"backend": "openvino", "precision": precision, "file": "x.xml", "sha256": sha,
                        "groups": [g]}]}
    d.mkdir(parents=True, exist_ok=True)
    (d / "pose_landmark_full.audit.json").write_text(json.dumps(rep))


def _manifests(openvino_default: str) -> dict:
    m = copy.deepcopy(load_all()["pose_landmark_full"])
    m["defaults"]["openvino"]["precision"] = openvino_default
    return {"pose_landmark_full": m}


def test_gate_refuses_a_default_whose_audit_flags_a_group(tmp_path):
    _report(tmp_path, flagged=True)
    [err] = ma.default_problems(_manifests("int8"), tmp_path)
    assert "[defaults.openvino]" in err and "distance = far" in err and "make \"fp32\" the default" in err
    assert "models/manifests/pose_landmark_full.toml" in err


def test_gate_passes_a_clean_audit_and_fp32_without_one(tmp_path):
    _report(tmp_path, flagged=False)
    assert ma.default_problems(_manifests("int8"), tmp_path) == []
    assert ma.default_problems(_manifests("fp32"), tmp_path / "none") == []


@pytest.mark.parametrize("kw, words", [
    ({"complete": False}, "partial"),
    ({"version": "0.0.1"}, "no audit of version"),
    ({"precision": "int8_full"}, "no audit of version"),
])
def test_gate_needs_a_complete_current_audit_for_a_non_fp32_default(tmp_path, kw, words):
    _report(tmp_path, **kw)
    [err] = ma.default_problems(_manifests("int8"), tmp_path)
    assert words in err and "edge models audit --only pose_landmark_full" in err


def test_gate_refuses_an_audit_of_another_file(tmp_path):
    _report(tmp_path, sha="abc")
    [err] = ma.default_problems(_manifests("int8"), tmp_path, built_sha=lambda n, b, p: "def")
    assert "changed since its audit" in err
    assert ma.default_problems(_manifests("int8"), tmp_path, built_sha=lambda n, b, p: "abc") == []


def test_audit_says_at_once_which_default_the_build_will_refuse(tmp_path):
    """`edge models audit` prints the build gate's verdict on the reports it just wrote (models.build.audit.run)."""
    _report(tmp_path, precision="fp32", flagged=True)
    [line] = ma.refused_defaults(["pose_landmark_full"], tmp_path)
    assert "[defaults.openvino]" in line and "distance = far" in line
    assert ma.refused_defaults(["pose_landmark_student"], tmp_path) == []  # only the models it audited
    _report(tmp_path, precision="fp32", flagged=False)
    assert ma.refused_defaults(["pose_landmark_full"], tmp_path) == []


def test_committed_defaults_pass_the_committed_audits():
    assert ma.default_problems(load_all()) == []


def test_models_build_refuses_a_flagged_default(tmp_path, monkeypatch, capsys):
    """The real manifest's FP32 openvino default, with an audit that flags it: the build stops before building."""
    from edge.app.cli import main

    _report(tmp_path, precision="fp32", flagged=True)
    monkeypatch.setattr(ma, "REPORTS", tmp_path)
    rc = main(["models", "build", "--only", "pose_landmark_full", "--cache", str(tmp_path / "cache"),
               "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 1 and "FAILED" in out and "distance = far" in out and "[defaults.openvino]" in out
    assert not (tmp_path / "cache" / "models").exists()  # refused before any step ran
