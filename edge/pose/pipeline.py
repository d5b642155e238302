"""PosePipeline: Frame → PoseResult. Opens its two models from the zoo through the backends, then tracks people."""
from __future__ import annotations

import logging
import time


from edge.backends.base import Session
from edge.core.frames import Frame
from edge.pose.config import PoseConfig
from edge.pose.detector import PersonDetector
from edge.pose.landmarks import LandmarkModel
from edge.pose.tracker import PoseTracker
from edge.pose.types import PoseResult

log = logging.getLogger(__name__)


def split_config(cfg) -> tuple[PoseConfig, object]:
    """(PoseConfig, ModelsSection) from an EdgeConfig or a (PoseConfig, ModelsSection) pair."""
    if isinstance(cfg, tuple):
        return cfg[0], cfg[1]
    return cfg.pose, cfg.models


def default_zoo(models):
    """The model zoo of the configured cache (models.cache_dir, else the default cache)."""
    from models.zoo import ModelZoo

    return ModelZoo(getattr(models, "cache_dir", "") or None)


def landmark_outputs(cfg: PoseConfig) -> list[str]:
    """The landmark model outputs this config uses; the others (segmentation head, heatmap) are not computed
    where the backend can prune them."""
    outs = ["Identity", "Identity_1", "Identity_4"]  # landmarks, pose flag, world landmarks
    if cfg.segmentation:
        outs.append("Identity_2")
    if cfg.heatmap_refine:
        outs.append("Identity_3")
    return sorted(outs)


def open_sessions(models, zoo=None, pose_cfg: PoseConfig | None = None) -> tuple[Session, Session]:
    """(detector, landmark) sessions for the configured ModelRefs (backend/precision may be "auto"/"default"),
    each with the plug-in options of its backend tables."""
    from edge.backends.auto import open_model

    zoo = zoo if zoo is not None else default_zoo(models)
    det = open_model(zoo, models.pose_detector, options=models.pose_detector.backend_options())
    lmk = open_model(zoo, models.pose_landmarks, options=models.pose_landmarks.backend_options(),
                     outputs=landmark_outputs(pose_cfg) if pose_cfg is not None else None)
    log.info("pose models: detector %s/%s, landmarks %s/%s", det.info.backend, det.info.precision,
             lmk.info.backend, lmk.info.precision)
    return det, lmk


class PosePipeline:
    """Two-stage BlazePose pipeline with multi-person tracking. One instance per video stream; not thread-safe."""

    def __init__(self, cfg, zoo=None, *, sessions: tuple[Session, Session] | None = None):
        self.cfg, models = split_config(cfg)
        self.sessions = sessions if sessions is not None else open_sessions(models, zoo, self.cfg)
        det_s, lmk_s = self.sessions
        self.detector = PersonDetector(det_s, threshold=self.cfg.detection_threshold, nms_iou=self.cfg.nms_iou)
        self.landmarks = LandmarkModel(lmk_s, segmentation=self.cfg.segmentation,
                                       heatmap_refine=self.cfg.heatmap_refine)
        self.landmarks.batchable = self.landmarks.batchable and self.cfg.batch_landmarks
        self.tracker = PoseTracker(self.cfg, self.detector, self.landmarks)

    @classmethod
    def from_sessions(cls, cfg: PoseConfig, detector: Session, landmarks: Session) -> PosePipeline:
        """A pipeline on already-open sessions (benchmarks, tests, custom model files)."""
        return cls((cfg, None), sessions=(detector, landmarks))

    def process(self, frame: Frame) -> PoseResult:
        """Landmarks of up to max_people people in the frame; tracking state carries over to the next call."""
        t0 = time.perf_counter()
        # the BGR frame as captured: only the detector's letterbox and the landmark crops are converted to RGB
        # (a full-frame conversion would be one more pass over a frame that is cold in the cache)
        people, ran = self.tracker.step(frame.image, frame.t, bgr=True)
        t1 = time.perf_counter()
        frame.meta["t_pose_done"] = time.monotonic()
        return PoseResult(frame.seq, frame.t, frame.shape, people, ran, {"pose": (t1 - t0) * 1e3}, frame.clock)

    def reset(self) -> None:
        """Forget all tracks (e.g. after a camera cut)."""
        self.tracker.reset()

    def close(self) -> None:
        for s in self.sessions:
            s.close()
