"""Calibration, held-out and golden sets built from photos shipped in packages (seeded, deterministic).

Landmark model: rotated ROI crops of the people the detector finds in the photos (tiled windows + one
tracking-refinement pass), augmented. Hand landmark models: crops of those people's hands, the ROI from their pose
wrist, index and pinky (edge.hands.roi.roi_from_pose). Detectors: random letterboxed windows of the photos plus
person-free scenes (negatives). Stored as uint8 NHWC npz (`x`) under `<cache>/calibration/<model>/`, with a provenance JSON.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from calibration.augment import jitter_roi, photometric, random_window
from calibration.photos import NEGATIVES, PHOTOS, SKIMAGE, load_photo, staged_path
from edge.hands.roi import POSE_HAND, roi_from_pose
from edge.pose import detection, roi as roimod
from edge.pose.types import Roi
from edge.core.files import sha256_file

log = logging.getLogger(__name__)

# sub-windows (fractions x0, y0, x1, y1) for finding small people in large photos
TILES = ((0, 0, 1, 1), *((x, y, x + 0.6, y + 0.6) for x in (0, 0.2, 0.4) for y in (0, 0.2, 0.4)),
         *((x, 0, x + 0.5, 1) for x in (0, 0.25, 0.5)))
SEED = 20261128


@dataclass
class Person:
    photo: str
    split: str
    roi: Roi
    det_score: float
    flag: float


def load_negative(file: str, cache: Path) -> np.ndarray:
    p = staged_path(file, cache)
    img = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if img is None:
        raise OSError(f"cannot decode {p}")
    return img


def rgb(name: str, cache: Path) -> np.ndarray:
    return cv2.cvtColor(load_photo(name, cache), cv2.COLOR_BGR2RGB)


def letterbox_u8(img_rgb: np.ndarray, size: int) -> np.ndarray:
    """uint8 version of the runtime letterbox (edge.pose.detection.letterbox), exactly invertible."""
    x, _ = detection.letterbox(img_rgb, size)
    return np.rint((x[0] + 1.0) * 127.5).astype(np.uint8)


def crop_u8(img_rgb: np.ndarray, r: Roi, size: int = 256) -> np.ndarray:
    x, _ = roimod.crop(img_rgb, r, size)
    return np.rint(x[0] * 255.0).astype(np.uint8)


def find_people(cache: Path, det, lmk, photos: list[tuple[str, str, np.ndarray]] | None = None) -> list[Person]:
    """People with pose flag > 0.5: tiled detection, ROI from keypoints, one refinement pass. Searches PHOTOS, or
    `photos` given as (name, split, RGB image)."""
    people: list[Person] = []
    for name, split, img in ((p.name, p.split, None) for p in PHOTOS) if photos is None else photos:
        img = rgb(name, cache) if img is None else img
        h, w = img.shape[:2]
        dets = []
        for a, b, c, d in TILES:
            x0, y0, x1, y1 = int(a * w), int(b * h), int(min(c, 1) * w), int(min(d, 1) * h)
            x, lb = detection.letterbox(img[y0:y1, x0:x1], 224)
            o = det({"input_1": x})
            for dd in detection.decode(o["Identity"], o["Identity_1"], lb):
                dd.box += [x0, y0, x0, y0]
                dd.keypoints += [x0, y0]
                dets.append(dd)
        dets.sort(key=lambda dd: -dd.score)
        kept: list[Person] = []
        for dd in dets:
            r = roimod.roi_from_detection(dd.keypoints)
            for _ in range(2):  # detection ROI, then the tracking ROI from auxiliary landmarks 33/34
                x, aff = roimod.crop(img, r, 256)
                o = lmk({"input_1": x})
                flag = float(o["Identity_1"].reshape(-1)[0])
                aux = o["Identity"].reshape(39, 5)[33:35, :2]
                r_next = roimod.roi_from_aux(roimod.to_image(aux, aff))
                if flag <= 0.5:
                    break
                r_prev, r = r, r_next
            if flag <= 0.5:
                continue
            r = r_prev  # the last ROI that was actually scored
            if any(np.hypot(r.cx - k.roi.cx, r.cy - k.roi.cy) < 0.15 * max(r.size, k.roi.size) for k in kept):
                continue
            kept.append(Person(name, split, r, float(dd.score), flag))
        log.info("photo %s: %d people", name, len(kept))
        people.extend(kept)
    return people


def landmark_sets(cache: Path, people: list[Person], cal: dict) -> dict[str, tuple[np.ndarray, list]]:
    imgs = {p.photo: rgb(p.photo, cache) for p in people}
    calib_people = [p for p in people if p.split == "calib"]
    held_people = [p for p in people if p.split == "heldout"]
    if not calib_people or not held_people:
        raise RuntimeError(f"calibration needs people in both splits; found {len(calib_people)} calib, "
                           f"{len(held_people)} held-out")

    def make(pool_spec: list[tuple[list[Person], int]], seed: int):
        rng = np.random.default_rng(seed)
        xs, meta = [], []
        for pool, n in pool_spec:
            for i in range(n):
                p = pool[i % len(pool)]
                r, geo = jitter_roi(p.roi, rng)
                patch = crop_u8(imgs[p.photo], r)
                if rng.random() < 0.5:
                    patch = patch[:, ::-1].copy()
                    geo["flip"] = True
                patch, photo = photometric(patch, rng)
                xs.append(patch)
                meta.append({"photo": p.photo, "person": people.index(p), **geo, **photo})
        return np.stack(xs), meta

    n_held = cal["heldout_samples"]
    golden_people = (held_people + calib_people)[:cal["golden_samples"]]
    golden = [crop_u8(imgs[p.photo], p.roi) for p in golden_people]
    return {"calib": make([(calib_people, cal["calib_samples"])], SEED),
            "heldout": make([(held_people, n_held * 6 // 10), (calib_people, n_held - n_held * 6 // 10)], SEED + 1),
            "golden": (np.stack(golden), [{"photo": p.photo, "person": people.index(p), "augmentation": None}
                                          for p in golden_people])}


@dataclass
class HandRoi:
    photo: str
    split: str
    person: int  # index into the people list
    side: str
    roi: Roi
    visibility: float  # the least visible of the pose wrist, index and pinky


def find_hands(cache: Path, people: list[Person], lmk, min_visibility: float = 0.3) -> list[HandRoi]:
    """Hand ROIs of the people found: pose landmarks on each person's ROI, then the hand ROI from the wrist,
    index and pinky of each side seen well enough; most visible first."""
    imgs: dict[str, np.ndarray] = {}
    out = []
    for i, p in enumerate(people):
        img = imgs.setdefault(p.photo, rgb(p.photo, cache))
        x, aff = roimod.crop(img, p.roi, 256)
        raw = lmk({"input_1": x})["Identity"].reshape(39, 5)
        lm = np.zeros((33, 5))
        lm[:, :2] = roimod.to_image(raw[:33, :2], aff)
        lm[:, 3] = detection.sigmoid(raw[:33, 3])
        for side, idx in POSE_HAND.items():
            vis = float(lm[list(idx), 3].min())
            r = roi_from_pose(lm, side)
            if vis >= min_visibility and r.size >= 16:
                out.append(HandRoi(p.photo, p.split, i, side, r, vis))
    out.sort(key=lambda h: -h.visibility)
    log.info("hands: %d hand ROIs in %d people", len(out), len(people))
    return out


def hand_sets(cache: Path, hands: list[HandRoi], cal: dict) -> dict[str, tuple[np.ndarray, list]]:
    """Hand crops (input_size) with ROI jitter, flips and shop-lighting changes; golden: the unaugmented crops."""
    size = cal["input_size"]
    imgs = {h.photo: rgb(h.photo, cache) for h in hands}
    calib = [h for h in hands if h.split == "calib"]
    held = [h for h in hands if h.split == "heldout"]
    if not hands:
        raise RuntimeError("hand calibration sets need people with a visible wrist in the photos; found none")
    for pool, which in ((calib, "calibration"), (held, "held-out")):
        if not pool:  # the other split's hands would stand in for it: held-out accuracy measured on calib images
            raise RuntimeError(f"hand calibration sets: no hand in the {which} photos (found {len(calib)} calib, "
                               f"{len(held)} held-out hand ROIs); add a photo with a visible wrist to that split "
                               "(calibration/photos.py)")

    def make(pool: list[HandRoi], n: int, seed: int):
        rng = np.random.default_rng(seed)
        xs, meta = [], []
        for i in range(n):
            h = pool[i % len(pool)]
            r, geo = jitter_roi(h.roi, rng, shift=0.06, scale=(0.9, 1.15), rot_deg=20.0)
            patch = crop_u8(imgs[h.photo], r, size)
            if rng.random() < 0.5:
                patch = patch[:, ::-1].copy()
                geo["flip"] = True
            patch, photo = photometric(patch, rng)
            xs.append(patch)
            meta.append({"photo": h.photo, "person": h.person, "side": h.side, **geo, **photo})
        return np.stack(xs), meta

    golden = hands[:cal["golden_samples"]]
    return {"calib": make(calib, cal["calib_samples"], SEED), "heldout": make(held, cal["heldout_samples"], SEED + 1),
            "golden": (np.stack([crop_u8(imgs[h.photo], h.roi, size) for h in golden]),
                       [{"photo": h.photo, "person": h.person, "side": h.side, "augmentation": None}
                        for h in golden])}


def detector_sets(cache: Path, cal: dict, seed: int = SEED) -> dict[str, tuple[np.ndarray, list]]:
    """calib / heldout / golden letterboxed windows; another `seed` gives other windows of the same splits."""
    size = cal["input_size"]
    photos = {ph.name: rgb(ph.name, cache) for ph in PHOTOS}
    negs = {f: cv2.cvtColor(load_negative(f, cache), cv2.COLOR_BGR2RGB) for fs in NEGATIVES.values() for f in fs}

    def make(sources: list[str], neg_files: tuple, n: int, seed: int, neg_p: float = 0.15):
        rng = np.random.default_rng(seed)
        xs, meta = [], []
        for i in range(n):
            if rng.random() < neg_p:
                src = neg_files[int(rng.integers(len(neg_files)))]
                img = negs[src]
            else:
                src = sources[i % len(sources)]
                img = photos[src]
            (x0, y0, x1, y1), geo = random_window(img.shape, rng)
            win = img[y0:y1, x0:x1]
            if rng.random() < 0.5:
                win = win[:, ::-1]
                geo["flip"] = True
            lb = letterbox_u8(np.ascontiguousarray(win), size)
            pad = lb == 0  # keep the letterbox border black, as the runtime produces it
            lb, photo = photometric(lb, rng)
            lb[pad.all(axis=2)] = 0
            xs.append(lb)
            meta.append({"source": src, **geo, **photo})
        return np.stack(xs), meta

    calib_src = [p.name for p in PHOTOS if p.split == "calib"]
    held_src = [p.name for p in PHOTOS if p.split == "heldout"]
    n_held = cal["heldout_samples"]
    golden_src = [p.name for p in PHOTOS] + ["coffee.png", "motorcycle_left.png"]
    golden = [letterbox_u8(photos[s] if s in photos else negs[s], size) for s in golden_src][:cal["golden_samples"]]
    held_a = make(held_src, NEGATIVES["heldout"], n_held // 2, seed + 1, neg_p=0.25)
    held_b = make(calib_src, NEGATIVES["heldout"], n_held - n_held // 2, seed + 2)
    return {"calib": make(calib_src, NEGATIVES["calib"], cal["calib_samples"], seed),
            "heldout": (np.concatenate([held_a[0], held_b[0]]), held_a[1] + held_b[1]),
            "golden": (np.stack(golden), [{"source": s, "augmentation": None}
                                          for s in golden_src[:cal["golden_samples"]]])}


def train_people(cache: Path, det, lmk, staged: dict[str, Path]) -> dict:
    """People in the train-only photos (calibration.photos.TRAIN_PHOTOS, staged by models.build.source), as the
    `sources` / `people` of a calibration provenance.json with split "train" and the file under <cache>/photos."""
    from calibration.photos import TRAIN_PHOTOS

    cv2.setNumThreads(1)  # as build(): resampling bit-exact between runs
    imgs = []
    for ph in TRAIN_PHOTOS:
        bgr = cv2.imread(str(staged[ph.name]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise OSError(f"cannot decode {staged[ph.name]}")
        imgs.append((ph.name, "train", cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)))
    people = find_people(cache, det, lmk, imgs)
    return {"tool": "calibration/datasets.py train_people", "sources": {
        ph.name: {"kind": ph.kind, "package": ph.package, "member": ph.member, "licence": ph.licence,
                  "people": ph.people, "split": "train", "sha256": ph.sha256,
                  "file": staged[ph.name].relative_to(cache / "photos").as_posix()} for ph in TRAIN_PHOTOS},
        "people": [{**asdict(p), "roi": asdict(p.roi)} for p in people]}


def provenance_sources(cache: Path) -> dict:
    out = {}
    for ph in PHOTOS:
        out[ph.name] = {"wheel": ph.wheel, "member": ph.member, "licence": ph.licence, "people": ph.people,
                        "split": ph.split, "sha256": sha256_file(cache / "photos" / Path(ph.member).name)}
    for split, files in NEGATIVES.items():
        for f in files:
            out[f] = {"wheel": SKIMAGE, "member": f"skimage/data/{f}", "licence": "scikit-image data (BSD-3 / "
                      "public domain)", "people": "none (negative)", "split": split,
                      "sha256": sha256_file(cache / "photos" / f)}
    return out


def build(cache: Path, manifests: dict[str, dict], det, lmk, out_root: Path) -> dict[str, dict[str, Path]]:
    """Write calib/heldout/golden npz + provenance.json for every model in `manifests`. Returns their paths.

    det, lmk: callables {input name: array} -> {output name: array} running the reference detector and landmark
    model (the build chain passes models.build.runners.open_model of the source files)."""
    cv2.setNumThreads(1)  # keeps resampling bit-exact between runs
    people = hands = None
    result: dict[str, dict[str, Path]] = {}
    for name, m in manifests.items():
        cal = m["calibration"]
        if cal["metric"] == "landmarks":
            people = people if people is not None else find_people(cache, det, lmk)
            sets = landmark_sets(cache, people, cal)
        elif cal["metric"] == "hand_landmarks":
            people = people if people is not None else find_people(cache, det, lmk)
            hands = hands if hands is not None else find_hands(cache, people, lmk)
            sets = hand_sets(cache, hands, cal)
        else:
            sets = detector_sets(cache, cal)
        d = out_root / name
        d.mkdir(parents=True, exist_ok=True)
        paths = {}
        for split, (x, _) in sets.items():
            paths[split] = d / f"{split}.npz"
            np.savez_compressed(paths[split], x=x)
        prov = {"model": name, "tool": "calibration/datasets.py", "seed": SEED, "norm": cal["norm"],
                "input_size": cal["input_size"], "sources": provenance_sources(cache),
                "people": [{**asdict(p), "roi": asdict(p.roi)} for p in people]
                if cal["metric"] in ("landmarks", "hand_landmarks") else None,
                "hands": [asdict(h) for h in hands] if cal["metric"] == "hand_landmarks" else None,
                "sets": {s: {"n": int(len(x)), "samples": meta} for s, (x, meta) in sets.items()}}
        (d / "provenance.json").write_text(json.dumps(prov, indent=1))
        paths["provenance"] = d / "provenance.json"
        result[name] = paths
        log.info("calibration sets for %s: %s", name, {s: len(x) for s, (x, _) in sets.items()})
    return result
