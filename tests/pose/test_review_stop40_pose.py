"""Second-look review of edge/pose (stop 40): tracking across stream-time gaps and time going back, and which id
survives when a track whose person left converges on another tracked person. Real models, real package photos."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from calibration.photos import load_photo
from edge.core.frames import Frame
from edge.pose.config import PoseConfig
from edge.pose.pipeline import PosePipeline
from tests.pose.conftest import pose_sessions


def pipeline(**cfg) -> PosePipeline:
    cfg.setdefault("segmentation", False)
    return PosePipeline.from_sessions(PoseConfig(**cfg), *pose_sessions("openvino"))


def frame(img: np.ndarray, t: float, seq: int = 0) -> Frame:
    return Frame(img, seq, time.monotonic(), time.time(), t_media=t)


def grace_square() -> np.ndarray:
    """grace_hopper.jpg as a 512x512 frame, like astronaut.png: another person standing where the astronaut was."""
    return cv2.resize(load_photo("grace_hopper"), (512, 600))[44:556].copy()


def test_a_track_is_not_carried_over_a_long_gap_onto_whoever_stands_there():
    """A camera that stalls or reconnects (20 s without frames) while its shopper leaves and another steps up: the
    old track's ROI was reused on the new person, who got the previous shopper's id (their dwell, their try-on
    session and sizing) without a detector run. After a gap longer than max_gap_s the tracker starts afresh."""
    astro, grace = load_photo("astronaut"), grace_square()
    pipe = pipeline()
    ids = {p.track_id for i in range(5) for p in pipe.process(frame(astro, i / 30, i)).people}
    assert len(ids) == 1
    res = pipe.process(frame(grace, 20.0, 5))
    assert res.detector_ran, "after a 20 s gap the detector must look for the people again"
    assert len(res.people) == 1 and res.people[0].track_id not in ids
    fresh = pipeline().process(frame(grace, 20.0)).people[0]
    assert np.allclose(res.people[0].landmarks, fresh.landmarks)  # exactly what a fresh pipeline sees
    # a short gap (a few dropped frames) keeps the track
    pipe = pipeline()
    ids = {p.track_id for i in range(3) for p in pipe.process(frame(astro, i / 30, i)).people}
    res = pipe.process(frame(astro, 0.5, 3))
    assert not res.detector_ran and [p.track_id for p in res.people] == list(ids)


def test_a_stream_slower_than_max_gap_s_keeps_its_track():
    """A time-lapse camera (a pose run every 3 s, `fps = 0.33`) is a slow stream, not a gap at every frame: its
    interval is learnt (also across the first reset), so one person standing still keeps one id (before: a new id
    at every frame, so every frame was a person_left and a person_entered)."""
    astro = load_photo("astronaut")
    pipe = pipeline()
    ids = [[p.track_id for p in pipe.process(frame(astro, 3.0 * i, i)).people] for i in range(6)]
    assert all(len(x) == 1 for x in ids) and len({x[0] for x in ids[1:]}) == 1, ids


def test_time_going_back_restarts_tracking_and_smoothing():
    """A stream whose clock goes back (a clip restarted on the same pipeline): the One-Euro filters passed every value
    through unsmoothed until the clock caught up with the old time, and the tracks kept their ROIs from the other
    timeline. After a step back the pipeline gives what a fresh one gives."""
    img = load_photo("astronaut")
    frames = [cv2.warpAffine(img, np.float32([[1, 0, 6 * i], [0, 1, 3 * i]]), img.shape[1::-1],
                             borderMode=cv2.BORDER_REPLICATE) for i in range(5)]
    pipe, fresh = pipeline(), pipeline()
    for i, f in enumerate(frames):
        pipe.process(frame(f, 60.0 + i / 30, i))
    for i, f in enumerate(frames):
        got, want = pipe.process(frame(f, i / 30, 5 + i)), fresh.process(frame(f, i / 30, i))
        assert got.detector_ran == want.detector_ran and len(got.people) == len(want.people) == 1, i
        assert np.allclose(got.people[0].landmarks, want.people[0].landmarks), i


def test_the_person_who_stays_keeps_their_id_when_the_other_leaves():
    """Two tracked people side by side; one leaves. Their track's ROI (which covers the neighbour) slides onto the
    one who stayed, and the two tracks were merged into the older id: the person who stayed took the id of the
    one who left, and their own id ended (a person_left for someone still there, their dwell restarted under the
    other's id). The track that was already on the person keeps it."""
    astro, grace = load_photo("astronaut"), grace_square()
    both = np.hstack([grace, astro])  # the detector finds both, grace first (the better score): the older track
    only_astro = both.copy()
    only_astro[:, :512] = 128  # grace leaves
    pipe = pipeline(max_people=2, redetect_interval=1)
    for i in range(4):
        pipe.process(frame(both, i / 30, i))
    res = pipe.process(frame(both, 4 / 30, 4))
    assert len(res.people) == 2, [p.roi for p in res.people]
    astro_id = next(p.track_id for p in res.people if p.roi.cx >= 512)
    grace_id = next(p.track_id for p in res.people if p.roi.cx < 512)
    assert grace_id < astro_id  # the one who leaves holds the older id
    seen = []
    for i in range(5, 16):
        res = pipe.process(frame(only_astro, i / 30, i))
        seen.append([(p.track_id, round(p.roi.cx)) for p in res.people])
    assert all(astro_id in [tid for tid, _ in s] for s in seen), (astro_id, grace_id, seen)
    assert seen[-1] == [(astro_id, seen[-1][0][1])] and seen[-1][0][1] >= 512, (astro_id, grace_id, seen)


def nan_world_session(tmp_path):
    """The real FP32 landmark IR whose world-landmark output (Identity_4) alone is multiplied by NaN: landmarks,
    pose flag, heatmap and mask stay the real model's."""
    import openvino as ov

    from edge.backends.registry import load_session
    from models.zoo import ModelZoo

    src = ModelZoo().model_dir("pose_landmark_full") / "pose_landmark_full_fp32.xml"
    if not src.is_file():
        pytest.fail("pose_landmark_full is not built: run `edge models build`")
    model = ov.Core().read_model(str(src))
    (result,) = [r for r in model.get_results() if "Identity_4" in r.output(0).get_names()]
    world = result.input(0).get_source_output()
    nan = ov.opset13.multiply(world, ov.op.Constant(np.array(np.nan, np.float32)))
    result.input(0).replace_source_output(nan.output(0))
    ov.save_model(model, str(tmp_path / "nan_world.xml"), compress_to_fp16=False)
    return load_session("openvino", tmp_path / "nan_world.xml", threads=2, precision="fp32")


def test_non_finite_world_landmarks_make_no_track(tmp_path):
    """World landmarks were left out of the non-finite check: a landmark run with NaN world landmarks made or kept a
    track that reported NaN metres (try-on fitting reads them), and fed the NaN into the track's world One-Euro
    filter, which then gave NaN for every later frame of that person even once the model's outputs were finite."""
    det, good = pose_sessions("openvino")
    bad = nan_world_session(tmp_path)
    img = load_photo("astronaut")
    out = bad.run({bad.inputs[0].name: np.zeros(bad.inputs[0].shape, np.float32)})
    assert np.isnan(out["Identity_4"]).all() and np.isfinite(out["Identity"]).all()
    pipe = PosePipeline.from_sessions(PoseConfig(segmentation=False), det, bad)
    assert pipe.process(frame(img, 0.0)).people == [] and pipe.tracker.tracks == []
    # a transient NaN frame on a tracked person: the track ends, and the person's next track reports numbers
    pipe = PosePipeline.from_sessions(PoseConfig(segmentation=False), det, good)
    first = pipe.process(frame(img, 0.0)).people
    assert len(first) == 1 and np.isfinite(first[0].world).all()
    pipe.landmarks.session = bad
    assert pipe.process(frame(img, 1 / 30, 1)).people == []
    pipe.landmarks.session = good
    for i in range(2, 5):
        people = pipe.process(frame(img, i / 30, i)).people
        assert len(people) == 1 and np.isfinite(people[0].world).all(), i
