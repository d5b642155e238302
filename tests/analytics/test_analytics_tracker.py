"""ByteTracker: confirmation, low-score association, exit grace on the stream clock, crossings; against the naive
IoU tracker (devtools/naive_tracker.py) on the same scripted jittery / occluded scenes."""
from __future__ import annotations

import numpy as np
import pytest

from devtools import analytics_scenes as scenes
from devtools.naive_tracker import NaiveTracker
from edge.analytics.config import TrackerConfig
from edge.analytics.tracker import ByteTracker
from edge.core.detections import Detections

FPS = 10.0


def walker(x: float, score: float = 0.9, y: float = 400.0, kp: np.ndarray | None = None) -> Detections:
    return Detections([[x - 30, y - 160, x + 30, y]], [score], [0], None if kp is None else kp[None])


def test_confirmation_after_min_hits_and_blips_never_counted():
    tr = ByteTracker(min_hits=3)
    ids = [tr.update(walker(100 + 5 * k), k / FPS).tracker_id[0] for k in range(4)]
    assert ids == [-1, -1, 1, 1]  # tentative for 2 frames, confirmed on the 3rd
    # a one-frame false positive far away: tentative, dropped on its first miss, burns no id
    d = tr.update(Detections.merge([walker(120), walker(500)]), 4 / FPS)
    assert d.tracker_id.tolist() == [1, -1]
    assert tr.update(walker(125), 5 / FPS).tracker_id.tolist() == [1]
    assert [t.track_id for t in tr.tracks] == [1]
    # a new person gets the next id, 2
    for k in range(6, 9):
        d = tr.update(Detections.merge([walker(100 + 5 * k), walker(500)]), k / FPS)
    assert d.tracker_id.tolist() == [1, 2]


def test_low_score_detections_continue_tracks_but_never_start_them():
    tr = ByteTracker(min_hits=1)
    assert tr.update(walker(100), 0.0).tracker_id.tolist() == [1]
    # partly occluded: score 0.3 (between low_score and high_score) keeps the id through the second association
    for k in range(1, 5):
        assert tr.update(walker(100 + 4 * k, score=0.3), k / FPS).tracker_id.tolist() == [1]
    # a low-score detection alone never starts a track
    tr2 = ByteTracker(min_hits=1)
    assert tr2.update(walker(100, score=0.3), 0.0).tracker_id.tolist() == [-1]
    assert tr2.tracks == []


@pytest.mark.parametrize("hidden_s, same_id", [(0.5, True), (0.9, True), (1.5, False)])
def test_track_lost_and_found_within_and_after_the_grace(hidden_s, same_id):
    """A person walking at 40 px/s disappears for `hidden_s` seconds; lost_s = 1 s of stream time."""
    tr = ByteTracker(min_hits=3, lost_s=1.0)
    t, ids = 0.0, []
    while t < 2.0 + hidden_s + 1.0:
        if not 2.0 <= t < 2.0 + hidden_s:
            ids.append(int(tr.update(walker(100 + 40 * t), t).tracker_id[0]))
        else:
            tr.update(Detections.empty(), t)
        t = round(t + 1 / FPS, 6)
    confirmed = sorted({i for i in ids if i >= 0})
    assert confirmed == ([1] if same_id else [1, 2])


def test_grace_is_measured_on_the_stream_clock_not_in_frames():
    """Frames arrive at 2 fps: 3 frames of absence are 1.5 s, more than lost_s = 1 s, so the id is new."""
    tr = ByteTracker(min_hits=1, lost_s=1.0)
    tr.update(walker(100), 0.0)
    tr.update(Detections.empty(), 0.5)
    tr.update(Detections.empty(), 1.0)
    tr.update(Detections.empty(), 1.5)  # 1.5 s since the last match: removed
    assert tr.update(walker(100), 2.0).tracker_id.tolist() == [2]


def test_two_tracks_crossing_keep_their_ids():
    tr = ByteTracker()
    seen: dict[int, set] = {1: set(), 2: set()}
    for k in range(41):
        t = k / FPS
        xa, xb = 100 + 100 * t, 500 - 100 * t  # they meet at t = 2 s
        d = tr.update(Detections([[xa - 30, 240, xa + 30, 400], [xb - 30, 230, xb + 30, 390]], [0.9, 0.9], [0, 0]), t)
        for truth, tid in zip((1, 2), d.tracker_id.tolist()):
            if tid >= 0:
                seen[truth].add(tid)
    assert seen == {1: {1}, 2: {2}}


def test_keypoints_are_carried_along():
    tr = ByteTracker(min_hits=1)
    kp = np.zeros((17, 3), np.float32)
    for k in range(3):
        kp[9] = (100 + k, 300, 0.9)
        d = tr.update(walker(100 + k, kp=kp.copy()), k / FPS)
    assert d.keypoints[0, 9].tolist() == pytest.approx([102, 300, 0.9])
    assert tr.tracks[0].keypoints[9].tolist() == pytest.approx([102, 300, 0.9])


def test_from_config_and_time_going_back():
    tr = ByteTracker.from_config(TrackerConfig(min_hits=1, lost_s=2.0))
    assert tr.min_hits == 1 and tr.lost_s == 2.0
    tr.update(walker(100), 5.0)
    # reset: the tracks go, ids keep counting (zones and lines key their state by id: no id means two people)
    assert tr.update(walker(100), 1.0).tracker_id.tolist() == [2]


