"""Review of the people detector (stop 40), on the real zoo model and package photos: frames that are empty (a camera
hiccup) in single and batched detector calls. (The hand tracker's review is tests/hands/test_review_stop40_hands.py.)"""
from __future__ import annotations

import numpy as np

from calibration.photos import load_photo
from edge.backends import load_session
from edge.core.frames import Frame
from edge.people import NanoDetPeople

MODEL = "nanodet_m_416"
EMPTY = [np.zeros((0, 0, 3), np.uint8), np.zeros((0, 640, 3), np.uint8), np.zeros((480, 0, 3), np.uint8)]


def test_an_empty_frame_has_nobody_and_does_not_sink_the_batch(people_zoo):
    """Guards: an empty image (a camera hiccup) raised ZeroDivisionError / cv2.error in the letterbox; in a batched
    call (several cameras due together, edge.app.streams) that lost the frames of every camera in the batch and
    counted a detector error against each of them. Now an empty frame has nobody in it, and the other frames of
    the batch get the boxes a run of their own gives."""
    det = NanoDetPeople(load_session("onnxruntime", people_zoo.artifact(MODEL, "onnxruntime", "fp32").path,
                                     threads=2), threshold=0.3)
    bus, zidane = load_photo("bus", people_zoo.cache), load_photo("zidane", people_zoo.cache)
    ref = [det.detect_boxes(bus), det.detect_boxes(zidane)]
    assert len(ref[0][0]) >= 2 and len(ref[1][0]) >= 1
    for empty in EMPTY:
        boxes, scores = det.detect_boxes(empty)
        assert boxes.shape == (0, 4) and scores.shape == (0,), empty.shape
        assert det(empty) == []
        got = det.detect_batch([bus, empty, zidane])
        assert got[1][0].shape == (0, 4) and got[1][1].shape == (0,)
        for (rb, rs), (gb, gs) in zip(ref, (got[0], got[2])):
            np.testing.assert_allclose(gb, rb, atol=1e-6)
            np.testing.assert_allclose(gs, rs, atol=1e-6)
        frames = [Frame(im, seq=i, t_capture=0.0, t_wall=0.0) for i, im in enumerate((empty, bus))]
        dets = det.frame_detections_batch(frames)
        assert len(dets[0]) == 0 and len(dets[1]) == len(ref[0][0])
