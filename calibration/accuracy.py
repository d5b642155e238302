"""FP32-vs-INT8 agreement metrics on stacked model outputs (axis 0 = sample).

Landmarks: distance of the 33 body landmarks normalized by the 256 crop (= by ROI size), over landmarks the
reference sees (visibility > 0.5) in crops it accepts (pose flag > 0.5); segmentation IoU.
Detectors: decode both (anchors, sigmoid, weighted NMS), match reference detections one-to-one by IoU > 0.5: recall,
keypoint drift / input size, score drift.
Person detectors, empty scenes: detections above the runtime score threshold on person-free frames (the split's
negative photos + procedural shop aisles), FP32 vs INT8; an INT8 detection no FP32 detection overlaps is new.
"""
from __future__ import annotations

import numpy as np

from pathlib import Path

from calibration.matching import match_one_to_one
from edge.hands.roi import palm_anchors
from edge.pose.anchors import ssd_anchors
from edge.pose.detection import weighted_nms
from edge.privacy.faces import face_anchors  # the runtime's (snapshot anonymisation), one definition


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x.astype(np.float64), -100, 100)))


def landmark_drift(ref: dict[str, np.ndarray], test: dict[str, np.ndarray]) -> dict:
    a = ref["Identity"].reshape(-1, 39, 5)
    b = test["Identity"].reshape(-1, 39, 5)
    d = np.linalg.norm(a[:, :33, :2] - b[:, :33, :2], axis=2) / 256.0
    vis = _sigmoid(a[:, :33, 3]) > 0.5
    ok = ref["Identity_1"].reshape(-1) > 0.5
    sel = vis & ok[:, None]
    seg_a, seg_b = ref["Identity_2"] > 0, test["Identity_2"] > 0
    inter = (seg_a & seg_b).sum((1, 2, 3))
    union = (seg_a | seg_b).sum((1, 2, 3))
    return {
        "n": int(len(d)), "n_flag_ok": int(ok.sum()),
        "drift_mean": float(d[sel].mean()) if sel.any() else None,
        "drift_median": float(np.median(d[sel])) if sel.any() else None,
        "drift_p95": float(np.percentile(d[sel], 95)) if sel.any() else None,
        "drift_all_mean": float(d.mean()),
        "flag_absdiff_max": float(np.abs(ref["Identity_1"] - test["Identity_1"]).max()),
        "world_absdiff_mean_m": float(np.abs(ref["Identity_4"] - test["Identity_4"]).mean()),
        "seg_iou": float(np.mean(np.where(union > 0, inter / np.maximum(union, 1), 1.0))),
    }


def anchors_for(metric: str, size: int) -> np.ndarray:
    """The SSD anchors the runtime decodes this detector's outputs with; ValueError for a metric without them."""
    if metric == "pose_detector":
        return ssd_anchors(size)
    if metric == "face_detector":
        return face_anchors(size)
    if metric == "palm_detector":
        return palm_anchors(size)
    raise ValueError(f"no SSD anchors for metric {metric!r} (pose_detector, face_detector or palm_detector)")


