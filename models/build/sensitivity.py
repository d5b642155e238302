"""`python -m models.build.sensitivity`: why OpenVINO INT8 of the landmark model drifts, layer group by group.

Post-training quantizes the FP32 IR with NNCF (OpenVINO backend) under several configurations: everything INT8,
each group of layers left FP32 in turn (ignored scopes, models/build/steps/nncf_scope.py, plus the five
upsampling branches), the NNCF knobs (preset, overflow fix, full bias correction, SmoothQuant off, calibration
size) and `nncf.quantize_with_accuracy_control` (validation metric = 1 - the landmark drift); and bf16 (`bf16_*`:
the FP32 IR run with OpenVINO's bf16 inference precision, each group of layers kept f32 in turn by the chain's
ov_bf16 marks, on CPUs with native bf16). Each is measured
against the FP32 IR on validation crops of the **calibration split** (augment.CropMaker, a seed no training or
calibration batch uses; the held-out photos are never loaded): landmark drift of torso size after heatmap
refinement (devtools.pose_metrics.drift, as `edge bench pose`), drift of the 256 crop and segmentation IoU
(calibration.accuracy.landmark_drift, as the build's held-out gate), pose-flag disagreements; and its speed vs
FP32 in the same process (1 and 2 threads, every model interleaved, medians), with all outputs and without the
segmentation output (what the pose pipeline computes when segmentation is off).

The runtime-venv entry point runs the work in the `train` build venv (torch for the crops, NNCF, OpenVINO);
quantized models and per-configuration results are cached in the work folder (a rerun measures only what is new).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("sensitivity")
ROOT = Path(__file__).resolve().parents[2]
STEPS = Path(__file__).resolve().parent / "steps"
TRAIN = Path(__file__).resolve().parent / "train"
MODEL = "pose_landmark_full"
SEED = 20261129
VAL_SEED = SEED + 1000  # training batches use (SEED, step), QAT calibration (SEED + 1, 0): never this one
CALIB_SEED = SEED + 1
OUTPUTS = ("Identity", "Identity_1", "Identity_2", "Identity_3", "Identity_4")
NO_SEG = ("Identity", "Identity_1", "Identity_3", "Identity_4")

# The chain's NNCF step as built: default preset (performance: symmetric activations), OverflowFix.ENABLE,
# fast bias correction, the 128 calibration crops of calib.npz.
CHAIN = {"preset": "performance", "overflow": "enable", "fast_bc": True, "calib": "chain"}
# The base of the sensitivity sweep: what QAT uses (mixed preset, no overflow fix: VNNI/AMX/ARM CPUs) and 320 crops.
BASE = {"preset": "mixed", "overflow": "disable", "fast_bc": True, "calib": "crops"}
# validation crops as the runtime sees them: ROI jitter, rotation, flip and colour, no synthetic damage
CLEAN = {"p_empty": 0.0, "p_blur": 0.0, "p_noise": 0.0, "p_lowres": 0.0, "p_occluder": 0.0, "p_background": 0.0,
         "p_grey": 0.0}
REGRESSION = ["Identity", "Identity_1", "Identity_4"]  # the 8x8 -> 2x2 branch: landmarks, pose flag, world
DECODER = ["Identity_2", "Identity_3"]  # the upsampling path: segmentation, heatmap
HEADS = {"landmark_head": ["Identity"], "flag_head": ["Identity_1"], "seg_head": ["Identity_2"],
         "heatmap_head": ["Identity_3"], "world_head": ["Identity_4"]}


def configs() -> list[dict]:
    """Every configuration of the study, in order: name, what it is, NNCF settings, ignored scope."""
    c = [{"name": "chain_int8", "what": "the chain's int8 as built: first 6 convs + every head conv FP32",
          **CHAIN, "scope": {"first_convs": 6, "head_convs": list(OUTPUTS)}},
         {"name": "chain_int8_full", "what": "the chain's int8_full as built: everything INT8", **CHAIN, "scope": {}},
         {"name": "all_int8", "what": "everything INT8 (sweep base: mixed preset, no overflow fix, 320 crops)",
          **BASE, "scope": {}},
         {"name": "all_int8_overflow_fix", "what": "all_int8 with OverflowFix.ENABLE (7-bit weights)",
          **BASE, "overflow": "enable", "scope": {}},
         {"name": "all_int8_performance", "what": "all_int8 with the performance preset (symmetric activations)",
          **BASE, "preset": "performance", "scope": {}},
         {"name": "all_int8_calib128", "what": "all_int8 calibrated on calib.npz (128 crops) instead of 320",
          **BASE, "calib": "chain", "scope": {}},
         {"name": "all_int8_calib_clean", "what": "all_int8 calibrated on 320 clean crops (no synthetic damage)",
          **BASE, "calib": "crops_clean", "scope": {}},
         {"name": "all_int8_full_bc", "what": "all_int8 with full BiasCorrection (fast_bias_correction=False)",
          **BASE, "fast_bc": False, "scope": {}},
         {"name": "all_int8_no_smoothquant", "what": "all_int8 with SmoothQuant off (alphas -1)",
          **BASE, "smooth_quant": False, "scope": {}}]
    for k in (1, 3, 6):
        c.append({"name": f"fp32_first_convs_{k}", "what": f"first {k} backbone conv(s) FP32", **BASE,
                  "scope": {"first_convs": k}})
    for i in range(5):
        c.append({"name": f"fp32_resize_{i}", "what": f"upsampling branch {i} (Interpolate + its convs) FP32",
                  **BASE, "scope": {}, "resize": [i]})
    c.append({"name": "fp32_resize_all", "what": "all 5 upsampling branches FP32", **BASE, "scope": {},
              "resize": [0, 1, 2, 3, 4]})
    c.append({"name": "fp32_upsampling_ops", "what": "the 5 Interpolate ops FP32 (inputs not quantized)", **BASE,
              "scope": {"upsampling": True}})
    for name, outs in HEADS.items():
        c.append({"name": f"fp32_{name}", "what": f"the conv writing {outs[0]} FP32", **BASE,
                  "scope": {"head_convs": outs}})
    c += [{"name": "fp32_seg_branch", "what": "every op feeding only the segmentation output FP32", **BASE,
           "scope": {"branches": [["Identity_2"]]}},
          {"name": "fp32_decoder", "what": "the whole decoder (ops feeding only seg + heatmap) FP32", **BASE,
           "scope": {"branches": [DECODER]}},
          {"name": "fp32_regression_branch", "what": "the regression branch (ops feeding only landmarks, flag, "
           "world) FP32", **BASE, "scope": {"branches": [REGRESSION]}},
          {"name": "fp32_all_heads", "what": "every head conv FP32", **BASE, "scope": {"head_convs": list(OUTPUTS)}}]
    return c


def spec_key(spec: dict) -> str:
    keep = {k: v for k, v in spec.items() if k not in ("name", "what")}
    return hashlib.sha256(json.dumps(keep, sort_keys=True).encode()).hexdigest()[:12]


# ------------------------------------------------------------------------------------------ worker (train venv)
def _setup_paths() -> None:
    for p in (ROOT, STEPS, TRAIN):
        if str(p) not in sys.path:
            sys.path.insert(0, str(p))


def pipeline_landmarks(out: dict, i: int):
    """(33, 5) landmarks of crop i as the pose pipeline decodes them: crop px after heatmap refinement,
    sigmoid visibility / presence (edge.pose.landmarks)."""
    import numpy as np

    from edge.pose.detection import sigmoid
    from edge.pose.landmarks import NUM_LANDMARKS, NUM_RAW, refine_from_heatmap

    raw = out["Identity"][i].reshape(NUM_RAW, 5).astype(np.float64)
    xy = refine_from_heatmap(raw[:, :2] / 256.0, out["Identity_3"][i]) * 256.0
    lm = np.empty((NUM_LANDMARKS, 5))
    lm[:, :2], lm[:, 2] = xy[:NUM_LANDMARKS], raw[:NUM_LANDMARKS, 2]
    lm[:, 3:5] = sigmoid(raw[:NUM_LANDMARKS, 3:5])
    return lm


def torso_drifts(ref: dict, test: dict) -> list[float | None]:
    """Per crop: drift of torso size (devtools.pose_metrics.drift) where the reference finds a pose, else None."""
    from devtools.pose_metrics import drift

    flags = ref["Identity_1"].reshape(-1)
    return [drift(pipeline_landmarks(ref, i), pipeline_landmarks(test, i)) if flags[i] > 0.5 else None
            for i in range(len(flags))]


def metrics(ref: dict, test: dict) -> dict:
    import numpy as np

    from calibration.accuracy import landmark_drift

    a = landmark_drift(ref, test)
    d = np.array([x for x in torso_drifts(ref, test) if x is not None])
    fr, ft = ref["Identity_1"].reshape(-1) > 0.5, test["Identity_1"].reshape(-1) > 0.5
    return {"n": a["n"], "n_pose": int(fr.sum()), "flag_disagreements": int((fr != ft).sum()),
            "drift_torso_mean": float(d.mean()), "drift_torso_median": float(np.median(d)),
            "drift_torso_p95": float(np.percentile(d, 95)), "drift256_mean": a["drift_mean"],
            "drift256_p95": a["drift_p95"], "seg_iou": a["seg_iou"]}


def make_crops(cache: Path, n: int, seed: int, seg_runner, clean: bool = False):
    """n crops (uint8 NHWC) of the calibration split's people (augment.CropMaker, batches of 32 at (seed, 0),
    (seed, 1), ...): the training recipe (background swaps by the FP32 model's own mask), or with `clean` only
    the ROI jitter and colour changes (CLEAN: what a camera frame gives the landmark model)."""
    import numpy as np
    import torch

    from augment import Recipe
    from loop import make_data

    cal = cache / "calibration" / MODEL
    maker = make_data(cache / "photos", cal / "provenance.json", "cpu", Recipe(**CLEAN) if clean else Recipe())

    def seg(x):
        logits = [seg_runner({"input_1": x[i:i + 1].numpy()})["Identity_2"] for i in range(len(x))]
        return torch.from_numpy(np.concatenate(logits))

    out = []
    for step in range((n + 31) // 32):
        with torch.no_grad():
            x = maker.batch(min(32, n - 32 * step), seed, step, teacher_seg=seg)
        out.append(np.rint(x.numpy() * 255).clip(0, 255).astype(np.uint8))
    return np.concatenate(out)


def _chain_back(g, node, convs: list) -> None:
    """Collect convolutions up a linear chain (one data input, one consumer) ending at `node`."""
    from nncf_scope import _is_const, is_conv

    cur = node
    while True:
        if is_conv(cur):
            convs.append(cur.node_name)
        preds = [p for p in g.get_previous_nodes(cur) if not _is_const(p)]
        if len(preds) != 1 or len(g.get_next_nodes(preds[0])) != 1:
            return
        cur = preds[0]


def resize_groups(g) -> list[list[str]]:
    """The five upsampling branches (analysis only): each Interpolate, the conv chain that feeds it, the convs
    on its way to the next merge (Add) and the conv chain of the merge's other (skip) input."""
    from nncf_scope import _is_const, is_conv, is_upsampling

    groups = []
    for u in [n for n in g.topological_sort() if is_upsampling(n)]:
        names, seen, stack, merges = [u.node_name], {u.node_name}, list(g.get_next_nodes(u)), []
        preds = [p for p in g.get_previous_nodes(u) if not _is_const(p)]
        if len(preds) == 1 and len(g.get_next_nodes(preds[0])) == 1:
            _chain_back(g, preds[0], names)
        while stack:
            n = stack.pop()
            if n.node_name in seen:
                continue
            seen.add(n.node_name)
            if len([p for p in g.get_previous_nodes(n) if not _is_const(p)]) > 1:
                merges.append(n)
                continue
            if is_conv(n):
                names.append(n.node_name)
            stack.extend(g.get_next_nodes(n))
        for m in merges:
            for p in g.get_previous_nodes(m):
                if not _is_const(p) and p.node_name not in seen and len(g.get_next_nodes(p)) == 1:
                    _chain_back(g, p, names)
        groups.append(sorted(set(names)))
    return groups


def _advanced(spec: dict):
    from nncf.quantization.advanced_parameters import (AdvancedQuantizationParameters,
                                                       AdvancedSmoothQuantParameters, OverflowFix)

    kw = {"overflow_fix": {"enable": OverflowFix.ENABLE, "disable": OverflowFix.DISABLE,
                           "first_layer": OverflowFix.FIRST_LAYER}[spec["overflow"]]}
    if spec.get("smooth_quant") is False:
        kw["smooth_quant_alphas"] = AdvancedSmoothQuantParameters(convolution=-1, matmul=-1)
    return AdvancedQuantizationParameters(**kw)


def quantize(fp32, calib: list, spec: dict, ignored: list[str], val=None):
    """NNCF PTQ of the OpenVINO model (or quantize_with_accuracy_control when spec["accuracy_control"])."""
    import nncf

    preset = {"mixed": nncf.QuantizationPreset.MIXED, "performance": nncf.QuantizationPreset.PERFORMANCE}
    kw = {"preset": preset[spec["preset"]], "subset_size": len(calib), "fast_bias_correction": spec["fast_bc"],
          "ignored_scope": nncf.IgnoredScope(names=ignored) if ignored else None}
    if not spec.get("accuracy_control"):
        return nncf.quantize(fp32, nncf.Dataset(calib), advanced_parameters=_advanced(spec), **kw)
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    ac = spec["accuracy_control"]
    xs, ref = val
    names = list(OUTPUTS)

    def validate(compiled, items) -> tuple[float, list[float]]:
        idx = list(items)
        req = compiled.create_infer_request()
        outs = {n: [] for n in names}
        for i in idx:
            r = req.infer({0: xs[i:i + 1]})
            for o in compiled.outputs:
                name = next((t for t in sorted(o.get_names()) if t in names), None)
                if name:
                    outs[name].append(r[o])
        import numpy as np

        test = {k: np.concatenate(v) for k, v in outs.items()}
        sub = {k: v[idx] for k, v in ref.items()}
        # 1 - drift: the FP32 model scores 1 (NNCF divides by the initial metric, so it must not be 0)
        per = [1.0 - (d if d is not None else 0.0) for d in torso_drifts(sub, test)]
        return float(np.mean(per)), per

    return nncf.quantize_with_accuracy_control(
        fp32, nncf.Dataset(calib), nncf.Dataset(list(range(len(xs))), lambda i: xs[i:i + 1]), validate,
        max_drop=ac["max_drop"], drop_type=nncf.DropType.ABSOLUTE,
        advanced_quantization_parameters=_advanced(spec),
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
            ranking_subset_size=ac.get("ranking_subset", 32), num_ranking_workers=1,
            max_num_iterations=ac.get("max_iterations", 40)), **kw)


