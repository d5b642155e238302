"""Review of the people detector's decoding and the ByteTracker (stop 39): the lost-track grace on the stream clock
when frames come late or sparse, and boxes that are not numbers (NaN / inf) in the tracker and in NanoDet's decode."""
from __future__ import annotations

import numpy as np

from edge.analytics.tracker import ByteTracker
from edge.core.detections import Detections
from edge.people.nanodet import BINS, decode, nms

SIZE = 416
N = 52 * 52 + 26 * 26 + 13 * 13


def walker(x: float, score: float = 0.9) -> Detections:
    return Detections([[x - 30, 240, x + 30, 400]], [score], [0])


def test_a_lost_track_past_its_grace_is_not_found_again_after_a_late_frame():
    """Guards: a lost track was matched before the tracks past their grace were removed, so after a frame gap
    shorter than an outage (2.4 s here, lost_s 1 s) the person seen again took the id of a track lost 2.5 s
    before: one id for what the analytics must treat as two visits (a re-entry counted as nobody leaving)."""
    tr = ByteTracker(min_hits=1, lost_s=1.0)
    for k in range(6):
        assert tr.update(walker(100), k / 10).tracker_id.tolist() == [1]
    tr.update(Detections.empty(), 0.6)  # gone: lost since 0.5
    assert tr.update(walker(100), 3.0).tracker_id.tolist() == [2]  # no outage (< 5 s), but 2.5 s lost


def test_the_grace_does_not_stretch_by_a_frame_interval_at_low_frame_rates():
    """Guards: at 5 fps (a [[cameras]] stream's default) a person back 1.2 s after leaving, past lost_s = 1 s,
    kept the old id because the expired track was still matched in the frame that should have removed it."""
    tr = ByteTracker(min_hits=1, lost_s=1.0)
    for k in range(3):
        tr.update(walker(100), k * 0.2)  # last seen at 0.4
    for k in range(3, 8):
        tr.update(Detections.empty(), k * 0.2)  # 0.6 .. 1.4: lost 1.0 s at 1.4, still within the grace
    assert [t.track_id for t in tr.tracks] == [1]
    assert tr.update(walker(100), 1.6).tracker_id.tolist() == [2]  # 1.2 s lost: a new visit


def test_a_lost_track_within_its_grace_is_still_found_after_a_late_frame():
    """Guards the other side of the fix: a track lost 0.8 s before a late frame (lost_s 1 s) keeps its id."""
    tr = ByteTracker(min_hits=1, lost_s=1.0)
    for k in range(6):
        tr.update(walker(100), k / 10)
    tr.update(Detections.empty(), 0.6)
    assert tr.update(walker(100), 1.3).tracker_id.tolist() == [1]


def test_boxes_that_are_not_numbers_never_crash_the_tracker_nor_take_ids():
    """Guards: with the frame image (appearance on), a detection with an infinite coordinate raised OverflowError
    in the appearance crop and stopped the analytics; a NaN box started a track with a NaN state that took an id
    every frame (min_hits 1) and was reported as a person. Such rows now get -1 and the other rows are tracked."""
    img = np.full((480, 640, 3), 128, np.uint8)
    tr = ByteTracker(min_hits=1)
    bad = [[np.inf, 240, 130, 400], [np.nan, 240, 330, 400], [400, 240, 460, -np.inf]]
    for k in range(3):
        d = tr.update(Detections([[70, 240, 130, 400], *bad], [0.9] * 4, [0] * 4), k / 10, img)
        assert d.tracker_id.tolist() == [1, -1, -1, -1]
    assert [t.track_id for t in tr.tracks] == [1]
    assert all(np.isfinite(t.mean).all() for t in tr._tracks)


def test_a_cell_with_non_finite_side_logits_gives_no_box_and_hides_nobody():
    """Guards: a cell whose side logits overflowed (inf) decoded to a NaN box; NMS then compared every other box
    with it (NaN IoU) and dropped them all, so one bad cell hid every person of the window."""
    scores = np.zeros((1, N, 80), np.float32)
    dists = np.full((1, N, 4 * BINS), -50.0, np.float32)
    good, bad = 52 * 10 + 20, 52 * 30 + 30
    scores[0, good, 0], scores[0, bad, 0] = 0.8, 0.9
    dists[0, good, [2, BINS + 5, 2 * BINS + 3, 3 * BINS + 7]] = 50.0
    dists[0, bad, :] = 0.0
    dists[0, bad, 3] = np.inf
    boxes, sc = decode(scores, dists, SIZE, threshold=0.5)
    assert np.isfinite(boxes).all() and sc.tolist() == [np.float32(0.8)]
    np.testing.assert_allclose(boxes[0], [164 - 16, 84 - 40, 164 + 24, 84 + 56], atol=1e-6)
    keep = nms(np.array([[np.nan] * 4, [10, 10, 50, 90], [200, 10, 240, 90]]), np.array([0.9, 0.8, 0.7]), 0.6)
    assert keep.tolist()[-2:] == [1, 2]  # a NaN box (from any source) suppresses nothing
