"""End-to-end on real package photos with real models: landmarks against the MediaPipe reference fixtures,
tracking ids, empty scenes, multi-person, segmentation, detector scheduling."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from calibration.photos import PHOTOS, load_photo
from edge.core.frames import Frame
from edge.pose.config import PoseConfig
from devtools.pose_metrics import drift
from devtools.motion import SEQUENCES
from edge.pose.pipeline import PosePipeline
from tests.pose.conftest import BACKENDS, pose_sessions

PHOTO_TOL = 0.03  # of torso size; measured 0.0002-0.015 (the reference's own ±1-grey-level noise is ~0.03)
SEQ_MEAN_TOL, SEQ_MAX_TOL = 0.025, 0.06  # tracking mode, One-Euro on both sides


def pipeline(backend: str = "openvino", **cfg) -> PosePipeline:
    cfg.setdefault("segmentation", False)
    return PosePipeline.from_sessions(PoseConfig(**cfg), *pose_sessions(backend))


def frame(img: np.ndarray, i: int = 0) -> Frame:
    return Frame(img, i, time.monotonic(), time.time(), t_media=i / 30.0)  # a recorded clip at 30 FPS


@pytest.mark.parametrize("backend", BACKENDS)
def test_photos_match_mediapipe(backend, reference):
    for p in PHOTOS:
        ref = reference["photos"][p.name]
        res = pipeline(backend).process(frame(load_photo(p.name)))
        if ref["landmarks"] is None:
            assert res.people == [], f"{p.name}: MediaPipe finds nobody, we found {len(res.people)}"
            continue
        assert len(res.people) == 1, p.name
        person = res.people[0]
        assert person.landmarks.shape == (33, 5) and person.world.shape == (33, 3)
        d = drift(np.asarray(ref["landmarks"]), person.landmarks)
        assert d is not None and d <= PHOTO_TOL, f"{backend} {p.name}: drift {d:.4f} > {PHOTO_TOL}"
        world_err = np.abs(np.asarray(ref["world"]) - person.world).mean()
        assert world_err < 0.02, f"{p.name}: world landmarks off by {world_err:.3f} m"
        assert 0.5 <= person.score <= 1.0


@pytest.mark.parametrize("clip", ["bus_walk", "astronaut_zoom"])
def test_tracking_sequence_matches_mediapipe(clip, reference):
    refs = reference["sequences"][clip]
    frames = list(SEQUENCES[clip](reference["sequence_clip_frames"]))[:len(refs)]
    pipe = pipeline()
    drifts, ran = [], []
    for i, (img, ref) in enumerate(zip(frames, refs)):
        res = pipe.process(frame(img, i))
        ran.append(res.detector_ran)
        assert len(res.people) == 1
        drifts.append(drift(np.asarray(ref), res.people[0].landmarks))
    assert ran == [True] + [False] * (len(frames) - 1)  # detector once, then tracking from landmarks
    assert np.mean(drifts) <= SEQ_MEAN_TOL and max(drifts) <= SEQ_MAX_TOL, np.round(drifts, 4)


def test_track_id_kept_across_shifted_sequence():
    img = load_photo("astronaut")
    pipe = pipeline()
    ids, ran = [], []
    for i in range(15):
        shifted = cv2.warpAffine(img, np.float32([[1, 0, 4 * i], [0, 1, 2 * i]]), img.shape[1::-1],
                                 borderMode=cv2.BORDER_REPLICATE)
        res = pipe.process(frame(shifted, i))
        ids.append([p.track_id for p in res.people])
        ran.append(res.detector_ran)
    assert ids == [[ids[0][0]]] * 15
    assert ran == [True] + [False] * 14


def test_landmarks_follow_the_motion():
    img = load_photo("astronaut")
    pipe = pipeline(smoothing={"enabled": False})
    first = pipe.process(frame(img, 0)).people[0].landmarks
    moved = cv2.warpAffine(img, np.float32([[1, 0, 12], [0, 1, -8]]), img.shape[1::-1], borderMode=cv2.BORDER_REPLICATE)
    second = pipe.process(frame(moved, 1)).people[0].landmarks
    vis = first[:, 3] > 0.5
    shift = np.median(second[vis, :2] - first[vis, :2], axis=0)
    assert shift == pytest.approx([12, -8], abs=3.0)


@pytest.mark.parametrize("scene", ["blank", "grey", "facade"])
def test_empty_scene_yields_nothing(scene):
    img = {"blank": np.zeros((480, 640, 3), np.uint8), "grey": np.full((480, 640, 3), 128, np.uint8),
           "facade": load_photo("bus")[:300]}[scene]  # the building above the bus: no people
    pipe = pipeline(max_people=2)
    for i in range(3):
        res = pipe.process(frame(img, i))
        assert res.people == [] and res.detector_ran  # keeps looking while nobody is tracked
    assert res.image_size == img.shape[:2]


def test_multi_person_stable_ids():
    img = load_photo("t1")  # 6 seated people side by side; the detector finds 5 at this scale
    pipe = pipeline(max_people=4, redetect_interval=1)
    first = pipe.process(frame(img, 0))
    assert len(first.people) >= 3
    ids = sorted(p.track_id for p in first.people)
    assert len(set(ids)) == len(ids)
    for i in range(1, 4):
        shifted = cv2.warpAffine(img, np.float32([[1, 0, 3 * i], [0, 1, 0]]), img.shape[1::-1],
                                 borderMode=cv2.BORDER_REPLICATE)
        res = pipe.process(frame(shifted, i))
        assert set(ids) <= {p.track_id for p in res.people}, "existing tracks must keep their ids"
        rois = [p.roi for p in res.people]
        assert len({(round(r.cx), round(r.cy)) for r in rois}) == len(rois)  # no duplicate tracks


def test_redetect_throttled_below_max_people():
    img = load_photo("astronaut")
    pipe = pipeline(max_people=2, redetect_interval=3)
    ran = [pipe.process(frame(img, i)).detector_ran for i in range(7)]
    assert ran == [True, False, False, True, False, False, True]
    pipe = pipeline(max_people=1)
    ran = [pipe.process(frame(img, i)).detector_ran for i in range(4)]
    assert ran == [True, False, False, False]  # at max_people the detector never runs while tracking


def test_verify_interval_reanchors_and_replaces_tracks():
    """verify_interval: at max_people the detector runs every K frames; a track whose size ran away is re-anchored
    on its detection (same id), a track no detection confirms gives way to the detected person in the same frame."""
    from edge.pose.types import Roi

    img = load_photo("astronaut")
    pipe = pipeline(max_people=1, verify_interval=3)
    assert [pipe.process(frame(img, i)).detector_ran for i in range(7)] == [True, False, False, True, False, False,
                                                                             True]
    for verify, want_ratio in ((1, (0.8, 1.25)), (0, (2.3, 2.7))):
        pipe = pipeline(max_people=1, verify_interval=verify)
        first = pipe.process(frame(img, 0)).people[0]
        tr = pipe.tracker.tracks[0]
        tr.roi = Roi(tr.roi.cx, tr.roi.cy, tr.roi.size * 2.5, tr.roi.rotation)  # a scale that ran away
        tr.points = np.array([tr.points[0], tr.points[0] + (tr.points[1] - tr.points[0]) * 2.5])
        res = pipe.process(frame(img, 1)).people
        assert len(res) == 1 and res[0].track_id == first.track_id
        assert want_ratio[0] < res[0].roi.size / first.roi.size < want_ratio[1], (verify, res[0].roi, first.roi)
    pipe = pipeline(max_people=1, verify_interval=1)
    first = pipe.process(frame(img, 0)).people[0]
    tr = pipe.tracker.tracks[0]
    far = np.array([img.shape[1] * 0.05, img.shape[0] * 0.05])  # a ghost: the track moved off the person
    tr.points, tr.roi = tr.points - tr.points[0] + far, Roi(far[0], far[1], tr.roi.size * 0.3, 0.0)
    res = pipe.process(frame(img, 1)).people
    assert len(res) == 1 and res[0].track_id != first.track_id  # another track, started from the detection
    assert drift(first.landmarks, res[0].landmarks) < 0.05


@pytest.mark.parametrize("max_people", [1, 2])
def test_verify_interval_keeps_ids_among_people_side_by_side(max_people):
    """verify_interval with people side by side (t1.jpg, about half a body scale apart): each track keeps its id
    and its person at every check (a detection confirms its nearest track, not the first one in range)."""
    img = load_photo("t1")
    pipe = pipeline(max_people=max_people, verify_interval=1)
    first = {p.track_id: p.roi for p in pipe.process(frame(img, 0)).people}
    assert len(first) == max_people
    for i in range(1, 5):
        shifted = cv2.warpAffine(img, np.float32([[1, 0, 2 * i], [0, 1, 0]]), img.shape[1::-1],
                                 borderMode=cv2.BORDER_REPLICATE)
        res = pipe.process(frame(shifted, i))
        assert res.detector_ran and {p.track_id for p in res.people} == set(first), i
        for p in res.people:
            r0 = first[p.track_id]
            assert np.hypot(p.roi.cx - r0.cx, p.roi.cy - r0.cy) < 0.15 * r0.size, (i, p.track_id, p.roi, r0)


def test_segmentation_mask_in_image_coordinates():
    img = load_photo("astronaut")
    res = pipeline(segmentation=True).process(frame(img))
    m = res.people[0].mask
    assert m.shape == img.shape[:2] and m.dtype == np.float32 and 0 <= m.min() and m.max() <= 1
    lm = res.people[0].landmarks
    chest = ((lm[11, :2] + lm[12, :2]) / 2 * 0.7 + (lm[23, :2] + lm[24, :2]) / 2 * 0.3).astype(int)
    x, y = np.clip(chest, 0, [img.shape[1] - 1, img.shape[0] - 1])
    assert m[y, x] > 0.5  # on the person
    assert pipeline(segmentation=False).process(frame(img)).people[0].mask is None


def test_pipeline_from_config_and_zoo():
    from edge.app.config import ModelRef, ModelsSection
    from models.zoo import ModelNotBuilt

    models = ModelsSection(pose_detector=ModelRef(name="pose_detection", backend="openvino", precision="fp32"),
                           pose_landmarks=ModelRef(name="pose_landmark_full", backend="openvino", precision="fp32"))
    try:
        pipe = PosePipeline((PoseConfig(segmentation=False), models))
    except ModelNotBuilt as e:
        pytest.fail(f"zoo not built (run `edge models build`): {e}")
    res = pipe.process(frame(load_photo("grace_hopper")))
    assert len(res.people) == 1 and res.timings_ms["pose"] > 0
    assert pipe.sessions[1].info.backend == "openvino"


def test_bgr_frames_give_what_a_converted_frame_gives():
    """The pipeline reads the camera's BGR frame and converts only the detector letterbox and the landmark crops:
    exactly the landmarks, flags and masks of converting the whole frame to RGB first (the old path)."""
    from edge.pose.tracker import PoseTracker

    img = load_photo("bus")
    new = pipeline(max_people=3, segmentation=True, smoothing={"enabled": False})
    old = pipeline(max_people=3, segmentation=True, smoothing={"enabled": False})
    old_tracker = PoseTracker(old.cfg, old.detector, old.landmarks)
    for i in range(3):
        shifted = cv2.warpAffine(img, np.float32([[1, 0, 3 * i], [0, 1, 0]]), img.shape[1::-1],
                                 borderMode=cv2.BORDER_REPLICATE)
        f = frame(shifted, i)
        got = new.process(f).people
        want, _ = old_tracker.step(cv2.cvtColor(shifted, cv2.COLOR_BGR2RGB), f.t)
        assert len(got) == len(want) >= 1
        for a, b in zip(got, want):
            assert np.array_equal(a.landmarks, b.landmarks) and a.score == b.score
            assert np.array_equal(a.mask, b.mask)


def test_replayed_rois_are_the_ones_the_next_frame_uses():
    """PoseTracker.replay_rois (edge bench pose's model-vs-loop split): a pipeline fed noisy frames runs its landmark
    model on exactly the other pipeline's ROIs once they are replayed; left alone, its own ROIs drift apart."""
    img = load_photo("astronaut")
    rng = np.random.default_rng(0)
    clean, free, replayed = pipeline(), pipeline(), pipeline()
    own_differs = False
    for i in range(6):
        shifted = cv2.warpAffine(img, np.float32([[1, 0, 5 * i], [0, 1, 2 * i]]), img.shape[1::-1],
                                 borderMode=cv2.BORDER_REPLICATE)
        noisy = np.clip(shifted.astype(np.int16) + rng.integers(-1, 2, shifted.shape), 0, 255).astype(np.uint8)
        want = clean.process(frame(shifted, i)).people[0].roi
        got = replayed.process(frame(noisy, i)).people[0].roi
        own = free.process(frame(noisy, i)).people[0].roi
        if i > 0:
            assert got == want, i
            own_differs |= own != want
        replayed.tracker.replay_rois(clean.tracker.next_rois())
    assert own_differs
    assert clean.tracker.next_rois() == [t.roi for t in clean.tracker.tracks] and len(clean.tracker.next_rois()) == 1
