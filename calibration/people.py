"""People composites with known boxes, for person-detector calibration sets and evaluation (package photos only).

Person cut-outs: the people the BlazePose pipeline finds in the package photos (calibration.datasets.find_people),
cut out with the landmark model's segmentation mask. They are pasted at 30-420 px tall into 640x480 frames over
person-free backgrounds (skimage scenes, procedural shop shelves), partly occluded by shelf-like bars and by
each other; the ground-truth box is the bounding box of the person's visible mask pixels. Real photos (bus,
zidane, t1) carry hand-checked boxes and are also shrunk into backgrounds so their people become 35-120 px tall.

A person less than 35 % visible, or cut to a sliver, is marked `ignore`. Everything is seeded and deterministic.
`sets()` turns frames into the build's calib/heldout/golden npz for a letterboxed detector; `agreement()` is the
`people_detector` INT8-vs-FP32 metric.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from calibration.matching import match_one_to_one
from calibration.photos import NEGATIVES, load_photo, staged_path

log = logging.getLogger(__name__)

W, H = 640, 480
SEED = 20261129
# hand-checked boxes (x1, y1, x2, y2, image px) on the package photos; `True` = partly outside the frame
REAL_BOXES: dict[str, list[tuple[tuple[int, int, int, int], bool]]] = {
    "bus": [((50, 398, 245, 902), False), ((222, 405, 345, 860), False), ((668, 395, 810, 880), True),
            ((0, 550, 78, 875), True)],
    "zidane": [((125, 200, 1150, 720), True), ((750, 42, 1135, 720), True)],
    "t1": [((0, 233, 300, 886), True), ((260, 100, 470, 670), False), ((335, 218, 745, 645), False),
           ((640, 290, 925, 640), False), ((875, 0, 1280, 660), True), ((985, 235, 1280, 700), True)],
}
BUCKETS = (("small", 0, 80), ("medium", 80, 160), ("large", 160, 10_000))


def bucket_of(height: float) -> str:
    for name, lo, hi in BUCKETS:
        if lo <= height < hi:
            return name
    return BUCKETS[-1][0]


@dataclass
class Cutout:
    photo: str
    rgba: np.ndarray  # (h, w, 4) uint8 BGR + alpha, cropped to the mask's bounding box
    full_body: bool


@dataclass
class Frame:
    image: np.ndarray  # (480, 640, 3) BGR uint8
    boxes: np.ndarray  # (N, 4) x1 y1 x2 y2 float
    ignore: np.ndarray  # (N,) bool
    kind: str  # "composite" | "negative" | "real" | "real_small"
    meta: dict = field(default_factory=dict)


def person_cutouts(cache: Path, det, lmk) -> list[Cutout]:
    """People the BlazePose pipeline finds in the photos (calibration.datasets.find_people), cut out with the
    landmark model's segmentation mask (largest blob under the ROI centre, feathered alpha)."""
    from calibration.datasets import find_people
    from edge.pose import roi as roimod

    out = []
    for p in find_people(cache, det, lmk):
        img = load_photo(p.photo, cache)
        h, w = img.shape[:2]
        x, aff = roimod.crop(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), p.roi, 256)
        seg = lmk({"input_1": x})["Identity_2"].reshape(256, 256).astype(np.float32)
        prob = 1.0 / (1.0 + np.exp(-np.clip(seg, -30, 30)))
        mask = cv2.warpAffine(prob, aff, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
        n, lab, stats, _ = cv2.connectedComponentsWithStats((mask > 0.5).astype(np.uint8))
        if n < 2:
            continue
        k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
        keep = cv2.dilate((lab == k).astype(np.uint8), np.ones((5, 5), np.uint8))
        alpha = (mask * keep).clip(0, 1)
        ys, xs = np.nonzero(alpha > 0.5)
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        if (y1 - y0) < 0.5 * (x1 - x0):  # a stray limb, not a person (a neighbour's pointing arm)
            continue
        rgba = np.dstack([img[y0:y1, x0:x1], np.rint(alpha[y0:y1, x0:x1] * 255).astype(np.uint8)])
        full = (y1 - y0) > 2.2 * (x1 - x0)
        out.append(Cutout(p.photo, rgba, bool(full)))
    log.info("cut out %d people (%d full body)", len(out), sum(c.full_body for c in out))
    return out


def shelf_background(rng: np.random.Generator) -> np.ndarray:
    """A procedural shop aisle: floor, shelf boards and rows of coloured product boxes."""
    img = np.zeros((H, W, 3), np.uint8)
    wall = rng.integers(150, 235, 3)
    img[:] = wall
    floor_y = int(rng.uniform(0.6, 0.8) * H)
    img[floor_y:] = rng.integers(80, 200, 3)
    x = 0
    while x < W:
        unit = int(rng.integers(120, 260))
        n_shelves = int(rng.integers(3, 6))
        top = int(rng.uniform(0.05, 0.25) * H)
        for s in range(n_shelves):
            y = top + (floor_y - top) * s // n_shelves
            y2 = top + (floor_y - top) * (s + 1) // n_shelves
            px = x
            while px < x + unit:
                pw = int(rng.integers(8, 30))
                ph = int(rng.uniform(0.4, 0.9) * (y2 - y))
                cv2.rectangle(img, (px, y2 - ph), (min(px + pw, x + unit) - 1, y2 - 4),
                              tuple(int(c) for c in rng.integers(0, 256, 3)), -1)
                px += pw + int(rng.integers(0, 4))
            cv2.rectangle(img, (x, y2 - 4), (x + unit, y2), tuple(int(c) for c in rng.integers(40, 120, 3)), -1)
        x += unit + int(rng.integers(0, 30))
    noise = rng.normal(0, 4, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def scene_background(rng: np.random.Generator, scenes: list[np.ndarray]) -> np.ndarray:
    img = scenes[int(rng.integers(len(scenes)))]
    h, w = img.shape[:2]
    s = max(W / w, H / h) * rng.uniform(1.0, 1.6)
    big = cv2.resize(img, (int(np.ceil(w * s)), int(np.ceil(h * s))), interpolation=cv2.INTER_LINEAR)
    y0 = int(rng.integers(0, big.shape[0] - H + 1))
    x0 = int(rng.integers(0, big.shape[1] - W + 1))
    out = big[y0:y0 + H, x0:x0 + W]
    return out[:, ::-1].copy() if rng.random() < 0.5 else out.copy()


def _paste(canvas: np.ndarray, owner: np.ndarray, rgba: np.ndarray, x: int, y: int, idx: int) -> None:
    """Alpha-blend rgba at (x, y); `owner` records, per pixel, which person is visible on top (-1: none)."""
    h, w = rgba.shape[:2]
    cx0, cy0, cx1, cy1 = max(x, 0), max(y, 0), min(x + w, W), min(y + h, H)
    if cx0 >= cx1 or cy0 >= cy1:
        return
    src = rgba[cy0 - y:cy1 - y, cx0 - x:cx1 - x]
    a = src[..., 3:4].astype(np.float32) / 255.0
    roi = canvas[cy0:cy1, cx0:cx1]
    roi[:] = np.rint(src[..., :3] * a + roi * (1 - a)).astype(np.uint8)
    owner[cy0:cy1, cx0:cx1][src[..., 3] > 127] = idx


def _photometric(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = img.astype(np.float32)
    x = (x - 128) * rng.uniform(0.75, 1.25) + 128 + rng.uniform(-25, 25)
    x *= rng.uniform(0.9, 1.1, 3).astype(np.float32)
    if rng.random() < 0.3:
        x = cv2.GaussianBlur(x, (0, 0), rng.uniform(0.4, 1.0))
    x += rng.normal(0, rng.uniform(1, 4), x.shape).astype(np.float32)
    out = np.clip(np.rint(x), 0, 255).astype(np.uint8)
    if rng.random() < 0.5:
        _, enc = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(50, 91))])
        out = cv2.imdecode(enc, cv2.IMREAD_COLOR)
    return out


