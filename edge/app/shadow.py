"""The runtime's side of the shadow evaluation of model updates (sync/update_shadow.py): which live session runs a
model here, and how two answers of that model to the same input are compared.

* pose landmarks: drift = mean distance of the 33 body landmarks, as a fraction of the model's input side, on
  samples where the active model sees a person (pose flag >= 0.5); presence agreement on every sample;
* pose detector and person detector: the detections of each answer (the stage's own decoding and threshold), matched
  one to one at IoU >= 0.5: recall = the active model's detections the update also finds, precision = the other way
  round.
"""
from __future__ import annotations

import numpy as np

from sync.update_shadow import ShadowTarget

NUM_LANDMARKS = 33
PERSON_FLAG = 0.5
MATCH_IOU = 0.5


def _batch(a: dict, key: str) -> int:
    return int(np.asarray(a[key]).shape[0]) if np.asarray(a[key]).ndim else 1


def compare_landmarks(size: int):
    """compare(active, candidate) of BlazePose landmark outputs (`Identity` (B, 195) crop px, `Identity_1` flag)."""
    def compare(a: dict, c: dict) -> dict:
        drift, agree = [], []
        for i in range(_batch(a, "Identity")):
            fa = float(np.asarray(a["Identity_1"][i]).reshape(-1)[0])
            fc = float(np.asarray(c["Identity_1"][i]).reshape(-1)[0])
            agree.append((fa >= PERSON_FLAG) == (fc >= PERSON_FLAG))
            if fa < PERSON_FLAG:
                continue
            xa = np.asarray(a["Identity"][i], np.float64).reshape(-1, 5)[:NUM_LANDMARKS, :2]
            xc = np.asarray(c["Identity"][i], np.float64).reshape(-1, 5)[:NUM_LANDMARKS, :2]
            drift.append(float(np.linalg.norm(xa - xc, axis=1).mean() / size))
        return {"drift": drift, "flag_agree": agree}
    return compare


def _match(boxes_a: np.ndarray, boxes_c: np.ndarray, iou) -> dict:
    """Detections of both answers and how many the other one matches at IoU >= MATCH_IOU, one to one (greedy, best
    IoU first): one box of an update that merges two neighbours finds one of them, not both."""
    pairs = sorted(((float(v), i, j) for i, b in enumerate(boxes_a) if len(boxes_c)
                    for j, v in enumerate(iou(b, boxes_c)) if v >= MATCH_IOU), reverse=True)
    used_a: set[int] = set()
    used_c: set[int] = set()
    for _, i, j in pairs:
        if i not in used_a and j not in used_c:
            used_a.add(i)
            used_c.add(j)
    m = len(used_a)
    return {"active": len(boxes_a), "candidate": len(boxes_c), "matched_active": m, "matched_candidate": m}


def _compare_boxes(boxes, iou):
    """compare(active, candidate) summing _match over the batch; boxes(outputs, i) decodes sample i."""
    def compare(a: dict, c: dict) -> dict:
        tot: dict[str, int] = {}
        for i in range(_batch(a, "Identity")):
            for k, v in _match(boxes(a, i), boxes(c, i), iou).items():
                tot[k] = tot.get(k, 0) + v
        return tot
    return compare


def compare_pose_detections(size: int, threshold: float, nms_iou: float):
    """compare(active, candidate) of BlazePose person-detector outputs, decoded as PersonDetector does."""
    from edge.pose.detection import Letterbox, decode, iou

    lb = Letterbox(1.0, 0.0, 0.0, size)

    def boxes(out: dict, i: int) -> np.ndarray:
        dets = decode(out["Identity"][i:i + 1], out["Identity_1"][i:i + 1], lb, threshold=threshold,
                      iou_threshold=nms_iou)
        return np.array([d.box for d in dets]).reshape(-1, 4)
    return _compare_boxes(boxes, iou)


def compare_people(size: int, threshold: float, nms_iou: float):
    """compare(active, candidate) of NanoDet outputs (one window each), decoded as NanoDetPeople does."""
    from edge.people.nanodet import decode, iou, nms

    def boxes(out: dict, i: int) -> np.ndarray:
        b, s = decode(out["Identity"][i:i + 1], out["Identity_1"][i:i + 1], size, threshold)
        return b[nms(b, s, nms_iou)].reshape(-1, 4)
    return _compare_boxes(boxes, iou)


def _info(session):
    """The info of the model itself (a guarded session's primary, not a fallback answering now)."""
    return getattr(session, "primary", session).info


def _side(session) -> int:
    shape = session.inputs[0].shape
    return int(shape[1]) if len(shape) == 4 and shape[1] > 0 else 256


class RuntimeShadow:
    """The ShadowHost of a Runtime: model name -> ShadowTarget over the session the runtime runs it on now (the
    pose models of the main camera, the shared person detector), or None for a model it does not run."""

    def __init__(self, runtime):
        self.rt = runtime

    def __call__(self, name: str) -> ShadowTarget | None:
        cfg, stage = self.rt.cfg, self.rt.stage
        m = cfg.models
        if stage is not None and stage.pose is not None:
            from edge.pose.pipeline import landmark_outputs

            det, lmk = stage.pose.sessions
            if name == m.pose_landmarks.name:
                return self._target(lmk, m.pose_landmarks, compare_landmarks(_side(lmk)),
                                    outputs=landmark_outputs(cfg.pose))
            if name == m.pose_detector.name:
                return self._target(det, m.pose_detector, compare_pose_detections(
                    _side(det), cfg.pose.detection_threshold, cfg.pose.nms_iou))
        people = getattr(self.rt, "_people", None)
        if people is not None and m.person_detector is not None and name == m.person_detector.name:
            return self._target(people.session, m.person_detector, compare_people(
                people.size, people.threshold, people.nms_iou))
        return None

    @staticmethod
    def _target(session, ref, compare, outputs=None) -> ShadowTarget:
        info = _info(session)
        return ShadowTarget(session=session, backend=info.backend, precision=info.precision, threads=ref.threads,
                            compare=compare, outputs=outputs, path=info.path)
