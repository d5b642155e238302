"""Scripted detection sequences with ground truth, for the tracker tests and the behaviour benchmark.

Each scene is a list of frames (stream time t, Detections, true person id per row; -1 marks a false positive).
Boxes jitter by a seeded Gaussian, people get low scores while occluded and vanish for a few frames, and one-frame
false positives appear now and then: the conditions that make naive trackers flicker.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge.core.detections import Detections, box_iou

FRAME = (640, 480)  # width, height


@dataclass
class Scene:
    name: str
    fps: float
    frames: list[tuple[float, Detections, np.ndarray]] = field(default_factory=list)


def _box(cx: float, bottom: float, w: float = 60.0, h: float = 160.0) -> list[float]:
    return [cx - w / 2, bottom - h, cx + w / 2, bottom]


def _frame(rows: list[tuple[list[float], float, int]], rng: np.random.Generator, jitter: float,
           t: float) -> tuple[float, Detections, np.ndarray]:
    if not rows:
        return t, Detections.empty(), np.zeros(0, np.int64)
    boxes = np.array([r[0] for r in rows], np.float32) + rng.normal(0, jitter, (len(rows), 4)).astype(np.float32)
    return t, Detections(boxes, [r[1] for r in rows], np.zeros(len(rows))), np.array([r[2] for r in rows])


def _clutter(rng: np.random.Generator, k: int, every: int, people: list) -> list[tuple[list[float], float, int]]:
    """A one-frame false positive every `every` frames, scoring above the new-track threshold, away from the
    people's boxes (a box on a person would be a detection of that person)."""
    if k % every != every // 2:
        return []
    while True:
        box = _box(rng.uniform(40, 600), rng.uniform(200, 470), 50, 120)
        if not people or box_iou(np.array([box]), np.array([r[0] for r in people])).max() == 0:
            return [(box, 0.65, -1)]


def crossing(seed: int = 0, fps: float = 30.0, jitter: float = 2.0) -> Scene:
    """Two people walk towards each other and cross (4 s). Person 2 walks behind person 1: low scores while
    they overlap and no detection for the 3 frames they coincide."""
    rng = np.random.default_rng(seed)
    scene = Scene("crossing", fps)
    n = int(4 * fps)
    for k in range(n):
        t = k / fps
        xa, xb = 100 + 110 * t, 540 - 110 * t
        people = [(_box(xa, 400), 0.9, 1), (_box(xb, 390), 0.85, 2)]
        gap = abs(xa - xb)
        rows = people[:1]
        if gap >= 8:  # coinciding: person 2 fully hidden
            rows.append((people[1][0], 0.3 if gap < 50 else 0.85, 2))
        scene.frames.append(_frame(rows + _clutter(rng, k, 15, people), rng, jitter, t))
    return scene


def occlusion(seed: int = 0, fps: float = 30.0, jitter: float = 2.0, hidden_s: float = 0.5) -> Scene:
    """One person walks left to right (5 s) and is hidden behind a pillar for `hidden_s` seconds from t = 2 s."""
    rng = np.random.default_rng(seed)
    scene = Scene(f"occlusion_{hidden_s:g}s", fps)
    for k in range(int(5 * fps)):
        t = k / fps
        people = [(_box(80 + 100 * t, 420), 0.9, 1)]
        rows = [] if 2.0 <= t < 2.0 + hidden_s else people
        scene.frames.append(_frame(rows + _clutter(rng, k, 12, people), rng, jitter, t))
    return scene


def doorway(seed: int = 0, fps: float = 30.0, jitter: float = 3.0) -> Scene:
    """One person stands on a zone boundary / counting line at x = 320 for 4 s with the detector dropping them
    every 7th frame, then walks right (2 s)."""
    rng = np.random.default_rng(seed)
    scene = Scene("doorway", fps)
    for k in range(int(6 * fps)):
        t = k / fps
        x = 320 + 4 * np.sin(k * 1.3) if t < 4 else 320 + 100 * (t - 4)
        people = [(_box(x, 420), 0.8, 1)]
        rows = [] if (t < 4 and k % 7 == 3) else people
        scene.frames.append(_frame(rows + _clutter(rng, k, 20, people), rng, jitter, t))
    return scene


def run(scene: Scene, tracker) -> list[tuple[float, Detections, np.ndarray]]:
    """The scene's frames with tracker ids filled by `tracker.update(detections, t)`."""
    return [(t, tracker.update(d, t), truth) for t, d, truth in scene.frames]


def id_report(frames: list[tuple[float, Detections, np.ndarray]]) -> dict:
    """Per true person: distinct ids given and id switches; ids given to false positives; counted people
    (distinct confirmed ids)."""
    per: dict[int, list[int]] = {}
    clutter: set[int] = set()
    ids: set[int] = set()
    for _, d, truth in frames:
        for tid, gt in zip(d.tracker_id.tolist(), truth.tolist()):
            if tid < 0:
                continue
            ids.add(tid)
            if gt < 0:
                clutter.add(tid)
            else:
                per.setdefault(gt, []).append(tid)
    people = {gt: {"ids": sorted(set(seq)), "switches": sum(a != b for a, b in zip(seq, seq[1:]))}
              for gt, seq in sorted(per.items())}
    return {"people": people, "switches": sum(p["switches"] for p in people.values()),
            "false_ids": len(clutter), "distinct_ids": len(ids)}
