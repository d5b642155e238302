"""`python -m models.build.detector_sensitivity [--model pose_detection|nanodet_m_416]`: which layers of a person
detector cost OpenVINO INT8 its recall, and which ignored scope holds the detector gate.

Each configuration post-training quantizes the model's FP32 IR with the chain's NNCF settings
(models/build/sensitivity.py `CHAIN`: performance preset, OverflowFix.ENABLE, the calibration windows of
`calib.npz`) and an ignored scope of the manifest's selectors (steps/nncf_scope.py: first N backbone convs, the head
convs of an output, their branches). It is measured against the FP32 IR on data of the **calibration split only**
(the held-out set is the build's gate), drawn with a seed no build set uses: for `pose_detection` letterboxed windows
of the calibration photos and negatives (calibration.datasets.detector_sets, metric
calibration.accuracy.detector_agreement); for `nanodet_m_416` composites of the cut-out people over person-free
scenes and negatives (calibration.people.frames, metric calibration.people.agreement). Both also get the calibration
split's empty scenes (calibration.accuracy.empty_scenes) for new false positives at the runtime threshold (0.5 /
0.3). Speed: every model and FP32 interleaved in one process (sensitivity.timing), 1 and 2 threads, medians.

Quantization runs in the `quant` build venv (NNCF); evaluation and timing here, with OpenVINO. Quantized models and
their records are cached in the work folder (a rerun quantizes only what is new).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("detector_sensitivity")
ROOT = Path(__file__).resolve().parents[2]
STEPS = Path(__file__).resolve().parent / "steps"
VAL_SEED = 20261203  # validation data of the calibration split, a seed no calibration / held-out set uses
HEADS = ["Identity", "Identity_1"]


@dataclass(frozen=True)
class Target:
    """A person detector the sweep can study: its metric, input, and which output holds the scores."""

    model: str
    metric: str  # calibration metric (calibration.accuracy.EMPTY_SCENE_THRESHOLD key)
    size: int
    norm: str
    score: str  # the output with the person scores
    score_is_prob: bool  # scores are sigmoid probabilities (an offset then moves their logits), else logits

    @property
    def threshold(self) -> float:
        from calibration.accuracy import EMPTY_SCENE_THRESHOLD

        return EMPTY_SCENE_THRESHOLD[self.metric]

    def detect(self):
        """outputs of one sample -> (boxes, scores) at the runtime threshold."""
        if self.model == "nanodet_m_416":
            from models.build.graph_chain import detect_fn

            return detect_fn("nanodet", self.size, self.threshold)
        from calibration.accuracy import ssd_detect

        return ssd_detect(self.metric, self.size, self.threshold)

    def agreement(self, ref: dict, test: dict) -> dict:
        """INT8 vs FP32 on a batch: recall, keypoint / box drift, score drift (the build's metric)."""
        if self.model == "nanodet_m_416":
            from calibration.people import agreement

            return agreement(ref, test, self.detect(), self.size)
        from calibration.accuracy import detector_agreement

        return detector_agreement(ref, test, self.metric, self.size)

    def shift(self, out: dict, offset: float) -> dict:
        """Outputs with `offset` added to the score logits (what the nncf step's int8_output_offset does)."""
        import numpy as np

        x = out[self.score]
        if self.score_is_prob:
            p = np.clip(x.astype(np.float64), 1e-7, 1 - 1e-7)
            x = (1 / (1 + np.exp(-(np.log(p / (1 - p)) + offset)))).astype(x.dtype)
        else:
            x = x + offset
        return {**out, self.score: x}

    def val_set(self, cache: Path, m: dict, n: int):
        """n uint8 frames of the calibration split (seed VAL_SEED), letterboxed as the model's sets are."""
        import numpy as np

        if self.model == "nanodet_m_416":
            from calibration import people
            from edge.people.letterbox import letterbox_u8
            from models.build.graph_chain import CHANNELS
            from models.build.runners import open_source
            from models.zoo import ModelZoo

            assert CHANNELS[m["source"]["recipe"]] == "bgr"
            zoo = ModelZoo(cache)
            det, lmk = (open_source(zoo, k, 1) for k in ("pose_detection", "pose_landmark_full"))
            cut = people.person_cutouts(cache, det, lmk)
            fs = people.frames(cache, cut, n - n // 6, n // 6, VAL_SEED, real=False)
            return np.stack([letterbox_u8(f.image, self.size)[0] for f in fs])
        from calibration.datasets import detector_sets

        return detector_sets(cache, {**m["calibration"], "calib_samples": n}, seed=VAL_SEED)["calib"][0]


TARGETS = {"pose_detection": Target("pose_detection", "pose_detector", 224, "minus_one_one", "Identity_1", False),
           "nanodet_m_416": Target("nanodet_m_416", "people_detector", 416, "zero_one", "Identity", True)}


def configs(model: str = "pose_detection") -> list[dict]:
    """The configurations of a model's sweep (all with the chain's NNCF settings): name, what, ignored scope."""
    if model == "nanodet_m_416":
        return NANODET
    c = [{"name": "all_int8", "what": "everything INT8 (the chain's int8_full)", "scope": {}},
         {"name": "chain_x6", "what": "first 6 convs + every head conv FP32 (the chain's int8 before this study)",
          "scope": {"first_convs": 6, "head_convs": HEADS}}]
    for k in (1, 3, 6, 12, 24):
        c.append({"name": f"first_convs_{k}", "what": f"first {k} backbone conv(s) FP32", "scope": {"first_convs": k}})
    c += [{"name": "head_regressor", "what": "the 3 convs writing Identity (boxes + keypoints) FP32",
           "scope": {"head_convs": ["Identity"]}},
          {"name": "head_classifier", "what": "the 3 convs writing Identity_1 (scores) FP32",
           "scope": {"head_convs": ["Identity_1"]}},
          {"name": "heads", "what": "the 6 head convs FP32", "scope": {"head_convs": HEADS}},
          {"name": "branch_regressor", "what": "the regressor branch (depthwise + 1x1 per level) FP32",
           "scope": {"branches": [["Identity"]]}},
          {"name": "branch_classifier", "what": "the classifier branch (depthwise + 1x1 per level) FP32",
           "scope": {"branches": [["Identity_1"]]}},
          {"name": "branches", "what": "both head branches FP32", "scope": {"branches": [["Identity"], ["Identity_1"]]}},
          {"name": "first6_branches", "what": "first 6 convs + both head branches FP32",
           "scope": {"first_convs": 6, "branches": [["Identity"], ["Identity_1"]]}},
          {"name": "first12_branches", "what": "first 12 convs + both head branches FP32",
           "scope": {"first_convs": 12, "branches": [["Identity"], ["Identity_1"]]}}]
    return c + EXTRA


# second round: the first convolutions are what costs the recall (heads and branches change nothing), so more of them
EXTRA: list[dict] = [{"name": f"first_convs_{k}", "what": f"first {k} backbone convs FP32", "scope": {"first_convs": k}}
                     for k in (16, 34, 40, 47, 61)] + [
    {"name": "all_convs_fp32", "what": "every convolution FP32 (backbone + both head branches; only the other ops "
     "INT8)", "scope": {"first_convs": 61, "branches": [["Identity"], ["Identity_1"]]}},
    {"name": "first24_branches", "what": "first 24 convs + both head branches FP32",
     "scope": {"first_convs": 24, "branches": [["Identity"], ["Identity_1"]]}},
    # not what the chain builds: NNCF's mixed preset without the overflow fix (VNNI / AMX / ARM CPUs only)
    {"name": "mixed_first_convs_24", "what": "first 24 convs FP32, mixed preset, no overflow fix",
     "scope": {"first_convs": 24}, "settings": {"preset": "mixed", "overflow": "disable"}},
    {"name": "mixed_all_int8", "what": "everything INT8, mixed preset, no overflow fix", "scope": {},
     "settings": {"preset": "mixed", "overflow": "disable"}},
    # third round: the INT8 score logits sit ~0.09 below FP32 near the threshold; NNCF's full bias correction
    # (per layer, on the quantized model's own activations) instead of the fast one
    {"name": "x6_full_bias_correction", "what": "first 6 + head convs FP32 (the built int8), full bias correction",
     "scope": {"first_convs": 6, "head_convs": HEADS}, "settings": {"fast_bc": False}}]

# NanoDet-m (ShuffleNetV2 + PAN + GFL head: one conv per level writes both the class probabilities `Identity` and
# the box distributions `Identity_1`, so "head convs" are the same 3 for either output and a "branch" is the whole
# network). Its int8 kept the first 6 convs + the head convs FP32 until this sweep chose first 18 + heads (r2)
NANODET: list[dict] = [
    {"name": "all_int8", "what": "everything INT8 (the chain's int8_full)", "scope": {}},
    {"name": "chain_x6", "what": "first 6 convs + every head conv FP32 (the int8 of hm3.0.4-r1)",
     "scope": {"first_convs": 6, "head_convs": HEADS}}] + [
    {"name": f"first{k}_heads", "what": f"first {k} backbone convs + every head conv FP32",
     "scope": {"first_convs": k, "head_convs": HEADS}} for k in (1, 3, 12, 18, 24, 30)] + [
    {"name": "first6_branches", "what": "first 6 convs + every op feeding only the outputs FP32: for NanoDet that is "
     "every conv (both outputs share the whole network), the FP32 bound",
     "scope": {"first_convs": 6, "branches": [HEADS]}},
    {"name": "first6_heads_upsampling", "what": "first 6 + head convs FP32, PAN upsampling FP32",
     "scope": {"first_convs": 6, "head_convs": HEADS, "upsampling": True}},
    {"name": "x6_full_bias_correction", "what": "first 6 + head convs FP32, full bias correction",
     "scope": {"first_convs": 6, "head_convs": HEADS}, "settings": {"fast_bc": False}}]


# ------------------------------------------------------------------------------------------ worker (quant venv)
def worker(a: argparse.Namespace) -> int:
    for p in (ROOT, STEPS):
        sys.path.insert(0, str(p))
    import openvino as ov

    import nncf_scope
    from _util import load_calib
    from models.build.sensitivity import CHAIN, fp32_ops_in, quantize

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("nncf").setLevel(logging.WARNING)
    work = Path(a.work)
    fp32 = ov.Core().read_model(a.fp32)
    graph, outs = nncf_scope.openvino_graph(fp32)
    calib = load_calib(a.calib, a.norm, a.calib_n)
    for spec in json.loads(Path(a.specs).read_text()):
        xml, rec = work / f"{spec['name']}-{spec['key']}.xml", work / f"{spec['name']}-{spec['key']}.json"
        if xml.is_file() and rec.is_file():
            continue
        ignored = nncf_scope.resolve(graph, outs, spec["scope"])
        t0 = time.monotonic()
        q = quantize(fp32, calib, {**CHAIN, **spec.get("settings", {})}, ignored)
        ov.save_model(q, str(xml), compress_to_fp16=False)
        rec.write_text(json.dumps({"ignored": ignored, "quantize_s": round(time.monotonic() - t0, 1),
                                   **fp32_ops_in(q)}, indent=1))
        log.info("%-20s %d ops FP32 (%.0f s)", spec["name"], len(ignored), time.monotonic() - t0)
    return 0


# ------------------------------------------------------------------------------------------ entry (runtime venv)
def evaluate(t: Target, fp32: Path, paths: dict[str, Path], val, empty, threads: int,
             offsets: tuple[float, ...] = ()) -> tuple[dict[str, dict], int]:
    """Each model vs the FP32 IR on the validation frames and the empty scenes; with `offsets`, also with each
    logit offset added to the INT8 scores (`score_offsets`: recall and new empty-scene false positives).
    Returns (results by name, FP32's own false positives on the empty scenes)."""
    import numpy as np

    from calibration.accuracy import empty_scene_check
    from models.build.runners import open_model, run_batch

    detect = t.detect()
    with np.errstate(over="ignore"):
        ref = run_batch(open_model(fp32, threads), val)
        ref_e = run_batch(open_model(fp32, threads), empty)
        out = {}
        for name, p in paths.items():
            run = open_model(p, threads)
            q, q_e = run_batch(run, val), run_batch(run, empty)
            out[name] = {**t.agreement(ref, q), "empty_scenes": empty_scene_check(ref_e, q_e, detect)}
            if offsets:
                out[name]["score_offsets"] = [score_offset(t, ref, q, ref_e, q_e, o, detect) for o in offsets]
    # every configuration's empty-scene check counted FP32's own false positives on the same frames
    return out, next(iter(out.values()))["empty_scenes"]["fp32_false_positives"] if out else 0


def score_offset(t: Target, ref: dict, test: dict, ref_e: dict, test_e: dict, offset: float, detect) -> dict:
    """Recall vs FP32 and new empty-scene false positives when `offset` is added to the INT8 score logits."""
    from calibration.accuracy import empty_scene_check

    a = t.agreement(ref, t.shift(test, offset))
    e = empty_scene_check(ref_e, t.shift(test_e, offset), detect)
    return {"offset": offset, "recall": a["recall"], "n_test_detections": a["n_test_detections"],
            "new_false_positives": e["new_false_positives"], "new_max_score": e["new_max_score"]}


def table(report: dict) -> str:
    """Markdown table of a report (docs/MODELS.md)."""
    drift = "kp drift /224" if report["model"] == "pose_detection" else f"box drift /{TARGETS[report['model']].size}"
    rows = [f"| configuration (FP32 convs) | recall | misses | {drift} | score drift | empty-scene FP (new) "
            "| ms 1t / 2t | vs FP32 1t / 2t |", "|---|---|---|---|---|---|---|---|"]
    ft = report["fp32_timing"]
    rows.append(f"| FP32 IR | 1 | 0 | 0 | 0 | {report['fp32_empty_false_positives']} | {ft['1t']['ms_median']:.2f} / "
                f"{ft['2t']['ms_median']:.2f} | 1.00 / 1.00 |")
    for r in report["configs"]:
        t, e = r.get("timing", {}), r["empty_scenes"]
        ms = " / ".join(f"{t[s]['ms_median']:.2f}" if s in t else "–" for s in ("1t", "2t"))
        sp = " / ".join(f"{t[s]['speedup_vs_fp32']:.2f}" if s in t else "–" for s in ("1t", "2t"))
        miss = round((1 - r["recall"]) * r["n_ref_detections"])
        rows.append(f"| `{r['name']}` ({r['fp32_convs']}/{r['convs']}) | {r['recall']:.3f} | {miss} | "
                    f"{r['kp_drift']:.4f} | {r['score_drift']:.3f} | {e['int8_false_positives']} "
                    f"({e['new_false_positives']}) | {ms} | {sp} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", choices=sorted(TARGETS), default="pose_detection")
    ap.add_argument("--cache", help="model cache (default: the configured cache)")
    ap.add_argument("--work", help="quantized models + records (default <cache>/eval/detector_int8[/MODEL])")
    ap.add_argument("--val", type=int, default=240, help="validation frames (calibration split)")
    ap.add_argument("--configs", nargs="*", help="only these configurations (default: all)")
    ap.add_argument("--threads", type=int, default=1, help="threads for quantization / evaluation")
    ap.add_argument("--time-threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=10, help="timing rounds (0: no timing)")
    ap.add_argument("--per-round", type=int, default=5)
    ap.add_argument("--offsets", type=float, nargs="*", default=[],
                    help="also measure these logit offsets added to the INT8 scores (e.g. 0 0.1 0.2 0.3)")
    ap.add_argument("--heldout", action="store_true",
                    help="also report each configuration on the held-out set (the build's gate; not for choosing)")
    ap.add_argument("--json", help="default docs/bench/detector_int8.json (pose_detection), "
                    "docs/bench/detector_int8_<model>.json (others)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--fp32", help=argparse.SUPPRESS)
    ap.add_argument("--calib", help=argparse.SUPPRESS)
    ap.add_argument("--calib-n", type=int, default=128, help=argparse.SUPPRESS)
    ap.add_argument("--norm", help=argparse.SUPPRESS)
    ap.add_argument("--specs", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        return worker(a)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import openvino as ov

    from calibration.accuracy import empty_scenes
    from edge.core.paths import cache_dir
    from models.build import venvs
    from models.build.sensitivity import fp32_ops_in, spec_key, timing
    from models.manifest import MANIFEST_DIR, load

    t = TARGETS[a.model]
    default_json = "detector_int8.json" if t.model == "pose_detection" else f"detector_int8_{t.model}.json"
    json_path = Path(a.json) if a.json else ROOT / "docs" / "bench" / default_json
    cache = cache_dir(a.cache)
    m = load(MANIFEST_DIR / f"{t.model}.toml")
    work = Path(a.work) if a.work else cache / "eval" / "detector_int8" / ("" if t.model == "pose_detection" else
                                                                            t.model)
    work.mkdir(parents=True, exist_ok=True)
    mdir = cache / "models" / t.model / m["version"]
    fp32 = mdir / f"{t.model}_fp32.xml"
    calib = cache / "calibration" / t.model / "calib.npz"
    if not fp32.is_file() or not calib.is_file():
        raise SystemExit(f"no FP32 IR / calibration set of {t.model} in {cache}: run `edge models build --only "
                         f"{t.model}`")
    wanted = set(a.configs or [])
    specs = [s for s in configs(t.model) if not wanted or s["name"] in wanted]
    unknown = sorted(wanted - {s["name"] for s in specs})
    if unknown:
        raise SystemExit(f"unknown configuration(s) {unknown}; known: {[s['name'] for s in configs(t.model)]}")
    for s in specs:
        s["key"] = spec_key({"scope": s["scope"], "settings": s.get("settings", "chain")})
    (work / "specs.json").write_text(json.dumps(specs))
    cmd = [str(venvs.ensure(cache, "quant")), str(Path(__file__).resolve()), "--worker", "--work", str(work),
           "--fp32", str(fp32), "--calib", str(calib), "--specs", str(work / "specs.json"), "--norm", t.norm,
           "--calib-n", str(m["calibration"]["calib_samples"])]
    env = dict(os.environ, PYTHONNOUSERSITE="1", PYTHONPATH="", PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(a.threads))
    log.info("$ %s", " ".join(cmd))
    if subprocess.run(cmd, env=env, cwd=ROOT).returncode != 0:
        log.error("quantization worker failed")
        return 1
    from models.build.verify import empty_inputs, model_inputs, normalize

    val_u8 = t.val_set(cache, m, a.val)
    val = normalize(val_u8, t.norm)
    empty_u8 = empty_scenes(cache, "calib", t.metric, t.size)
    empty = normalize(empty_u8, t.norm)
    paths = {s["name"]: work / f"{s['name']}-{s['key']}.xml" for s in specs}
    t0 = time.monotonic()
    acc, n_fp32_empty = evaluate(t, fp32, paths, val, empty, a.threads, tuple(a.offsets))
    log.info("evaluated %d configurations in %.0f s", len(acc), time.monotonic() - t0)
    results = []
    for s in specs:
        rec = json.loads((work / f"{s['name']}-{s['key']}.json").read_text())
        results.append({**s, **rec, **fp32_ops_in(ov.Core().read_model(str(paths[s["name"]]))), **acc[s["name"]]})
    if a.heldout:  # the build's gate data, measured after the choice (never used to choose a scope or an offset)
        heldout = cache / "calibration" / t.model / "heldout.npz"
        acc_h, _ = evaluate(t, fp32, paths, model_inputs(heldout, t.norm),
                            empty_inputs(heldout, t.metric, t.size, t.norm), a.threads, tuple(a.offsets))
        for r in results:
            r["heldout"] = acc_h[r["name"]]
    val_what = ("calibration.people.frames(seed=VAL_SEED, real=False): composites of the cut-out people over "
                "person-free scenes + negatives, letterboxed BGR" if t.model == "nanodet_m_416" else
                "calibration.datasets.detector_sets(seed=VAL_SEED)['calib']: windows of the calibration photos + "
                "calibration negatives")
    out = {"model": t.model, "version": m["version"], "fp32": str(fp32), "settings": "chain (sensitivity.CHAIN)",
           "val": {"n": len(val_u8), "seed": VAL_SEED, "split": "calib", "what": val_what},
           "empty": {"n": len(empty_u8), "split": "calib", "threshold": t.threshold},
           "fp32_empty_false_positives": n_fp32_empty, "openvino": ov.__version__, "configs": results}
    if a.rounds:
        speed = timing({"fp32": fp32, **paths}, val["input_1"][:1], tuple(a.time_threads), a.rounds, a.per_round,
                       noseg=False)
        out["fp32_timing"] = speed["fp32"]
        for r in results:
            r["timing"] = speed[r["name"]]
        out["timing"] = {"threads": a.time_threads, "rounds": a.rounds, "per_round": a.per_round,
                         "interleaved": True, "loadavg_end": os.getloadavg()}
    out["command"] = "python -m models.build.detector_sensitivity " + " ".join(
        argv if argv is not None else sys.argv[1:])
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(out, indent=1))
    if a.rounds:
        print(table(out))
    log.info("wrote %s", json_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
