"""Typed config of the pose pipeline ([pose] in a device TOML)."""
from __future__ import annotations

from pydantic import Field

from edge.core.config_base import StrictModel


class OneEuroConfig(StrictModel):
    """One-Euro filter of the image landmarks (MediaPipe Pose defaults; values in object-scale units per second)."""

    enabled: bool = True
    min_cutoff: float = Field(0.05, gt=0, description="Hz; lower = smoother when still")
    beta: float = Field(80.0, ge=0, description="speed coefficient; higher = less lag when moving")
    d_cutoff: float = Field(1.0, gt=0, description="Hz, cutoff of the derivative filter")
    # The tracking ROI and world landmarks have their own filters, as in MediaPipe.
    aux_min_cutoff: float = Field(0.01, gt=0)
    aux_beta: float = Field(10.0, ge=0)
    world_min_cutoff: float = Field(0.1, gt=0)
    world_beta: float = Field(40.0, ge=0)
    visibility_alpha: float = Field(0.1, gt=0, le=1, description="low-pass weight of a new visibility value")


class PoseConfig(StrictModel):
    enabled: bool = True
    max_people: int = Field(1, ge=1, le=16)
    detection_threshold: float = Field(0.5, ge=0, le=1, description="person detector score")
    nms_iou: float = Field(0.3, gt=0, le=1, description="weighted-NMS IoU of detector boxes")
    presence_threshold: float = Field(0.5, ge=0, le=1, description="pose flag below this drops the track")
    visibility_threshold: float = Field(0.5, ge=0, le=1)
    redetect_interval: int = Field(10, ge=1, description="run the detector every K frames while below max_people")
    verify_interval: int = Field(0, ge=0, description="at max_people, run the detector every K frames: a track no "
                                 "detection confirms is dropped when an untracked person is detected, and one whose "
                                 "size is 1.5x off its detection's is re-anchored on it (0: never, as "
                                 "MediaPipe; for models whose pose flag stays high off the person, e.g. the student)")
    match_distance: float = Field(0.35, gt=0, le=2, description="a detection is an existing track when their "
                                  "mid-hip centres are closer than this x the body scale")
    max_gap_s: float = Field(2.0, gt=0, le=3600, description="a frame more than this many seconds of stream time "
                             "(or 3 frame intervals of a slower stream) after the previous one (a stalled or "
                             "reconnected camera), or before it, ends every track: the "
                             "detector finds the people afresh instead of a stale ROI handing an id to whoever stands "
                             "there now")
    segmentation: bool = True
    heatmap_refine: bool = Field(True, description="refine landmarks from the heatmap (MediaPipe does)")
    batch_landmarks: bool = Field(True, description="one batched landmark run when the model takes batches")
    smoothing: OneEuroConfig = OneEuroConfig()

