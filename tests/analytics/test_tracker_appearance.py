"""ByteTracker's appearance cue (colour histograms of the box, with the frame image) and tracks started from lone
low-score detections: hand-checked cases drawn as real images (red-shirted and blue-shirted people on a grey floor),
each run with and without the cue so that what the cue decides is visible."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge.analytics.config import TrackerConfig
from edge.analytics.tracker import ByteTracker, appearance, appearance_distance
from edge.core.detections import Detections

FPS = 10.0
RED = ((40, 40, 200), (60, 50, 40))  # shirt, trousers (BGR)
BLUE = ((200, 90, 30), (150, 190, 210))


def box(x: float, bottom: float = 420.0, w: float = 50.0, h: float = 150.0) -> list[float]:
    """A person box, bottom centre (x, bottom)."""
    return [x - w / 2, bottom - h, x + w / 2, bottom]


def draw(people) -> np.ndarray:
    """A 640x480 frame with each (box, (shirt, trousers)) painted in order (later ones in front)."""
    img = np.full((480, 640, 3), 128, np.uint8)
    for b, (shirt, trousers) in people:
        x0, y0, x1, y1 = (int(round(v)) for v in b)
        cv2.rectangle(img, (x0, y0), (x1, (y0 + y1) // 2), shirt, -1)
        cv2.rectangle(img, (x0, (y0 + y1) // 2), (x1, y1), trousers, -1)
    return img


def test_appearance_histograms():
    img = draw([(box(100), RED), (box(300), RED), (box(500), BLUE)])
    f = appearance(img, np.array([box(100), box(300), box(500), [10, 10, 12, 14]]))
    assert f.shape == (4, 216)
    assert np.isnan(f[3]).all()  # too small: no appearance
    assert np.linalg.norm(f[:3], axis=1) == pytest.approx(1.0, abs=1e-5)  # dot product = Bhattacharyya coefficient
    d = appearance_distance(f[:3], f)
    assert d[0, 1] == pytest.approx(0.0, abs=1e-3)  # the same clothes
    assert d[0, 2] > 0.9  # no colour in common
    assert d[:, 3].tolist() == [0.0, 0.0, 0.0]  # no appearance: no opinion


def meet(variant: str) -> list[tuple[float, np.ndarray, Detections, list[int]]]:
    """Red (A, from the left, nearer) and blue (B, from the right) walk towards each other at 50 px/s and meet at
    x = 320 at t = 1.6 s; then they either walk on ("cross") or each turns back ("part"). While their centres are
    under 30 px apart (t = 1.4 .. 1.8 s) the detector gives one box around both. Frames: (t, image, detections,
    true person per row: 1 = A, 2 = B, 0 = the merged box)."""
    frames = []
    for k in range(int(3.4 * FPS) + 1):
        t = k / FPS
        d = 50 * abs(t - 1.6)
        xa, xb = (320 - d, 320 + d) if t <= 1.6 or variant == "part" else (320 + d, 320 - d)
        a, b = box(xa, 425), box(xb, 415)
        img = draw([(b, BLUE), (a, RED)])
        if abs(xa - xb) >= 30:
            frames.append((t, img, Detections([a, b], [0.9, 0.8], [0, 0]), [1, 2]))
        else:
            u = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
            frames.append((t, img, Detections([u], [0.7], [0]), [0]))
    return frames


def ids_per_person(frames, tracker: ByteTracker) -> dict[int, list[int]]:
    seen: dict[int, set] = {1: set(), 2: set()}
    for t, img, dets, truth in frames:
        for person, tid in zip(truth, tracker.update(dets, t, img).tracker_id.tolist()):
            if person and tid >= 0:
                seen[person].add(tid)
    return {p: sorted(s) for p, s in seen.items()}


@pytest.mark.parametrize("variant", ["cross", "part"])
def test_two_people_crossing_or_parting_keep_their_ids(variant):
    """Up to t = 1.8 s the two variants are the same frames; afterwards each has one box left and one right of
    x = 320 at the same places: only the colours say who is where. Boxes alone (appearance_weight 0) give the
    same ids in both variants: the constant-velocity prediction expects a crossing, so the parting pair swap ids.
    With the histograms each track keeps its person in both."""
    frames = meet(variant)
    assert ids_per_person(frames, ByteTracker(lost_s=2.0)) == {1: [1], 2: [2]}
    boxes_only = ids_per_person(frames, ByteTracker(lost_s=2.0, appearance_weight=0.0))
    assert boxes_only == ({1: [1], 2: [2]} if variant == "cross" else {1: [1, 2], 2: [1, 2]})
    # without the image there is no appearance either: exactly the boxes-only result
    no_image = [(t, None, d, truth) for t, _, d, truth in frames]
    assert ids_per_person(no_image, ByteTracker(lost_s=2.0)) == boxes_only


def lost_and_found() -> list[tuple[float, np.ndarray, Detections, list[int]]]:
    """Red A walks right at 50 px/s (x = 100 + 50 t) and goes behind a pillar at t = 2.0 s (last seen at x = 195,
    t = 1.9). The lost track keeps moving from there at 50 px/s: at t = 2.6 s it is predicted at x = 230. A slowed
    down behind the pillar and steps out at x = 215; at the same moment blue B, a new shopper, steps out at x = 240
    and walks on at 100 px/s. Buffered IoU (boxes grown by 0.15 x 50 = 7.5 px a side) of the prediction
    [197.5, 262.5] with A [182.5, 247.5]: 50 / 80 = 0.625; with B [207.5, 272.5]: 55 / 75 = 0.733, so on boxes
    alone B takes A's id."""
    frames = []
    for k in range(int(3.6 * FPS) + 1):
        t = k / FPS
        if t < 2.0:
            a = box(100 + 50 * t)
            frames.append((t, draw([(a, RED)]), Detections([a], [0.9], [0]), [1]))
        elif t < 2.6:
            frames.append((t, draw([]), Detections.empty(), []))
        else:
            a, b = box(215 + 50 * (t - 2.6)), box(240 + 100 * (t - 2.6))
            frames.append((t, draw([(a, RED), (b, BLUE)]), Detections([a, b], [0.9, 0.9], [0, 0]), [1, 2]))
    return frames