def fp32_ops_in(model) -> dict:
    """What stayed FP32 in a quantized IR: convolutions without a FakeQuantize on their weights or their input."""
    convs = [op for op in model.get_ordered_ops() if op.get_type_name() in ("Convolution", "GroupConvolution")]

    def fq_above(v, depth=0) -> bool:  # a FakeQuantize, or int8 weights (Constant i8 -> Convert -> Multiply)
        n = v.get_node()
        if n.get_type_name() == "FakeQuantize" or (n.get_type_name() == "Constant" and
                                                    n.get_output_element_type(0).get_type_name() in ("i8", "u8")):
            return True
        if depth > 3 or n.get_type_name() in ("Parameter", "Convolution", "GroupConvolution"):
            return False
        return any(fq_above(i, depth + 1) for i in n.input_values())

    fp32 = [op.get_friendly_name() for op in convs if not (fq_above(op.input_value(0)) and fq_above(op.input_value(1)))]
    return {"convs": len(convs), "fp32_convs": len(fp32), "fp32_conv_names": fp32}


def _compile(core, model, threads: int, outputs=None, hint: str = "f32"):
    import openvino as ov

    if outputs is not None:
        keep = [r for r in model.get_results()
                if (r.input_value(0).get_names() | r.output(0).get_names()) & set(outputs)]
        model = ov.Model(keep, model.get_parameters(), model.get_friendly_name())
    return core.compile_model(model, "CPU", {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1",
                                             "INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": hint})