def _boxes_from_owner(owner: np.ndarray, full_boxes: list, full_area: list) -> tuple[np.ndarray, np.ndarray]:
    boxes, ignore = [], []
    for i, (fb, area) in enumerate(zip(full_boxes, full_area)):
        ys, xs = np.nonzero(owner == i)
        if len(xs) == 0:
            continue
        b = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        vis = len(xs) / max(area, 1)
        boxes.append(b)
        ignore.append(vis < 0.35 or (b[3] - b[1]) < 20)
    return np.array(boxes, np.float64).reshape(-1, 4), np.array(ignore, bool)


def composite_frame(rng: np.random.Generator, cutouts: list[Cutout], scenes: list[np.ndarray],
                    small_bias: bool = False) -> Frame:
    canvas = shelf_background(rng) if rng.random() < 0.5 else scene_background(rng, scenes)
    owner = np.full((H, W), -1, np.int32)
    n = int(rng.integers(1, 7))
    placed = []
    for i in range(n):
        c = cutouts[int(rng.integers(len(cutouts)))]
        lo, hi = (30, 90) if small_bias or rng.random() < 0.4 else (80, 420)
        if not c.full_body:
            hi = min(hi, 300)
        th = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        s = th / c.rgba.shape[0]
        rgba = cv2.resize(c.rgba, (max(2, int(round(c.rgba.shape[1] * s))), max(2, int(round(th)))),
                          interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        if rng.random() < 0.5:
            rgba = rgba[:, ::-1].copy()
        h, w = rgba.shape[:2]
        # feet on a plausible floor line: small (far) people stand higher in the frame
        foot = int(np.clip(rng.normal(H * (0.55 + 0.4 * min(th / 400, 1)), 40), h * 0.6, H + h * 0.15))
        x = int(rng.integers(-w // 4, W - 3 * w // 4))
        placed.append((foot, i, rgba, x, foot - h, c.photo))
    placed.sort(key=lambda t: t[0])  # farther (higher feet) first: nearer people occlude them
    full_boxes, full_area, photos = [], [], []
    for j, (_, _, rgba, x, y, photo) in enumerate(placed):
        _paste(canvas, owner, rgba, x, y, j)
        full_boxes.append((x, y, x + rgba.shape[1], y + rgba.shape[0]))
        full_area.append(int((rgba[..., 3] > 127).sum()))
        photos.append(photo)
    occluders = int(rng.integers(0, 3))
    for _ in range(occluders):  # shelf ends, counters, trolleys in front
        ow, oh = int(rng.integers(40, 260)), int(rng.integers(20, 160))
        ox, oy = int(rng.integers(0, W - 20)), int(rng.integers(H // 3, H - 10))
        col = tuple(int(v) for v in rng.integers(30, 230, 3))
        cv2.rectangle(canvas, (ox, oy), (ox + ow, oy + oh), col, -1)
        owner[oy:oy + oh, ox:ox + ow] = -1
    boxes, ignore = _boxes_from_owner(owner, full_boxes, full_area)
    return Frame(_photometric(canvas, rng), boxes, ignore, "composite",
                 {"people": len(placed), "occluders": occluders, "photos": photos})


def real_frames(cache: Path, rng: np.random.Generator, scenes: list[np.ndarray]) -> list[Frame]:
    """The three hand-checked photos letterboxed to 640x480, and each shrunk into a background at 3 scales."""
    out = []
    for name, gt in REAL_BOXES.items():
        img = load_photo(name, cache)
        h, w = img.shape[:2]
        boxes = np.array([b for b, _ in gt], np.float64)
        cut = np.array([c for _, c in gt], bool)
        s = min(W / w, H / h)
        px, py = (W - w * s) / 2, (H - h * s) / 2
        m = np.array([[s, 0, px], [0, s, py]])
        canvas = cv2.warpAffine(img, m, (W, H), flags=cv2.INTER_AREA, borderValue=(114, 114, 114))
        out.append(Frame(canvas, boxes * s + [px, py, px, py], np.zeros(len(boxes), bool), "real",
                         {"photo": name, "scale": s}))
        tallest = (boxes[:, 3] - boxes[:, 1]).max()
        for target in (45, 70, 110):  # tallest person's height in the shrunk photo
            s2 = target / tallest
            small = cv2.resize(img, (max(1, int(w * s2)), max(1, int(h * s2))), interpolation=cv2.INTER_AREA)
            bg = shelf_background(rng) if rng.random() < 0.5 else scene_background(rng, scenes)
            sh, sw = small.shape[:2]
            x0 = int(rng.integers(0, max(1, W - sw)))
            y0 = int(rng.integers(0, max(1, H - sh)))
            bg[y0:y0 + sh, x0:x0 + sw] = small[:H - y0, :W - x0]
            b = boxes * [sw / w, sh / h, sw / w, sh / h] + [x0, y0, x0, y0]
            # a person cut by the photo's own border stays a valid target; tiny slivers are ignored
            ign = ((b[:, 2] - b[:, 0]) < 8) | ((b[:, 3] - b[:, 1]) < 20)
            out.append(Frame(_photometric(bg, rng), b, ign | (cut & ((b[:, 3] - b[:, 1]) < 30)), "real_small",
                             {"photo": name, "tallest_px": target}))
    return out


def load_scenes(cache: Path) -> list[np.ndarray]:
    """The person-free skimage scenes (BGR)."""
    out = []
    for f in (f for fs in NEGATIVES.values() for f in fs):
        img = cv2.imread(str(staged_path(f, cache)), cv2.IMREAD_COLOR)
        if img is None:
            raise OSError(f"cannot decode {f}")
        out.append(img)
    return out


def frames(cache: Path, cutouts: list[Cutout], n_composite: int, n_negative: int, seed: int,
           real: bool = True) -> list[Frame]:
    """Composites (every third biased to small people), negatives and (optionally) the real photos."""
    rng = np.random.default_rng(seed)
    scenes = load_scenes(cache)
    out = [composite_frame(rng, cutouts, scenes, small_bias=(i % 3 == 0)) for i in range(n_composite)]
    for _ in range(n_negative):
        bg = shelf_background(rng) if rng.random() < 0.5 else scene_background(rng, scenes)
        out.append(Frame(_photometric(bg, rng), np.zeros((0, 4)), np.zeros(0, bool), "negative"))
    if real:
        out += real_frames(cache, rng, scenes)
    return out


def sets(cache: Path, det, lmk, cal: dict, channels: str = "bgr") -> dict[str, tuple[np.ndarray, list]]:
    """calib / heldout / golden uint8 (N, S, S, 3) letterboxed frames for a person detector of input size S.

    calib: composites + negatives (seed SEED + 1); heldout: another seed (SEED + 2) plus the real photos shrunk;
    golden: the 3 hand-checked photos whole, 3 of them shrunk, a composite and a negative. The evaluation set of
    devtools/detector_eval.py uses SEED itself."""
    from edge.people.letterbox import letterbox_u8

    size = cal["input_size"]
    cut = person_cutouts(cache, det, lmk)

    def stack(fs: list[Frame]) -> tuple[np.ndarray, list]:
        xs = []
        for f in fs:
            img = f.image if channels == "bgr" else cv2.cvtColor(f.image, cv2.COLOR_BGR2RGB)
            xs.append(letterbox_u8(img, size)[0])
        meta = [{"kind": f.kind, "boxes": f.boxes.round(1).tolist(), "ignore": f.ignore.tolist(), **f.meta}
                for f in fs]
        return np.stack(xs), meta

    n_cal, n_held = cal["calib_samples"], cal["heldout_samples"]
    calib = frames(cache, cut, n_cal - n_cal // 6, n_cal // 6, SEED + 1, real=False)
    held = frames(cache, cut, n_held - n_held // 6 - 12, n_held // 6, SEED + 2, real=True)
    real = [f for f in held if f.kind.startswith("real")]
    golden = ([f for f in real if f.kind == "real"] + [f for f in real if f.kind == "real_small"][::3] +
              [held[0], next(f for f in held if f.kind == "negative")])[:cal["golden_samples"]]
    return {"calib": stack(calib), "heldout": stack(held), "golden": stack(golden)}


def build(cache: Path, name: str, cal: dict, det, lmk, out_dir: Path, channels: str = "bgr") -> dict[str, Path]:
    """Write calib/heldout/golden npz + provenance.json of model `name`; returns their paths."""
    from calibration.datasets import provenance_sources

    cv2.setNumThreads(1)  # keeps resampling bit-exact between runs
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {}
    s = sets(cache, det, lmk, cal, channels)
    for split, (x, _) in s.items():
        paths[split] = out_dir / f"{split}.npz"
        np.savez_compressed(paths[split], x=x)
    prov = {"model": name, "tool": "calibration/people.py", "seed": SEED, "norm": cal["norm"], "channels": channels,
            "input_size": cal["input_size"], "sources": provenance_sources(cache),
            "sets": {k: {"n": int(len(x)), "samples": meta} for k, (x, meta) in s.items()}}
    (out_dir / "provenance.json").write_text(json.dumps(prov, indent=1))
    paths["provenance"] = out_dir / "provenance.json"
    log.info("calibration sets for %s: %s", name, {k: len(x) for k, (x, _) in s.items()})
    return paths


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


def agreement(ref: dict[str, np.ndarray], test: dict[str, np.ndarray], detect, size: int) -> dict:
    """INT8-vs-FP32 metric `people_detector`: recall of the reference's detections (IoU > 0.5), box corner drift
    / input size (reported as `kp_drift`, as the other detectors' keypoint drift), score drift.

    detect(outputs of one sample) -> (boxes (K, 4) model px, scores (K,)) after NMS."""
    n = len(next(iter(ref.values())))
    hits, drift, sd, n_test = [], [], [], 0
    for i in range(n):
        rb, rs = detect({k: v[i:i + 1] for k, v in ref.items()})
        tb, ts = detect({k: v[i:i + 1] for k, v in test.items()})
        n_test += len(tb)
        if not len(rb):
            continue
        if not len(tb):
            hits += [0] * len(rb)
            continue
        for j, k in enumerate(match_one_to_one(_iou(rb, tb))):
            hits.append(int(k >= 0))
            if k >= 0:
                drift.append(float(np.abs(rb[j] - tb[k]).mean() / size))
                sd.append(abs(float(rs[j]) - float(ts[k])))
    return {"n": int(n), "n_ref_detections": len(hits), "n_test_detections": n_test,
            "recall": float(np.mean(hits)) if hits else None, "kp_drift": float(np.mean(drift)) if drift else None,
            "score_drift": float(np.mean(sd)) if sd else None}
