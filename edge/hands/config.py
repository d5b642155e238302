"""Typed config of the hand stage (`[tryon.gestures.hands]` of a mirror's device TOML)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge.core.config_base import StrictModel


class HandsConfig(StrictModel):
    """Where hand ROIs come from and when a hand counts as found (docs/TRYON.md "Gestures")."""

    presence_threshold: float = Field(0.5, ge=0, le=1, description="hand flag below this: no hand (track dropped)")
    pose_visibility: float = Field(0.5, ge=0, le=1, description="a pose wrist / index / pinky at least this visible "
                                   "gives a hand ROI (MediaPipe Holistic's pose-to-hand ROI)")
    raised_only: bool = Field(True, description="only hands whose pose wrist is above the hip line get a ROI from "
                              "the pose (arms at the sides cost nothing and trigger nothing)")
    palm_detection: Literal["fallback", "always", "off"] = Field(
        "fallback", description="fallback: the palm detector runs only while no hand is tracked (at most every "
        "palm_every_n-th hand step); always: every hand step (MediaPipe Hands); off: pose and tracking only")
    palm_every_n: int = Field(5, ge=1, le=100)
    palm_threshold: float = Field(0.5, ge=0.05, le=0.99, description="palm detector score")
    max_hands: int = Field(2, ge=1, le=4)
