"""Photos of people shipped inside PyPI packages (no internet beyond the package registry), with provenance.

`edge models build` stages them in `<cache>/photos/` (models.build.source.stage_media); this module only reads.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.core.paths import cache_dir


@dataclass(frozen=True)
class Photo:
    name: str
    wheel: str  # requirement the photo comes from
    member: str  # path inside the wheel
    licence: str
    people: str  # what is in it
    split: str  # "calib" or "heldout"


PHOTOS = (
    Photo("bus", "ultralytics==8.4.190", "ultralytics/assets/bus.jpg", "AGPL-3.0 (ultralytics package asset)",
          "4 people, 3 full body", "calib"),
    Photo("zidane", "ultralytics==8.4.190", "ultralytics/assets/zidane.jpg", "AGPL-3.0 (ultralytics package asset)",
          "2 people, upper body", "calib"),
    Photo("t1", "insightface==2.1", "insightface/data/images/t1.jpg", "MIT (insightface package asset)",
          "6 seated people, upper body", "calib"),
    Photo("grace_hopper", "matplotlib==3.11.2", "matplotlib/mpl-data/sample_data/grace_hopper.jpg",
          "public domain (US Navy photo, matplotlib sample data)", "1 person, portrait", "calib"),
    Photo("astronaut", "scikit-image==0.26.0", "skimage/data/astronaut.png", "public domain (NASA, scikit-image data)",
          "1 person, upper body", "heldout"),
    Photo("camera", "scikit-image==0.26.0", "skimage/data/camera.png", "BSD-3 (scikit-image data)",
          "1 person, 3/4 body, grey", "heldout"),
)
BY_NAME = {p.name: p for p in PHOTOS}
SKIMAGE = "scikit-image==0.26.0"
# person-free scenes (skimage data, BSD-3 / public domain): detector negatives
NEGATIVES = {"calib": ("coffee.png", "chelsea.png", "rocket.jpg"),
             "heldout": ("motorcycle_left.png", "hubble_deep_field.jpg")}


def staged_path(file: str, cache: Path | None = None) -> Path:
    """`<cache>/photos/<file>`; FileNotFoundError naming `edge models build` when it is not staged."""
    p = (cache or cache_dir()) / "photos" / file
    if not p.is_file():
        raise FileNotFoundError(f"{p} is not staged: run `edge models build` (it stages the package photos)")
    return p


def photo_path(name: str, cache: Path | None = None) -> Path:
    """Local path of a staged package photo."""
    return staged_path(Path(BY_NAME[name].member).name, cache)


def load_photo(name: str, cache: Path | None = None) -> np.ndarray:
    """BGR uint8 image (grey photos are expanded to 3 channels)."""
    img = cv2.imread(str(photo_path(name, cache)), cv2.IMREAD_COLOR)
    if img is None:
        raise OSError(f"cannot decode photo {name}")
    return img