def timing(paths: dict[str, Path], x, threads: tuple[int, ...], rounds: int, per_round: int,
           noseg: bool = True, bf16: frozenset = frozenset()) -> dict:
    """Per model and setting ("<threads>t" all outputs, "<threads>t_noseg" without segmentation unless `noseg`
    is false): median and p95 ms of one inference, every model interleaved round by round in one process
    (rotating the order). Models named in `bf16` run with the bf16 inference precision."""
    import numpy as np
    import openvino as ov

    core = ov.Core()
    models = {k: core.read_model(str(p)) for k, p in paths.items()}
    res: dict = {}
    for t in threads:
        for seg in (True, False) if noseg else (True,):
            setting = f"{t}t" if seg else f"{t}t_noseg"
            reqs = {k: _compile(core, m, t, None if seg else NO_SEG, "bf16" if k in bf16 else "f32").create_infer_request()
                    for k, m in models.items()}
            for r in reqs.values():
                for _ in range(3):
                    r.infer({0: x})
            ms: dict[str, list[float]] = {k: [] for k in reqs}
            keys = list(reqs)
            for rnd in range(rounds):
                order = keys[rnd % len(keys):] + keys[:rnd % len(keys)]
                for k in order:
                    for _ in range(per_round):
                        t0 = time.perf_counter()
                        reqs[k].infer({0: x})
                        ms[k].append((time.perf_counter() - t0) * 1e3)
            for k, v in ms.items():
                res.setdefault(k, {})[setting] = {"ms_median": round(float(np.median(v)), 3),
                                                  "ms_p95": round(float(np.percentile(v, 95)), 3), "n": len(v)}
            log.info("timed %s: fp32 %.2f ms median", setting, res["fp32"][setting]["ms_median"])
    for k in res:
        for s, v in res[k].items():
            v["speedup_vs_fp32"] = round(res["fp32"][s]["ms_median"] / v["ms_median"], 3)
    return res


