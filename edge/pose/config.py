"""Typed config of the pose pipeline ([pose] in a device TOML)."""
from __future__ import annotations

from pydantic import Field

from edge.config_base import StrictModel


class OneEuroConfig(StrictModel):
    min_cutoff: float = Field(0.05, gt=0)
    beta: float = Field(80.0, ge=0)
    d_cutoff: float = Field(1.0, gt=0)


class PoseConfig(StrictModel):
    enabled: bool = True
    max_people: int = Field(1, ge=1, le=16)
    detection_threshold: float = Field(0.5, ge=0, le=1)
    presence_threshold: float = Field(0.5, ge=0, le=1)
    visibility_threshold: float = Field(0.5, ge=0, le=1)
    segmentation: bool = True
    smoothing: OneEuroConfig = OneEuroConfig()
