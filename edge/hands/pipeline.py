"""HandsStage: RGB frame + the person's pose landmarks → HandsResult. Opens its models from the zoo."""
from __future__ import annotations

import logging
import time

import numpy as np

from edge.backends.base import Session
from edge.hands.config import HandsConfig
from edge.hands.detector import PalmDetector
from edge.hands.landmarks import HandLandmarkModel
from edge.hands.tracker import HandTracker
from edge.hands.types import HandsResult

log = logging.getLogger(__name__)


def open_sessions(detector_ref, landmarks_ref, zoo, cfg: HandsConfig) -> tuple[Session | None, Session]:
    """(palm detector or None when `palm_detection = "off"`, hand landmarks) sessions for the configured
    ModelRefs (`[models.hand_detector]`, `[models.hand_landmarks]`), each with its backend tables' options."""
    from edge.backends.auto import open_model

    det = None
    if cfg.palm_detection != "off":
        det = open_model(zoo, detector_ref, options=detector_ref.backend_options())
    lmk = open_model(zoo, landmarks_ref, options=landmarks_ref.backend_options())
    log.info("hand models: detector %s, landmarks %s/%s",
             "off" if det is None else f"{det.info.backend}/{det.info.precision}", lmk.info.backend,
             lmk.info.precision)
    return det, lmk


class HandsStage:
    """The hand models and the hand tracker of one stream. Not thread-safe."""

    def __init__(self, cfg: HandsConfig, detector: Session | None, landmarks: Session):
        self.cfg = cfg
        self.sessions = (detector, landmarks)
        palms = PalmDetector(detector, threshold=cfg.palm_threshold) if detector is not None else None
        self.tracker = HandTracker(cfg, HandLandmarkModel(landmarks), palms)

    @classmethod
    def from_config(cls, cfg: HandsConfig, models, zoo=None) -> HandsStage:
        """Open `models.hand_detector` / `models.hand_landmarks` (a ModelsSection) from the zoo."""
        if zoo is None:
            from models.zoo import ModelZoo

            zoo = ModelZoo(getattr(models, "cache_dir", "") or None)
        return cls(cfg, *open_sessions(models.hand_detector, models.hand_landmarks, zoo, cfg))

    def process(self, image_rgb: np.ndarray, pose_landmarks: np.ndarray | None, seq: int = 0,
                t: float = 0.0) -> HandsResult:
        t0 = time.perf_counter()
        hands, palm_ran = self.tracker.step(image_rgb, pose_landmarks)
        return HandsResult(seq, t, hands, palm_ran, {"hands": (time.perf_counter() - t0) * 1e3})

    def reset(self) -> None:
        self.tracker.reset()

    def close(self) -> None:
        for s in self.sessions:
            if s is not None:
                s.close()