def worker(a: argparse.Namespace) -> int:
    _setup_paths()
    import numpy as np
    import openvino as ov

    import nncf_scope
    from models.build.runners import open_model, run_batch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("nncf").setLevel(logging.WARNING)
    cache, work = Path(a.cache), Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    mdir = sorted((cache / "models" / MODEL).glob("*/pose_landmark_full_fp32.xml"))
    if not mdir:
        raise SystemExit(f"no FP32 IR of {MODEL} in {cache}: run `edge models build --only {MODEL}`")
    fp32_path = mdir[-1]
    fp32_run = open_model(fp32_path, a.threads)
    crops = work / f"crops_val{a.val}_calib{a.calib}.npz"
    if not crops.is_file():
        t0 = time.monotonic()
        sets = {"val": make_crops(cache, a.val, VAL_SEED, fp32_run, clean=True),
                "val_aug": make_crops(cache, a.val, VAL_SEED, fp32_run),
                "calib": make_crops(cache, a.calib, CALIB_SEED, fp32_run),
                "calib_clean": make_crops(cache, a.calib, CALIB_SEED, fp32_run, clean=True)}
        np.savez_compressed(crops, **sets)
        log.info("made crops of the calibration split in %.0f s: %s", time.monotonic() - t0,
                 {k: len(v) for k, v in sets.items()})
    z = np.load(crops)
    xs = z["val"].astype(np.float32) / 255.0
    xs_aug = z["val_aug"].astype(np.float32) / 255.0
    calib_sets = {k: [c[None].astype(np.float32) / 255.0 for c in v] for k, v in (
        ("crops", z["calib"]), ("crops_clean", z["calib_clean"]),
        ("chain", np.load(cache / "calibration" / MODEL / "calib.npz")["x"]))}
    ref = run_batch(fp32_run, {"input_1": xs})
    ref_aug = run_batch(fp32_run, {"input_1": xs_aug})
    fp32 = ov.Core().read_model(str(fp32_path))
    graph, outs = nncf_scope.openvino_graph(fp32)
    resize = resize_groups(graph)
    wanted = set(a.configs or [])
    specs = [s for s in configs() + EXTRA if not wanted or s["name"] in wanted]
    unknown = sorted(wanted - {s["name"] for s in specs})
    if unknown:
        raise SystemExit(f"unknown configuration(s) {unknown}; known: {[s['name'] for s in configs() + EXTRA]}")
    results = []
    for spec in specs:
        key = spec_key(spec)
        xml, rec = work / f"{spec['name']}-{key}.xml", work / f"{spec['name']}-{key}.json"
        if rec.is_file() and xml.is_file():
            cached = json.loads(rec.read_text())
            results.append(cached if "bf16" in spec else {**cached, **fp32_ops_in(ov.Core().read_model(str(xml)))})
            log.info("%-28s cached: %s", spec["name"], _line(results[-1]))
            continue
        if "bf16" in spec:
            results.append(_bf16_config(spec, key, xml, rec, fp32_path, graph, outs, ref, ref_aug, xs, xs_aug,
                                        a.threads))
            continue
        ignored = nncf_scope.resolve(graph, outs, spec.get("scope", {}))
        ignored = sorted(set(ignored) | {n for i in spec.get("resize", []) for n in resize[i]})
        if "quantize_only" in spec:  # everything FP32 except include - exclude
            only = spec["quantize_only"]
            q_names = set(nncf_scope.resolve(graph, outs, only["include"])) - set(
                nncf_scope.resolve(graph, outs, only.get("exclude", {})))
            ignored = sorted(n.node_name for n in graph.get_all_nodes() if n.node_name not in q_names and
                             n.node_name not in outs and not nncf_scope._is_const(n) and
                             n.metatype.__name__ != "OVParameterMetatype")
        t0 = time.monotonic()
        q = quantize(fp32, calib_sets[spec["calib"]], spec, ignored, (xs, ref))
        secs = time.monotonic() - t0
        ov.save_model(q, str(xml), compress_to_fp16=False)
        run = open_model(xml, a.threads)
        m = metrics(ref, run_batch(run, {"input_1": xs}))
        m_aug = metrics(ref_aug, run_batch(run, {"input_1": xs_aug}))
        r = {**spec, "key": key, "ignored": ignored, "quantize_s": round(secs, 1), **fp32_ops_in(q), **m,
             "augmented": m_aug, "calib_n": len(calib_sets[spec["calib"]]), "val_n": len(xs)}
        rec.write_text(json.dumps(r, indent=1))
        results.append(r)
        log.info("%-28s %s (%.0f s)", spec["name"], _line(r), secs)
    out = {"model": MODEL, "fp32": str(fp32_path),
           "val": {"n": len(xs), "seed": VAL_SEED, "split": "calib", "recipe": "clean (ROI jitter + colour)",
                   "augmented": "the same people and seed with the training recipe (occluders, blur, noise, "
                                "low resolution, background swaps, empty crops): the `augmented` metrics"},
           "calib": {"crops": {"n": len(calib_sets["crops"]), "seed": CALIB_SEED, "recipe": "training"},
                     "crops_clean": {"n": len(calib_sets["crops_clean"]), "seed": CALIB_SEED, "recipe": "clean"},
                     "chain": {"n": len(calib_sets["chain"]), "file": "calibration/pose_landmark_full/calib.npz"}},
           "resize_groups": resize, "nncf": _version("nncf"), "openvino": ov.__version__, "configs": results}
    if a.rounds:
        paths = {"fp32": fp32_path} | {r["name"]: work / f"{r['name']}-{r['key']}.xml" for r in results}
        speed = timing(paths, xs[:1], tuple(a.time_threads), a.rounds, a.per_round,
                       bf16=frozenset(r["name"] for r in results if "bf16" in r))
        out["fp32_timing"] = speed["fp32"]
        for r in results:
            r["timing"] = speed[r["name"]]
        out["timing"] = {"threads": a.time_threads, "rounds": a.rounds, "per_round": a.per_round,
                         "interleaved": True, "loadavg_end": os.getloadavg()}
    Path(a.out).write_text(json.dumps(out, indent=1))
    return 0


