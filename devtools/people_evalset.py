"""The person-detector evaluation set (calibration.people composites + negatives + real photos, seed SEED),
cached as `<cache>/eval/people_<seed>_<n>_<neg>.npz`. See calibration/people.py for how frames are made."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from calibration.people import BUCKETS, SEED, Frame, bucket_of, frames, person_cutouts

log = logging.getLogger(__name__)

__all__ = ["BUCKETS", "Frame", "bucket_of", "build", "cached", "load", "runners", "save"]


def runners(cache: Path):
    """(det, lmk) callables over the BlazePose TFLite files in the cache (the build chain's runners)."""
    from models.build.runners import open_model
    from models.zoo import ModelZoo

    zoo = ModelZoo(cache)
    return (open_model(zoo.artifact("pose_detection", "tflite", "fp32").path, 1),
            open_model(zoo.artifact("pose_landmark_full", "tflite", "fp32").path, 1))


def build(cache: Path, n_composite: int = 240, n_negative: int = 60, seed: int = SEED) -> list[Frame]:
    det, lmk = runners(cache)
    return frames(cache, person_cutouts(cache, det, lmk), n_composite, n_negative, seed)


def save(fs: list[Frame], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(tmp, images=np.stack([f.image for f in fs]), n_boxes=np.array([len(f.boxes) for f in fs]),
                        boxes=np.concatenate([f.boxes for f in fs]).reshape(-1, 4),
                        ignore=np.concatenate([f.ignore for f in fs]), kinds=np.array([f.kind for f in fs]))
    tmp.replace(path)


def load(path: Path) -> list[Frame]:
    z = np.load(path)
    ends = np.cumsum(z["n_boxes"])
    return [Frame(img, z["boxes"][e - n:e], z["ignore"][e - n:e], str(k))
            for img, n, e, k in zip(z["images"], z["n_boxes"], ends, z["kinds"])]


def cached(cache: Path, n_composite: int = 240, n_negative: int = 60, seed: int = SEED) -> list[Frame]:
    """The set from the cache file, built on first use (~40 s)."""
    p = cache / "eval" / f"people_{seed}_{n_composite}_{n_negative}.npz"
    if p.is_file():
        return load(p)
    fs = build(cache, n_composite, n_negative, seed)
    save(fs, p)
    log.info("evaluation set: %d frames -> %s", len(fs), p)
    return fs
