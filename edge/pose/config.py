"""Typed config of the pose pipeline ([pose] in a device TOML)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

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


class ZoneConfig(StrictModel):
    """A polygon in image pixels; a person is inside when their anchor point is, for `inertia` frames."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    polygon: list[tuple[float, float]] = Field(min_length=3)
    anchor: Literal["bottom_center", "hips", "center"] = "bottom_center"
    inertia: int = Field(3, ge=1, le=300, description="consecutive frames before entering/leaving counts")


class PoseConfig(StrictModel):
    enabled: bool = True
    max_people: int = Field(1, ge=1, le=16)
    detection_threshold: float = Field(0.5, ge=0, le=1, description="person detector score")
    nms_iou: float = Field(0.3, gt=0, le=1, description="weighted-NMS IoU of detector boxes")
    presence_threshold: float = Field(0.5, ge=0, le=1, description="pose flag below this drops the track")
    visibility_threshold: float = Field(0.5, ge=0, le=1)
    redetect_interval: int = Field(10, ge=1, description="run the detector every K frames while below max_people")
    match_distance: float = Field(0.35, gt=0, le=2, description="a detection is an existing track when their "
                                  "mid-hip centres are closer than this x the body scale")
    segmentation: bool = True
    heatmap_refine: bool = Field(True, description="refine landmarks from the heatmap (MediaPipe does)")
    batch_landmarks: bool = Field(True, description="one batched landmark run when the model takes batches")
    smoothing: OneEuroConfig = OneEuroConfig()
    zones: list[ZoneConfig] = Field(default_factory=list)

    @field_validator("zones")
    @classmethod
    def _unique_zone_names(cls, v: list[ZoneConfig]) -> list[ZoneConfig]:
        names = [z.name for z in v]
        if len(names) != len(set(names)):
            raise ValueError(f"zone names must be unique, got {names}")
        return v