def _bf16_config(spec, key, xml, rec, fp32_path, graph, outs, ref, ref_aug, xs, xs_aug, threads) -> dict:
    """A bf16 configuration: the FP32 IR marked as the chain's ov_bf16 step marks it (spec["bf16"]: the layers
    kept f32), measured like the INT8 ones; its record counts the convolutions kept f32."""
    import openvino as ov

    from ov_bf16 import is_precise, scope_layers, write
    from models.build.runners import open_model, run_batch

    n_f32 = write(fp32_path, xml, scope_layers(graph, outs, spec["bf16"]))
    convs = [op for op in ov.Core().read_model(str(xml)).get_ordered_ops()
             if op.get_type_name() in ("Convolution", "GroupConvolution")]
    run = open_model(xml, threads, precision="bf16")
    m = metrics(ref, run_batch(run, {"input_1": xs}))
    m_aug = metrics(ref_aug, run_batch(run, {"input_1": xs_aug}))
    f32 = [op.get_friendly_name() for op in convs if is_precise(op)]
    r = {**spec, "key": key, "f32_layers": n_f32, "convs": len(convs), "fp32_convs": len(f32),
         "fp32_conv_names": f32, **m, "augmented": m_aug, "val_n": len(xs)}
    rec.write_text(json.dumps(r, indent=1))
    log.info("%-28s %s", spec["name"], _line(r))
    return r