def decode(raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, size: int,
           threshold: float = 0.5) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """One sample's raw outputs → [(score, box x1y1x2y2, keypoints (K, 2))] in model px."""
    scores = _sigmoid(raw_scores.reshape(-1))
    keep = np.nonzero(scores >= threshold)[0]
    if len(keep) == 0:
        return []
    c = raw_boxes.shape[-1]
    r = raw_boxes.reshape(-1, c)[keep] / size
    a = anchors[keep]
    cx, cy, w, h = r[:, 0] + a[:, 0], r[:, 1] + a[:, 1], r[:, 2], r[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
    kps = r[:, 4:].reshape(len(keep), -1, 2) + a[:, None, :]
    return [(s, b * size, k * size) for s, b, k in weighted_nms(boxes, kps, scores[keep], 0.3)]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def detector_agreement(ref: dict[str, np.ndarray], test: dict[str, np.ndarray], metric: str, size: int,
                       threshold: float = 0.5) -> dict:
    anchors = anchors_for(metric, size)
    hits, kp, sd, n_test = [], [], [], 0
    for i in range(ref["Identity"].shape[0]):
        da = decode(ref["Identity"][i], ref["Identity_1"][i], anchors, size, threshold)
        db = decode(test["Identity"][i], test["Identity_1"][i], anchors, size, threshold)
        n_test += len(db)
        match = match_one_to_one(np.array([[_iou(a[1], b[1]) for b in db] for a in da]).reshape(len(da), len(db)))
        for (s, _, k), j in zip(da, match):
            hits.append(int(j >= 0))
            if j >= 0:
                kp.append(float(np.linalg.norm(k - db[j][2], axis=1).mean() / size))
                sd.append(abs(s - db[j][0]))
    pa, pb = _sigmoid(ref["Identity_1"]), _sigmoid(test["Identity_1"])
    return {"n": int(ref["Identity"].shape[0]), "n_ref_detections": len(hits), "n_test_detections": n_test,
            "recall": float(np.mean(hits)) if hits else None,
            "kp_drift": float(np.mean(kp)) if kp else None,
            "score_drift": float(np.mean(sd)) if sd else None,
            "max_anchor_prob_diff": float(np.abs(pa - pb).max())}


def compare(metric: str, size: int, ref: dict[str, np.ndarray], test: dict[str, np.ndarray]) -> dict:
    if metric == "landmarks":
        return landmark_drift(ref, test)
    return detector_agreement(ref, test, metric, size)


# runtime score threshold of each person detector (edge.pose.config.PoseConfig.detection_threshold, the
# `[people] threshold` default of edge.app.config): what a false positive on an empty scene costs at run time
EMPTY_SCENE_THRESHOLD = {"pose_detector": 0.5, "people_detector": 0.3}
EMPTY_SCENE_SEED = {"calib": 20261204, "heldout": 20261205}  # no calibration / held-out set uses these


def empty_scenes(cache: Path, split: str, metric: str, size: int, windows: int = 7, shelves: int = 48) -> np.ndarray:
    """Person-free frames (uint8 NHWC) of one split, letterboxed as the model's calibration sets are (pose
    detector: RGB, calibration.datasets; people detector: BGR, edge.people.letterbox): each negative photo of the
    split (calibration.photos.NEGATIVES) whole and in `windows` random windows (half flipped), plus `shelves`
    procedural shop aisles (calibration.people.shelf_background) of the split's own seed. Deterministic."""
    import cv2

    from calibration.augment import random_window
    from calibration.datasets import letterbox_u8, load_negative
    from calibration.people import shelf_background
    from calibration.photos import NEGATIVES

    if split not in EMPTY_SCENE_SEED:
        raise ValueError(f"empty scenes: unknown split {split!r} (calib or heldout)")
    rng = np.random.default_rng(EMPTY_SCENE_SEED[split])
    frames = []
    for f in NEGATIVES[split]:
        img = load_negative(f, cache)  # BGR
        frames.append(img)
        for _ in range(windows):
            (x0, y0, x1, y1), _ = random_window(img.shape, rng, full_p=0.0)
            win = img[y0:y1, x0:x1]
            frames.append(np.ascontiguousarray(win[:, ::-1] if rng.random() < 0.5 else win))
    frames += [shelf_background(rng) for _ in range(shelves)]
    if metric == "people_detector":
        from edge.people.letterbox import letterbox_u8 as people_letterbox

        return np.stack([people_letterbox(f, size)[0] for f in frames])
    return np.stack([letterbox_u8(cv2.cvtColor(f, cv2.COLOR_BGR2RGB), size) for f in frames])


def ssd_detect(metric: str, size: int, threshold: float):
    """outputs of one sample -> (boxes (K, 4) model px, scores (K,)) after weighted NMS (SSD detectors)."""
    anchors = anchors_for(metric, size)

    def detect(out: dict[str, np.ndarray]):
        d = decode(out["Identity"][0], out["Identity_1"][0], anchors, size, threshold)
        return (np.array([b for _, b, _ in d]).reshape(-1, 4), np.array([s for s, _, _ in d]))
    return detect


def empty_scene_check(ref: dict[str, np.ndarray], test: dict[str, np.ndarray], detect) -> dict:
    """False positives of FP32 (`ref`) and INT8 (`test`) outputs of person-free frames. detect(outputs of one
    sample) -> (boxes, scores) at the runtime threshold. `new_false_positives`: INT8 detections that no FP32
    detection of the same frame overlaps (IoU > 0.5); the gate wants none."""
    n = len(next(iter(ref.values())))
    fp_ref = fp_test = new = 0
    frames_new, worst = [], 0.0
    for i in range(n):
        rb, _ = detect({k: v[i:i + 1] for k, v in ref.items()})
        tb, ts = detect({k: v[i:i + 1] for k, v in test.items()})
        fp_ref, fp_test = fp_ref + len(rb), fp_test + len(tb)
        fresh = [j for j in range(len(tb)) if not any(_iou(tb[j], b) > 0.5 for b in rb)]
        if fresh:
            new += len(fresh)
            frames_new.append(i)
            worst = max(worst, max(float(ts[j]) for j in fresh))
    return {"n_frames": int(n), "fp32_false_positives": fp_ref, "int8_false_positives": fp_test,
            "new_false_positives": new, "frames_with_new": frames_new, "new_max_score": round(worst, 4)}


def passes_gate(metric: str, result: dict, gate: dict) -> tuple[bool, str]:
    """Does an INT8 variant hold the model's accuracy gate (manifest quantization.int8_gate)? Detectors with an
    empty-scene check must also add at most `new_false_positives_max` (default 0) false positives."""
    if metric == "landmarks":
        d = result["drift_mean"]
        if d is None:  # the reference sees no landmark in any crop it accepts: nothing was measured
            return False, f"no landmark drift: no crop with a visible reference landmark (drift_max {gate['drift_max']})"
        ok = d <= gate["drift_max"]
        return ok, f"landmark drift {d:.4f} of the 256 crop {'<=' if ok else '>'} {gate['drift_max']}"
    r, k, s = result["recall"], result["kp_drift"], result["score_drift"]
    if r is None:
        return False, "no reference detections in the held-out set"
    # no matched detection (recall 0): no drift was measured, and the recall alone fails the gate
    ok = k is not None and r >= gate["recall_min"] and k <= gate["kp_drift_max"] and s <= gate["score_drift_max"]
    fmt = lambda v, f: "none matched" if v is None else format(v, f)  # noqa: E731
    why = (f"recall {r:.3f} (min {gate['recall_min']}), kp drift {fmt(k, '.4f')} (max {gate['kp_drift_max']}), "
           f"score drift {fmt(s, '.3f')} (max {gate['score_drift_max']})")
    e = result.get("empty_scenes")
    if e is not None:
        limit = gate.get("new_false_positives_max", 0)
        ok = ok and e["new_false_positives"] <= limit
        why += (f", empty scenes: {e['new_false_positives']} new false positives (max {limit}; FP32 "
                f"{e['fp32_false_positives']}, INT8 {e['int8_false_positives']} on {e['n_frames']} frames)")
    return ok, why
