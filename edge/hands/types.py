"""Hand results shared by the hand stage and the mirror's gesture recognizer."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge.pose.types import Roi

# MediaPipe hand topology (21 landmarks)
HAND_LANDMARK_NAMES = (
    "wrist", "thumb_cmc", "thumb_mcp", "thumb_ip", "thumb_tip", "index_mcp", "index_pip", "index_dip", "index_tip",
    "middle_mcp", "middle_pip", "middle_dip", "middle_tip", "ring_mcp", "ring_pip", "ring_dip", "ring_tip",
    "pinky_mcp", "pinky_pip", "pinky_dip", "pinky_tip",
)
HL = {n: i for i, n in enumerate(HAND_LANDMARK_NAMES)}
NUM_HAND_LANDMARKS = 21


@dataclass
class Hand:
    """One hand in one frame."""

    landmarks: np.ndarray  # (21, 3) x, y image px, z (MediaPipe's: px scale, relative to the wrist; smaller = nearer)
    world: np.ndarray  # (21, 3) metres, origin at the hand's centre, rotated into the image frame
    score: float  # hand presence in [0, 1]
    handedness: float  # the model's "Left" probability for a *mirrored* image: on a camera image ~ P(right hand)
    roi: Roi  # the crop the landmarks came from
    key: str = ""  # track key: "left" / "right" (the person's pose wrist it belongs to) or "palm<i>" (detector only)
    source: str = "pose"  # where its ROI came from: "track" (previous landmarks), "pose" (wrist), "palm" (detector)
    roi_next: Roi | None = None  # the tracking ROI for the next frame (from these landmarks)


@dataclass
class HandsResult:
    frame_seq: int
    t: float  # stream time of the frame (Frame.t)
    hands: list[Hand] = field(default_factory=list)
    palm_ran: bool = False
    timings_ms: dict[str, float] = field(default_factory=dict)