# The second round, after the first sweep: each part quantized alone, mixed-precision candidates, accuracy control.
# backbone stages by resolution (convolutions 1-4 at 128x128, 5-10 at 64, 11-16 at 32, 17-34 at 16, 35-47 at 8)
STAGES = {"128": (0, 4), "64": (4, 10), "32": (10, 16), "16": (16, 34), "8": (34, 47)}
EXTRA: list[dict] = [
    *({"name": f"int8_only_stage{res}", "what": f"only the backbone convs at {res}x{res} INT8 (convs {a + 1}-{b})",
       **BASE, "scope": {},
       "quantize_only": {"include": {"first_convs": b}, "exclude": {"first_convs": a} if a else {}}}
      for res, (a, b) in STAGES.items()),
    {"name": "int8_only_regression", "what": "only the regression branch INT8 (8x8 -> 2x2 -> landmarks, flag, world)",
     **BASE, "scope": {}, "quantize_only": {"include": {"branches": [REGRESSION]}}},
    {"name": "int8_only_decoder", "what": "only the decoder INT8 (upsampling path -> heatmap, segmentation)",
     **BASE, "scope": {}, "quantize_only": {"include": {"branches": [DECODER]}}},
    # mixed-precision candidates (manifest-expressible scopes)
    {"name": "mixed_reg_stage128", "what": "FP32: regression branch + backbone stage 128 (convs 1-4)", **BASE,
     "scope": {"first_convs": 4, "branches": [REGRESSION]}},
    {"name": "mixed_reg_dec_stage128", "what": "FP32: regression branch + decoder + stage 128; INT8: backbone "
     "stages 64-8", **BASE, "scope": {"first_convs": 4, "branches": [REGRESSION, DECODER]}},
    {"name": "mixed_int8_stage32_16_8", "what": "INT8 only backbone stages 32, 16, 8 (FP32: convs 1-10, regression, "
     "decoder)", **BASE, "scope": {"first_convs": 10, "branches": [REGRESSION, DECODER]}},
    {"name": "mixed_int8_stage16_8", "what": "INT8 only backbone stages 16 and 8 (FP32: convs 1-16, regression, "
     "decoder)", **BASE, "scope": {"first_convs": 16, "branches": [REGRESSION, DECODER]}},
    # the QAT candidates with NNCF's PERFORMANCE preset (symmetric activations, faster on OpenVINO; no overflow fix)
    {"name": "perf_int8_stage32_16_8", "what": "mixed_int8_stage32_16_8 with symmetric activations",
     **BASE, "preset": "performance", "scope": {"first_convs": 10, "branches": [REGRESSION, DECODER]}},
    {"name": "perf_reg_dec_stage128", "what": "mixed_reg_dec_stage128 with symmetric activations",
     **BASE, "preset": "performance", "scope": {"first_convs": 4, "branches": [REGRESSION, DECODER]}},
    {"name": "perf_reg_dec_first6", "what": "perf_reg_dec_stage128 with the first 2 stage-64 convs FP32 too",
     **BASE, "preset": "performance", "scope": {"first_convs": 6, "branches": [REGRESSION, DECODER]}},
    {"name": "perf_reg_dec_first8", "what": "perf_reg_dec_stage128 with the first 4 stage-64 convs FP32 too",
     **BASE, "preset": "performance", "scope": {"first_convs": 8, "branches": [REGRESSION, DECODER]}},
    # the same scopes with the chain's settings (performance preset, overflow fix on: safe on AVX2-only CPUs)
    {"name": "chain_settings_stage32_16_8", "what": "mixed_int8_stage32_16_8 with the chain's NNCF settings",
     **CHAIN, "scope": {"first_convs": 10, "branches": [REGRESSION, DECODER]}},
    {"name": "chain_settings_stage16_8", "what": "mixed_int8_stage16_8 with the chain's NNCF settings",
     **CHAIN, "scope": {"first_convs": 16, "branches": [REGRESSION, DECODER]}},
    # bf16 (CPUs with AVX512-BF16 / AMX): which layers must stay f32 (the chain's ov_bf16 step, manifest [bf16])
    {"name": "bf16_all", "what": "every layer bf16", "bf16": {}},
    {"name": "bf16_f32_regression", "what": "bf16, the regression branch f32", "bf16": {"branches": [REGRESSION]}},
    {"name": "bf16_f32_landmark_head", "what": "bf16, the conv writing the landmarks f32",
     "bf16": {"head_convs": ["Identity"]}},
    {"name": "bf16_f32_decoder", "what": "bf16, the decoder f32", "bf16": {"branches": [DECODER]}},
    {"name": "bf16_f32_stage128", "what": "bf16, backbone stage 128 (convs 1-4) f32", "bf16": {"first_convs": 4}},
    {"name": "bf16_f32_stage128_regression", "what": "bf16, stage 128 and the regression branch f32",
     "bf16": {"first_convs": 4, "branches": [REGRESSION]}},
    {"name": "bf16_f32_regression_decoder", "what": "bf16, the regression branch and the decoder f32",
     "bf16": {"branches": [REGRESSION, DECODER]}},
    {"name": "accuracy_control_0.02", "what": "nncf.quantize_with_accuracy_control, metric 1 - drift (torso, clean "
     "validation crops), max drop 0.02", **BASE, "scope": {},
     "accuracy_control": {"max_drop": 0.02, "ranking_subset": 32, "max_iterations": 60}},
]


