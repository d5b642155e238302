"""The NanoDet people detector on the real zoo files, every installed backend: the hand-checked people in the
package photos, small pasted people with known boxes, and clear errors for bad model files."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from devtools.detector_eval import match, recall_at
from edge.app.config import ModelRef
from edge.backends import load_session
from edge.backends.base import ModelLoadError
from edge.people import NanoDetPeople, PeopleModelError, PersonDetection, open_detector

MODEL = "nanodet_m_416"


def _detector(zoo, backend: str, precision: str = "fp32", **kw) -> NanoDetPeople:
    return NanoDetPeople(load_session(backend, zoo.artifact(MODEL, backend, precision).path, threads=2,
                                      precision=precision), **kw)


def _iou(a, b) -> float:
    lt, rb = np.maximum(a[:2], b[:2]), np.minimum(a[2:], b[2:])
    inter = float(np.prod(np.clip(rb - lt, 0, None)))
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _real(frames):
    return [f for f in frames if f.kind == "real"]


def _variants(zoo, backends) -> list[tuple[str, str]]:
    """FP32 on every installed backend, plus the default precision where it is not FP32 (INT8), plus OpenVINO bf16
    (the default on CPUs with native bf16; elsewhere it runs in f32)."""
    out = [(b, "fp32") for b in backends]
    out += [(b, zoo.default_precision(MODEL, b)) for b in backends if zoo.default_precision(MODEL, b) != "fp32"]
    return out + [(b, "bf16") for b in backends if any(a.backend == b and a.precision == "bf16"
                                                       for a in zoo.artifacts(MODEL))]


# measured on this set (seed 7): FP32 10 of 12 real people, recall small 0.42 / medium 0.70 / large 0.77 at 0.07
# false positives per frame; OpenVINO INT8 0.38 / 0.68 / 0.74; TFLite INT8 9 real, 0.41 / 0.73 / 0.81; OpenVINO bf16
# (AVX512-BF16 CPU) as FP32
MIN_REAL = {"fp32": 10, "int8": 9, "bf16": 10}
MIN_RECALL = {"fp32": (0.40, 0.65, 0.72), "int8": (0.36, 0.64, 0.70), "bf16": (0.40, 0.65, 0.72)}


def test_people_in_the_real_photos(people_zoo, backends, small_set):
    """bus (4 people, 2 cut by the frame), zidane (2), t1 (6 seated): whole photos letterboxed to 640x480,
    default detector (tiles 2x1, threshold 0.5)."""
    for backend, precision in _variants(people_zoo, backends):
        det = _detector(people_zoo, backend, precision)
        dets = [det.detect_boxes(f.image) for f in _real(small_set)]
        m = match(_real(small_set), dets)
        hits, fps = int((m.gt_best >= det.threshold).sum()), int(m.fp.sum())
        assert hits >= MIN_REAL[precision] and fps == 0, \
            f"{backend}/{precision}: {hits} of {len(m.gt_best)} hand-checked people, {fps} false positives"
        bus = dets[0][0]  # the two full-body men in bus.jpg, tightly
        for gt in _real(small_set)[0].boxes[:2]:
            assert max(_iou(gt, b) for b in bus) > 0.75, (backend, precision)


def test_bus_men_get_tight_boxes(people_zoo, backends):
    from calibration.photos import load_photo

    img = load_photo("bus", people_zoo.cache)
    for backend in backends:
        people = _detector(people_zoo, backend)(img)
        assert all(isinstance(p, PersonDetection) and p.keypoints is None for p in people)
        boxes = [p.box for p in people]
        for gt in ((50, 398, 245, 902), (222, 405, 345, 860)):
            assert max(_iou(np.array(gt, float), b) for b in boxes) > 0.75, (backend, boxes)
        assert people[0].score >= people[-1].score and people[0].foot[1] == pytest.approx(people[0].box[3])


def test_small_pasted_people(people_zoo, backends, small_set):
    """Composites with people 30-420 px tall over person-free scenes, occluded; real photos shrunk to 45-110 px.
    Recall per size bucket (small < 80 px, medium < 160 px) at the default threshold, false positives per frame."""
    frames = [f for f in small_set if f.kind != "real"]
    for backend, precision in _variants(people_zoo, backends):
        det = _detector(people_zoo, backend, precision)
        m = match(frames, [det.detect_boxes(f.image) for f in frames])
        r = recall_at(m, det.threshold)
        fppi = float(m.fp[m.scores >= det.threshold].sum()) / len(frames)
        small, medium, large = MIN_RECALL[precision]
        assert r["n_small"] >= 100 and r["n_medium"] >= 40 and r["n_large"] >= 30, r
        assert r["small"] >= small and r["medium"] >= medium and r["large"] >= large, (backend, precision, r)
        assert fppi <= 0.1, (backend, precision, fppi)


def test_tiles_find_more_small_people_than_one_pass(people_zoo, small_set):
    frames = [f for f in small_set if f.kind in ("composite", "real_small")]
    one, tiled = _detector(people_zoo, "openvino", tiles=(1, 1)), _detector(people_zoo, "openvino", tiles=(2, 1))
    r1 = recall_at(match(frames, [one.detect_boxes(f.image, 0.45) for f in frames]), 0.45)
    r2 = recall_at(match(frames, [tiled.detect_boxes(f.image, 0.45) for f in frames]), 0.45)
    assert r2["small"] > r1["small"] + 0.05, (r1, r2)


def test_open_detector_resolves_auto(people_zoo, small_set):
    from edge.core.detections import Detections
    from edge.core.frames import Frame

    det = open_detector(people_zoo, ModelRef(name=MODEL, backend="auto", threads=1), threshold=0.4)
    assert isinstance(det, NanoDetPeople) and det.threshold == 0.4 and det.size == 416
    assert det(np.zeros((480, 640, 3), np.uint8)) == []  # a black frame has nobody in it
    bus = _real(small_set)[0].image
    people = det(bus)
    dets = det.frame_detections(Frame(bus, seq=1, t_capture=0.0, t_wall=0.0))
    assert isinstance(dets, Detections) and len(dets) == len(people) >= 2
    assert dets.keypoints is None and (dets.class_id == 0).all()
    np.testing.assert_allclose(dets.xyxy, np.stack([p.box for p in people]), atol=1e-3)
    np.testing.assert_allclose(dets.anchors("bottom_center")[0], people[0].foot, atol=1e-3)
    with pytest.raises(PeopleModelError, match="not a people detector"):
        open_detector(people_zoo, ModelRef(name="pose_detection", backend="onnxruntime"))


def test_corrupt_model_file_is_a_clear_error(people_zoo, backends, tmp_path):
    for backend in backends:
        good = people_zoo.artifact(MODEL, backend, "fp32").path
        bad = tmp_path / good.name
        data = good.read_bytes()
        bad.write_bytes(data[: len(data) // 3])  # truncated download
        if good.suffix == ".xml":
            shutil.copy(good, bad)
            bad.with_suffix(".bin").write_bytes(good.with_suffix(".bin").read_bytes()[:1000])
        with pytest.raises(ModelLoadError) as e:
            load_session(backend, bad)
        assert backend in str(e.value) and str(bad) in str(e.value)


def test_wrong_model_is_a_clear_error(people_zoo):
    s = load_session("onnxruntime", people_zoo.artifact("pose_detection", "onnxruntime", "fp32").path)
    with pytest.raises(PeopleModelError, match="not a NanoDet person model.*Identity"):
        NanoDetPeople(s)
