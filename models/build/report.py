"""`edge models report`: per model, FP32 vs INT8 agreement on the held-out set and latency per backend.

Accuracy comes from the build's eval_int8 step (TFLite FP32 reference vs each INT8 artefact on the held-out
set); latency is measured here (median of N interleaved runs, batch 1) through the product backends
(edge.backends) when they load, else the build runners. Writes `models/cards/<name>.md` and
`calibration/reports/<name>.json`.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parents[2]
CARDS = ROOT / "models" / "cards"
REPORTS = ROOT / "calibration" / "reports"
KEEP_MARK = "<!-- hand-written below: kept by `edge models report` -->"


def _session(backend: str, path: Path, threads: int, precision: str):
    """(run callable, how) — the product backend if it loads, else the build runner."""
    try:
        from edge.backends.registry import load_session
        s = load_session(backend, path, threads=threads, precision="int8" if precision.startswith("int8") else
                         precision)
        return s.run, f"edge.backends.{backend}"
    except Exception as e:  # noqa: BLE001 - fall back, and say so in the report
        log.warning("%s backend could not load %s (%s); timing with the build runner", backend, path.name, e)
        from models.build.runners import open_model
        return open_model(path, threads), "build runner"


def latencies(arts: list, x: dict, runs: int, threads: int) -> list[tuple[float, float, str]]:
    """Median and p95 ms per artefact, runs interleaved round-robin so machine load hits all of them alike."""
    sessions = [_session(a.backend, a.path, threads, a.precision) for a in arts]
    n = len(next(iter(x.values())))
    feeds = [{k: v[i:i + 1] for k, v in x.items()} for i in range(n)]
    for run, _ in sessions:
        for i in range(5):
            run(feeds[i % n])
    ts = [[] for _ in arts]
    for i in range(runs):
        for j, (run, _) in enumerate(sessions):
            t = time.perf_counter()
            run(feeds[i % n])
            ts[j].append((time.perf_counter() - t) * 1000)
    return [(float(np.median(t)), float(np.percentile(t, 95)), how) for t, (_, how) in zip(ts, sessions)]


def model_report(zoo, name: str, runs: int, threads: int) -> dict:
    m = zoo.manifest(name)
    d = zoo.model_dir(name)
    ins, _ = zoo.golden(name)
    acc = _load(d / "work" / "accuracy_int8.json")
    parity = _load(d / "work" / "verify_fp32.json")
    from calibration.accuracy import passes_gate
    rows = []
    arts = zoo.artifacts(name)
    for a, (ms, p95, how) in zip(arts, latencies(arts, ins, runs, threads)):
        bin_size = a.path.with_suffix(".bin").stat().st_size if a.format == "openvino" else 0
        row = {"backend": a.backend, "precision": a.precision, "file": a.path.name,
               "size_mb": round((a.size_bytes + bin_size) / 1e6, 2), "ms_median": round(ms, 2),
               "ms_p95": round(p95, 2), "timed_with": how}
        key = f"{a.backend}/{a.precision}"
        if key in acc:
            row["accuracy"] = acc[key]
            row["gate_pass"], row["gate"] = passes_gate(m["calibration"]["metric"], acc[key],
                                                        m["quantization"]["int8_gate"])
        elif a.path.name in parity:
            row["parity_max_abs_diff"] = {k: v["max_abs_diff"] for k, v in parity[a.path.name].items()}
        rows.append(row)
        log.info("%s %s/%s: %.2f ms", name, a.backend, a.precision, ms)
    return {"name": name, "version": m["version"], "task": m["task"], "metric": m["calibration"]["metric"],
            "threads": threads, "runs": runs, "heldout_samples": m["calibration"]["heldout_samples"],
            "calib_samples": m["calibration"]["calib_samples"], "gate": m["quantization"]["int8_gate"],
            "defaults": m["defaults"], "rows": rows}


def _load(p: Path) -> dict:
    return json.loads(p.read_text()) if p.is_file() else {}


def _acc_cells(metric: str, row: dict) -> str:
    a = row.get("accuracy")
    if a is None:
        pm = row.get("parity_max_abs_diff")
        ref = ("parity max abs diff " + ", ".join(f"{k} {v:.2g}" for k, v in pm.items())) if pm else \
            ("reference" if row["precision"] == "fp32" and row["backend"] == "tflite" else "")
        return f"{ref} | | | "
    if metric == "landmarks":
        return (f"drift {a['drift_mean']:.4f} (median {a['drift_median']:.4f}, p95 {a['drift_p95']:.3f}) | "
                f"seg IoU {a['seg_iou']:.2f} | {'pass' if row['gate_pass'] else 'FAIL'} | ")
    e = a.get("empty_scenes")
    empty = (f"; empty scenes: {e['int8_false_positives']} false positives vs FP32 {e['fp32_false_positives']} on "
             f"{e['n_frames']} frames, {e['new_false_positives']} new") if e else ""
    return (f"recall {a['recall']:.3f}, kp drift {a['kp_drift']:.4f}, score drift {a['score_drift']:.3f}{empty} | "
            f"{a['n_test_detections']} dets / {a['n_ref_detections']} ref | {'pass' if row['gate_pass'] else 'FAIL'} | ")


def markdown(r: dict, m: dict) -> str:
    kind = m["source"].get("kind", "wheel")  # npm (TF.js graph) and trained: INT8 is compared with the FP32 ONNX
    npm = kind == "npm"
    head = "accuracy vs TFLite FP32 (held-out)" if kind == "wheel" else "accuracy vs FP32 ONNX (held-out)"
    origin = (f"`{m['source']['package']}` (npm)" if npm else f"`{m['source']['wheel']}`" if kind == "wheel" else
              f"models/trained/{m['name']}/ (distilled from `{m['source'].get('teacher')}`)")
    lines = [f"# Model card: {r['name']} ({r['version']})", "",
             f"{m['description']}", "",
             f"- task: `{m['task']}`; source: `{m['source']['member']}` from "
             f"{origin} "
             f"(sha256 `{m['source']['sha256'][:16]}…`); licence: {m['source']['licence']}",
             "- input: " + ", ".join(f"`{i['name']}` {i['shape']} {i['dtype']} {i['layout']} range {i['range']}"
                                      for i in m["inputs"]),
             "- outputs: " + ", ".join(f"`{o['name']}` {o['shape']}" for o in m["outputs"]),
             f"- calibration: {r['calib_samples']} samples; held-out: {r['heldout_samples']} samples "
             "(calibration/DATASETS.md)", f"- INT8 gate: `{r['gate']}`", "",
             "## Default precision per backend", "", "| backend | default | reason |", "|---|---|---|"]
    lines += [f"| {b} | {d['precision']} | {d['reason']} |" for b, d in r["defaults"].items()]
    if m.get("bf16", {}).get("default_on_bf16_cpus"):  # edge.backends.auto.bf16_default
        lines.append(f"| openvino, on CPUs with native bf16 (AVX512-BF16, AMX) | bf16 | {m['bf16']['reason']} |")
    lines += ["", f"## Measured ({r['threads']} threads, median of {r['runs']} runs interleaved across "
              "artefacts, batch 1; `edge models report`)",
              "", f"| backend | precision | size MB | ms median | ms p95 | {head} | | gate | timed with |",
              "|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        lines.append(f"| {row['backend']} | {row['precision']} | {row['size_mb']} | {row['ms_median']} | "
                     f"{row['ms_p95']} | {_acc_cells(r['metric'], row)}{row['timed_with']} |")
    scope = m["quantization"].get("ignored_scope")
    mixed = (f"OpenVINO: the manifest's [quantization.ignored_scope]: {scope['note']}; other backends: the first "
             "convolutions + output heads FP32") if scope and scope.get("note") else \
        "first convolutions + output heads FP32"
    lines += ["", f"`int8` = mixed precision ({mixed}); `int8_full` = every "
              "convolution INT8 (report only). Latency on a shared 2-vCPU VM varies ±15% between runs: compare "
              "rows of one table only.", ""]
    if m["quantization"].get("notes"):
        lines += [f"Notes: {m['quantization']['notes']}", ""]
    return "\n".join(lines)


def run_report(args) -> int:
    from models.zoo import ModelNotBuilt, ModelZoo

    zoo = ModelZoo(args.cache)
    names = args.only or zoo.names()
    for n in names:
        try:
            r = model_report(zoo, n, args.runs, args.threads)
        except ModelNotBuilt as e:
            print(f"{n}: {e}")
            return 1
        md = markdown(r, zoo.manifest(n))
        print(md)
        if not args.no_write:
            CARDS.mkdir(parents=True, exist_ok=True)
            REPORTS.mkdir(parents=True, exist_ok=True)
            card = CARDS / f"{n}.md"
            old = card.read_text() if card.is_file() else ""
            if KEEP_MARK in old:  # a hand-written section (candidate evaluation, ...) below the marker stays
                md = md.rstrip("\n") + "\n\n" + old[old.index(KEEP_MARK):]
            card.write_text(md)
            (REPORTS / f"{n}.json").write_text(json.dumps(r, indent=1, sort_keys=True) + "\n")
    return 0