def _version(pkg: str) -> str:
    from importlib.metadata import version

    return version(pkg)


def _line(r: dict) -> str:
    return (f"aug: torso {r['augmented']['drift_torso_mean']:.4f} IoU {r['augmented']['seg_iou']:.3f} | "
            f"drift torso {r['drift_torso_mean']:.4f} (p95 {r['drift_torso_p95']:.4f}), /256 {r['drift256_mean']:.4f} "
            f"(p95 {r['drift256_p95']:.4f}), seg IoU {r['seg_iou']:.3f}, flag diff {r['flag_disagreements']}, "
            f"FP32 convs {r['fp32_convs']}/{r['convs']}")


# ------------------------------------------------------------------------------------------ entry (runtime venv)
def table(report: dict) -> str:
    """Markdown table of a report (docs/MODELS.md)."""
    rows = ["| configuration | FP32 convs | drift torso mean / p95 | drift /256 mean / p95 | seg IoU | flag diff "
            "| speed vs FP32 1t / 2t (no seg 1t / 2t) |", "|---|---|---|---|---|---|---|"]
    for r in report["configs"]:
        t = r.get("timing", {})
        sp = " / ".join(f"{t[s]['speedup_vs_fp32']:.2f}" if s in t else "–" for s in ("1t", "2t"))
        sn = " / ".join(f"{t[s]['speedup_vs_fp32']:.2f}" if s in t else "–" for s in ("1t_noseg", "2t_noseg"))
        rows.append(f"| `{r['name']}` {r['what']} | {r['fp32_convs']}/{r['convs']} | {r['drift_torso_mean']:.4f} / "
                    f"{r['drift_torso_p95']:.4f} | {r['drift256_mean']:.4f} / {r['drift256_p95']:.4f} | "
                    f"{r['seg_iou']:.3f} | {r['flag_disagreements']} | {sp} ({sn}) |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", help="model cache (default: the configured cache)")
    ap.add_argument("--work", help="quantized models + per-configuration records "
                    "(default <cache>/eval/int8_sensitivity)")
    ap.add_argument("--val", type=int, default=128, help="validation crops (calibration split)")
    ap.add_argument("--calib", type=int, default=320, help="calibration crops for the sweep (calibration split)")
    ap.add_argument("--configs", nargs="*", help="only these configurations (default: all)")
    ap.add_argument("--threads", type=int, default=2, help="threads for quantization / evaluation")
    ap.add_argument("--time-threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--rounds", type=int, default=12, help="timing rounds (0: no timing)")
    ap.add_argument("--per-round", type=int, default=5)
    ap.add_argument("--json", default=str(ROOT / "docs" / "bench" / "int8_sensitivity.json"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        return worker(a)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from edge.core.paths import cache_dir
    from models.build import venvs

    cache = cache_dir(a.cache)
    work = Path(a.work) if a.work else cache / "eval" / "int8_sensitivity"
    work.mkdir(parents=True, exist_ok=True)
    py = str(venvs.ensure(cache, "train"))
    out = work / "report.json"
    cmd = [py, str(Path(__file__).resolve()), "--worker", "--cache", str(cache), "--work", str(work), "--val",
           str(a.val), "--calib", str(a.calib), "--threads", str(a.threads), "--rounds", str(a.rounds),
           "--per-round", str(a.per_round), "--out", str(out), "--time-threads", *map(str, a.time_threads)]
    if a.configs:
        cmd += ["--configs", *a.configs]
    env = dict(os.environ, PYTHONNOUSERSITE="1", PYTHONPATH="", PYTHONUNBUFFERED="1", OMP_NUM_THREADS=str(a.threads))
    log.info("$ %s", " ".join(cmd))
    r = subprocess.run(cmd, env=env, cwd=ROOT)
    if r.returncode != 0:
        log.error("sensitivity worker failed (exit %d)", r.returncode)
        return r.returncode
    report = json.loads(out.read_text())
    report["command"] = "python -m models.build.sensitivity " + " ".join(argv if argv is not None else sys.argv[1:])
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(report, indent=1))
    print(table(report))
    log.info("wrote %s", a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