@pytest.mark.parametrize("make", [scenes.crossing, scenes.occlusion, scenes.doorway])
def test_bytetrack_vs_naive_on_scripted_scenes(make):
    """Same jittery, occluded scene with one-frame false positives: ByteTracker keeps one id per person and
    never counts a false positive; the naive tracker switches ids and counts every false positive."""
    byte = scenes.id_report(scenes.run(make(seed=0), ByteTracker()))
    naive = scenes.id_report(scenes.run(make(seed=0), NaiveTracker()))
    assert byte["switches"] == 0 and byte["false_ids"] == 0
    assert all(p["ids"] == [gt] for gt, p in byte["people"].items())  # ids 1, 2 in order of appearance
    assert naive["switches"] >= 1 and naive["false_ids"] >= 5
    assert naive["distinct_ids"] > byte["distinct_ids"]


def test_occlusion_past_the_grace_gives_a_new_id_for_both():
    byte = scenes.id_report(scenes.run(scenes.occlusion(hidden_s=2.0), ByteTracker(lost_s=1.0)))
    assert byte["people"][1]["ids"] == [1, 2]


def box(x0: float, y0: float, x1: float, y1: float, score: float = 0.9) -> Detections:
    return Detections([[x0, y0, x1, y1]], [score], [0])


def test_shrinking_box_before_an_occlusion_does_not_send_the_lost_track_away():
    """A person walks right at 50 px/s (box 60x200, feet at 400); someone nearer covers them from the feet up: 3
    frames of ever shorter boxes (200 -> 150 -> 100 px, top fixed), then 0.6 s unseen, then they reappear where
    they walked to. The shrinking boxes give the filter an upward velocity; the lost track restarts from the last
    full-size box with the velocity of the full-size ones (50 px/s right, 0 up), so it is found again."""
    tr = ByteTracker(min_hits=3, lost_s=2.0, lost_buffer=0.0)
    ids = []
    k = 0
    for k in range(10):  # full size, 5 px per frame
        x = 100 + 5 * k
        ids.append(int(tr.update(box(x, 200, x + 60, 400), k / FPS).tracker_id[0]))
    for bottom in (350, 300, 250):  # covered from below
        k += 1
        x = 100 + 5 * k
        ids.append(int(tr.update(box(x, 200, x + 60, bottom), k / FPS).tracker_id[0]))
    for _ in range(6):  # hidden
        k += 1
        tr.update(Detections.empty(), k / FPS)
    lost = tr.tracks[0]
    assert lost.state == "lost"
    # last full box at k = 9 (x 145), fitted velocity 50 px/s; now k = 18: x0 = 145 + 50 * 0.9 = 190, height 200
    assert lost.xyxy[0] == pytest.approx(190, abs=1.0) and lost.xyxy[3] - lost.xyxy[1] == pytest.approx(200, abs=1)
    for _ in range(3):  # visible again, full size
        k += 1
        x = 100 + 5 * k
        ids.append(int(tr.update(box(x, 200, x + 60, 400), k / FPS).tracker_id[0]))
    assert sorted({i for i in ids if i >= 0}) == [1]


def test_a_lost_track_that_stood_still_has_no_velocity():
    tr = ByteTracker(min_hits=1, lost_s=2.0)
    for k in range(5):
        tr.update(box(300, 100, 312, 160), k / FPS)
    tr.update(Detections.empty(), 0.5)
    tr.update(Detections.empty(), 1.0)
    assert tr.tracks[0].xyxy.tolist() == pytest.approx([300, 100, 312, 160], abs=0.5)


@pytest.mark.parametrize("buffer, same_id", [(0.0, False), (0.5, True)])
def test_lost_tracks_match_on_buffered_iou(buffer, same_id):
    """A far person (12x60 px) stands still, is hidden 0.5 s and reappears 9 px to the right. Plain IoU is
    3*60 / (2*720 - 180) = 0.14 < match_iou 0.2; grown by half their size on every side (24x120 boxes, 15 px
    overlap) it is 1800 / 3960 = 0.45, so the lost track takes the detection."""
    tr = ByteTracker(min_hits=1, lost_s=2.0, lost_buffer=buffer)
    for k in range(5):
        tr.update(box(100, 100, 112, 160), k / FPS)
    for k in range(5, 10):
        tr.update(Detections.empty(), k / FPS)
    got = int(tr.update(box(109, 100, 121, 160), 1.0).tracker_id[0])
    assert (got == 1) is same_id


def test_a_lost_track_never_takes_the_detection_of_a_tracked_one():
    """Tracked tracks are matched before lost ones: B, seen every frame next to the hidden A (inside A's grown
    box), keeps its id, and A stays lost."""
    tr = ByteTracker(min_hits=1, lost_s=2.0, lost_buffer=1.0)
    for k in range(5):
        tr.update(Detections([[100, 100, 160, 300], [170, 100, 230, 300]], [0.9, 0.9], [0, 0]), k / FPS)
    for k in range(5, 10):
        d = tr.update(box(170, 100, 230, 300), k / FPS)
        assert d.tracker_id.tolist() == [2]
    assert {t.track_id: t.state for t in tr.tracks} == {1: "lost", 2: "tracked"}


def test_lost_buffer_from_config():
    assert ByteTracker.from_config(TrackerConfig(lost_buffer=0.5)).lost_buffer == 0.5
    assert ByteTracker().lost_buffer == TrackerConfig().lost_buffer
