"""People at a distance (aisle, queue, kiosk cameras): person boxes (+ keypoints where the model has them).

    from edge.people import open_detector
    det = open_detector(zoo, ref)          # ref: a ModelRef (name, backend, precision, threads)
    people = det(frame.image)              # list[PersonDetection], BGR frame in, frame px out
    dets = det.frame_detections(frame)     # the same as edge.core.detections.Detections (tracker, analytics)
    many = det.frame_detections_batch(frames)  # several frames (cameras) in batched session calls
"""
from __future__ import annotations

from typing import Any

from edge.people.nanodet import NanoDetPeople, PeopleModelError
from edge.people.types import KEYPOINT_NAMES, PersonDetection, to_detections

DETECTORS = {"nanodet": NanoDetPeople}


def open_detector(zoo, ref, *, max_batch: int = 1, **options: Any):
    """The detector class for the zoo model `ref.name` (by its manifest's conversion recipe) on a session from
    edge.backends.auto.open_model (backend "auto" and precision "default" resolved there). options go to the
    class (threshold, tiles, ...). max_batch: windows per session call where the backend can batch. 1 (default):
    no batched session (it costs ~1.5 s of compiling and ~230 MiB at 8, and did not pay on the 2-core VM:
    docs/BENCHMARKS.md, cameras per device)."""
    from edge.backends.auto import open_model

    recipe = zoo.manifest(ref.name)["source"].get("recipe")
    if recipe not in DETECTORS:
        raise PeopleModelError(f"model {ref.name!r} is not a people detector (known recipes: {sorted(DETECTORS)})")
    backend_options = ref.backend_options() if hasattr(ref, "backend_options") else None  # [models.<m>.<backend>]
    return DETECTORS[recipe](open_model(zoo, ref, options=backend_options, max_batch=max_batch), **options)


__all__ = ["DETECTORS", "KEYPOINT_NAMES", "NanoDetPeople", "PeopleModelError", "PersonDetection", "open_detector",
           "to_detections"]
