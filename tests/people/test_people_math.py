"""NanoDet decode, NMS, letterbox and tiling on hand-checked numbers (no model)."""
from __future__ import annotations

import numpy as np
import pytest

from edge.people.letterbox import Letterbox, letterbox_u8
from edge.people.nanodet import BINS, centres, decode, iou, nms, tile_windows

SIZE = 416
N = 52 * 52 + 26 * 26 + 13 * 13  # 3549


def raw(cells: dict[int, tuple[float, tuple]]) -> tuple[np.ndarray, np.ndarray]:
    """Model outputs with `cells`: index -> (person prob, per-side bins (4 ints, or 4 (bin, bin) pairs split
    evenly)); every other cell scores 0."""
    scores = np.zeros((1, N, 80), np.float32)
    dists = np.zeros((1, N, 4 * BINS), np.float32)
    for i, (p, sides) in cells.items():
        scores[0, i, 0] = p
        scores[0, i, 5] = 0.99  # another class (bus) must not leak into the person detections
        d = np.full((4, BINS), -50.0, np.float32)
        for k, b in enumerate(sides):
            for bb in (b if isinstance(b, tuple) else (b,)):
                d[k, bb] = 50.0
        dists[0, i] = d.ravel()
    return scores, dists


def test_cell_centres_and_strides():
    pts, st = centres(SIZE)
    assert len(pts) == N
    assert tuple(pts[0]) == (4.0, 4.0) and st[0] == 8  # stride 8, row 0 col 0
    assert tuple(pts[52 * 10 + 20]) == (164.0, 84.0)  # row 10, col 20: ((20 + .5) * 8, (10 + .5) * 8)
    assert tuple(pts[2704]) == (8.0, 8.0) and st[2704] == 16  # first stride-16 cell
    assert tuple(pts[-1]) == (400.0, 400.0) and st[-1] == 32  # last stride-32 cell: (12 + .5) * 32


def test_decode_hand_checked_boxes():
    i8 = 52 * 10 + 20  # centre (164, 84), stride 8
    i32 = 2704 + 676 + 13 * 6 + 6  # stride 32, row 6 col 6: centre (208, 208)
    scores, dists = raw({i8: (0.9, (2, 5, 3, 7)), i32: (0.6, ((2, 3), 4, 10, 0)), 100: (0.2, (1, 1, 1, 1))})
    boxes, sc = decode(scores, dists, SIZE, threshold=0.3)
    order = np.argsort(-sc)
    boxes, sc = boxes[order], sc[order]
    np.testing.assert_allclose(sc, [0.9, 0.6], atol=1e-6)
    # distances = bin * stride: left 16, top 40, right 24, bottom 56
    np.testing.assert_allclose(boxes[0], [164 - 16, 84 - 40, 164 + 24, 84 + 56], atol=1e-6)
    # left split evenly between bins 2 and 3 -> 2.5 strides = 80 px; top 128, right 320, bottom 0
    np.testing.assert_allclose(boxes[1], [208 - 80, 208 - 128, 208 + 320, 208], atol=1e-6)


def test_decode_nothing_above_threshold_and_wrong_size():
    scores, dists = raw({5: (0.2, (1, 1, 1, 1))})
    b, s = decode(scores, dists, SIZE, threshold=0.5)
    assert b.shape == (0, 4) and s.shape == (0,)
    with pytest.raises(ValueError, match="cells"):
        decode(scores, dists, 320, threshold=0.1)


def test_nms_hand_checked():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10.5]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    assert iou(boxes[0], boxes[1:2])[0] == pytest.approx(81 / 119)
    assert list(nms(boxes, scores, 0.6)) == [3, 2]  # 0 and 1 overlap the best (3) too much
    assert iou(boxes[3], boxes[:2]) == pytest.approx([100 / 105, 85.5 / 119.5])
    assert list(nms(boxes, scores, 0.7)) == [3, 2]  # 0.95 and 0.72 > 0.7
    assert list(nms(boxes[:3], scores[:3], 0.7)) == [0, 1, 2]  # without 3, 1 survives 0 (0.68)
    assert list(nms(boxes, scores, 0.6, max_keep=1)) == [3]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)


def test_letterbox_maps_back():
    frame = np.zeros((480, 640, 3), np.uint8)
    frame[100:200, 300:340] = 255
    canvas, lb = letterbox_u8(frame, SIZE)
    assert lb == Letterbox(0.65, 0.0, 52.0, SIZE)
    assert canvas.shape == (416, 416, 3) and canvas[:52].max() == 0 and canvas[-52:].max() == 0
    ys, xs = np.nonzero(canvas[..., 0] > 127)
    got = lb.to_frame(np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]))[0]
    np.testing.assert_allclose(got, [300, 100, 340, 200], atol=2)
    np.testing.assert_allclose(lb.to_frame(np.array([[0, 52, 416, 364]])), [[0, 0, 640, 480]])


def test_tile_windows():
    assert tile_windows(640, 480, 1, 1, 0.2) == [(0, 0, 640, 480)]
    assert tile_windows(640, 480, 2, 1, 0.2) == [(0, 0, 640, 480), (0, 0, 356, 480), (284, 0, 640, 480)]
    w = tile_windows(640, 480, 2, 2, 0.2)
    assert len(w) == 5 and w[-1] == (284, 213, 640, 480) and w[1] == (0, 0, 356, 267)