def test_a_lost_track_is_found_again_by_its_look_not_by_the_nearest_box():
    assert ids_per_person(lost_and_found(), ByteTracker(lost_s=2.0)) == {1: [1], 2: [2]}
    # boxes only: B takes A's id 1, and A comes back as a new person
    assert ids_per_person(lost_and_found(), ByteTracker(lost_s=2.0, appearance_weight=0.0)) == {1: [1, 2], 2: [1]}


def test_the_appearance_is_learnt_only_from_unoverlapped_boxes():
    """A box that another box overlaps holds two people's colours: it moves the track but not its appearance."""
    tr = ByteTracker(min_hits=1)
    red = appearance(draw([(box(200), RED)]), np.array([box(200)]))[0]
    tr.update(Detections([box(200)], [0.9], [0]), 0.0, draw([(box(200), RED)]))
    # the blue person half in front of the red one: two overlapping boxes
    img = draw([(box(200), RED), (box(225, 425), BLUE)])
    tr.update(Detections([box(202), box(225, 425)], [0.9, 0.9], [0, 0]), 0.1, img)
    assert float(tr.tracks[0].feature @ red) == pytest.approx(1.0, abs=1e-4)


def lone_low_walker(with_cover: bool) -> list[tuple[float, np.ndarray, Detections, list[int]]]:
    """A walker the detector only ever scores 0.35 (below new_track_score), 16 frames; with_cover: a tracked
    person's box covers the weak box (a partial second box on one person is not a new person)."""
    frames = []
    for k in range(16):
        t = k / FPS
        rows = [(box(100 + 5 * k), 0.35, 1)]
        if with_cover:
            rows = [(box(100 + 5 * k, w=60, h=170), 0.9, 2), (box(100 + 5 * k, bottom=400, w=40, h=100), 0.35, 1)]
        frames.append((t, None, Detections([r[0] for r in rows], [r[1] for r in rows], [0] * len(rows)),
                       [r[2] for r in rows]))
    return frames


def test_lone_low_score_detections_start_a_track_after_low_track_hits():
    def first_id_frame(frames, tracker):
        for k, (t, img, d, truth) in enumerate(frames):
            ids = dict(zip(truth, tracker.update(d, t, img).tracker_id.tolist()))
            if ids.get(1, -1) >= 0:
                return k
        return None

    assert first_id_frame(lone_low_walker(False), ByteTracker(low_score=0.3)) is None  # ByteTrack: never
    assert first_id_frame(lone_low_walker(False), ByteTracker(low_score=0.3, low_track_hits=8)) == 7  # 8th frame
    assert first_id_frame(lone_low_walker(True), ByteTracker(low_score=0.3, low_track_hits=8)) is None
    # a gap restarts the count (tentative tracks that miss a frame are dropped)
    frames = lone_low_walker(False)
    frames[5] = (frames[5][0], None, Detections.empty(), [])
    assert first_id_frame(frames, ByteTracker(low_score=0.3, low_track_hits=8)) == 13  # frames 6..13


def test_appearance_options_from_config():
    tr = ByteTracker.from_config(TrackerConfig(appearance_weight=0.0, low_track_hits=8))
    assert tr.appearance_weight == 0.0 and tr.low_track_hits == 8
    assert ByteTracker().appearance_weight == TrackerConfig().appearance_weight == 1.0
    assert ByteTracker().low_track_hits == TrackerConfig().low_track_hits == 0
