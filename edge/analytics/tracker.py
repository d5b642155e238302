"""ByteTrack-style multi-object tracker on the stream clock.

Each track has a constant-velocity Kalman filter on (centre x, centre y, aspect w/h, height). Per frame:
1. predict every track to the frame's time `t`;
2. match high-score detections to tracked (confirmed) tracks by IoU (Hungarian), then the rest to lost tracks;
3. match low-score detections to the confirmed tracks still unmatched (a partly occluded person scores low);
4. match the remaining high-score detections to tentative tracks; a tentative track that misses a frame is dropped;
5. start a tentative track from each remaining detection scoring at least `new_track_score`; with `low_track_hits`
   also a "weak" one from each remaining weaker detection that no other box covers (a person the detector only
   ever scores low, e.g. a near person of an unusual look), confirmed after `low_track_hits` matched frames.
A tentative track is confirmed after `min_hits` consecutive matched frames and only then gets an id. A confirmed
track that goes unmatched is "lost" and kept for `lost_s` seconds of stream time, so its id survives a short
occlusion or a crossing; no frame at all for longer than `lost_s`, twice the interval before and OUTAGE_S (a camera
outage, not a slow frame) ends every track, so nobody found after the gap inherits an id. A person being covered yields ever
smaller boxes just before vanishing, which would send the filter off with a false velocity; so when a track is
lost its state restarts from its last full-size observation with the velocity fitted over its recent full-size
observations, and it keeps moving with that.
Lost tracks are matched on IoU of boxes grown by `lost_buffer` of their size (buffered IoU), which tolerates the
drift of small, slow or turning people over a short occlusion.

With the frame image (`update(..., image=frame)`) each track also keeps an appearance: colour histograms (HSV) of
three horizontal stripes of its box (head and shoulders, torso, legs), averaged over its unoccluded detections.
The matching cost of a pair that passes the IoU gate is then `1 - IoU + appearance_weight x` the Bhattacharyya
distance of the two appearances, so when two people cross and their boxes overlap, each track keeps the person
who looks like it rather than the box that overlaps it most, and a lost track found again between two boxes takes
the one that looks like it. It costs about 1 ms per frame of 5-10 people on the 2-core development VM
(docs/BENCHMARKS.md, `edge bench behaviour`).
"""
from __future__ import annotations

import logging
from collections import deque

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

from edge.analytics.base import OUTAGE_S, is_outage  # noqa: F401 - OUTAGE_S: the tracker's public constant
from edge.core.detections import Detections, box_iou

log = logging.getLogger(__name__)

# ByteTrack's noise weights (relative to box height) are per frame at 30 fps; scaled here by elapsed time.
_REF_FPS = 30.0
_W_POS, _W_VEL = 1.0 / 20, 1.0 / 160
_HISTORY_S = 1.5  # observations kept to refit a lost track's motion
_FULL_H = 0.85  # an observation at least this share of the track's recent tallest box is "full size"

TENTATIVE, TRACKED, LOST = "tentative", "tracked", "lost"

# Appearance: HSV histogram (8 hue x 3 saturation x 3 value bins) of 3 stripes of the box's inner part
_APP_BINS, _APP_RANGES = [8, 3, 3], [0, 180, 0, 256, 0, 256]
_APP_STRIPES = 3
_APP_INNER = (0.2, 0.1)  # share of the box width / height left out on each side (background, the arms)
_APP_MIN_PX = (3, 9)  # smallest inner crop (w, h) with an appearance
_APP_MOMENTUM = 0.95  # share of the old appearance kept on each clean update
_APP_CLEAN_IOA = 0.15  # a box another one covers by more than this share of its area shows more than one person


def appearance(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(N, D) float32 appearance of each xyxy box of a BGR image: the square roots of the normalised HSV histograms
    of 3 horizontal stripes of the box's inner part (so that the dot product of two rows is their Bhattacharyya
    coefficient); a row of NaN where the box is too small, outside the image or not finite."""
    d = _APP_STRIPES * int(np.prod(_APP_BINS))
    out = np.full((len(boxes), d), np.nan, np.float32)
    ih, iw = image.shape[:2]
    for i, (x0, y0, x1, y1) in enumerate(np.asarray(boxes, np.float64)):
        if not np.isfinite((x0, y0, x1, y1)).all():
            continue
        w, h = x1 - x0, y1 - y0
        cx0, cx1 = int(max(0, x0 + _APP_INNER[0] * w)), int(min(iw, x1 - _APP_INNER[0] * w))
        cy0, cy1 = int(max(0, y0 + _APP_INNER[1] * h)), int(min(ih, y1 - _APP_INNER[1] * h))
        if cx1 - cx0 < _APP_MIN_PX[0] or cy1 - cy0 < _APP_MIN_PX[1]:
            continue
        hsv = cv2.cvtColor(np.ascontiguousarray(image[cy0:cy1, cx0:cx1]), cv2.COLOR_BGR2HSV)
        n = len(hsv)
        parts = []
        for k in range(_APP_STRIPES):
            hist = cv2.calcHist([hsv[k * n // _APP_STRIPES:(k + 1) * n // _APP_STRIPES]], [0, 1, 2], None, _APP_BINS,
                                _APP_RANGES).ravel()
            parts.append(hist / (max(float(hist.sum()), 1.0) * _APP_STRIPES))
        out[i] = np.sqrt(np.concatenate(parts))
    return out


def appearance_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) Bhattacharyya distances in [0, 1] between appearance rows; 0 where either is NaN."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float64)
    ok_a, ok_b = np.isfinite(a).all(1), np.isfinite(b).all(1)
    coef = np.nan_to_num(a.astype(np.float64)) @ np.nan_to_num(b.astype(np.float64)).T
    dist = np.sqrt(np.clip(1.0 - coef, 0.0, 1.0))
    dist[~ok_a] = 0.0
    dist[:, ~ok_b] = 0.0
    return dist


def _covered(boxes: np.ndarray, others: np.ndarray | None = None) -> np.ndarray:
    """(N,) the largest share of each box's area that another of `boxes` or one of `others` (xyxy) covers (a box
    that is not finite covers nothing)."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    b = np.where(np.isfinite(b).all(1, keepdims=True), b, 0.0)
    o = np.concatenate([b, np.zeros((0, 4)) if others is None else np.asarray(others, np.float64).reshape(-1, 4)])
    o = np.where(np.isfinite(o).all(1, keepdims=True), o, 0.0)
    iw = np.clip(np.minimum(b[:, None, 2], o[None, :, 2]) - np.maximum(b[:, None, 0], o[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(b[:, None, 3], o[None, :, 3]) - np.maximum(b[:, None, 1], o[None, :, 1]), 0, None)
    inter = iw * ih
    inter[np.arange(len(b)), np.arange(len(b))] = 0.0  # not by itself
    area = np.maximum((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]), 1e-6)
    return (inter / area[:, None]).max(1, initial=0.0)


def _xyxy_to_xyah(b: np.ndarray) -> np.ndarray:
    w, h = b[2] - b[0], max(b[3] - b[1], 1e-3)
    return np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2, w / h, h], np.float64)


def _xyah_to_xyxy(m: np.ndarray) -> np.ndarray:
    cx, cy, a, h = m[:4]
    h = max(h, 1e-3)
    w = a * h
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float64)


class Track:
    """One tracked object: Kalman state on (cx, cy, a, h) and velocities (per second), last detection data."""

    def __init__(self, box: np.ndarray, score: float, class_id: int, keypoints: np.ndarray | None, t: float):
        z = _xyxy_to_xyah(box)
        h = z[3]
        self.mean = np.r_[z, np.zeros(4)]
        std = np.array([2 * _W_POS * h, 2 * _W_POS * h, 1e-2, 2 * _W_POS * h,
                        10 * _W_VEL * h * _REF_FPS, 10 * _W_VEL * h * _REF_FPS, 1e-5 * _REF_FPS,
                        10 * _W_VEL * h * _REF_FPS])
        self.cov = np.diag(std ** 2)
        self.track_id = -1  # set on confirmation
        self.state = TENTATIVE
        self.hits = 1  # consecutive matched frames while tentative
        self.score, self.class_id, self.keypoints = float(score), int(class_id), keypoints
        self.t_first = self.t_last = self.t_pred = t
        self.history: deque[tuple[float, np.ndarray]] = deque([(t, z)])  # (t, observed xyah)
        self.feature: np.ndarray | None = None  # appearance (see `appearance`), None until one is seen
        self.weak = False  # started from a low-score detection: needs low_track_hits to be confirmed

    def update_feature(self, feature: np.ndarray | None) -> None:
        """Blend a clean detection's appearance into the track's (the first one is taken as it is)."""
        if feature is None or not np.isfinite(feature).all():
            return
        if self.feature is None:
            self.feature = feature.astype(np.float32).copy()
            return
        f = _APP_MOMENTUM * self.feature + (1.0 - _APP_MOMENTUM) * feature
        self.feature = (f / max(float(np.linalg.norm(f)), 1e-6)).astype(np.float32)  # unit norm, as a new one

    @property
    def xyxy(self) -> np.ndarray:
        """Current box estimate (predicted to the last update's time)."""
        return _xyah_to_xyxy(self.mean)

    def predict(self, t: float) -> None:
        dt = max(0.0, t - self.t_pred)
        self.t_pred = max(t, self.t_pred)
        if dt == 0.0:
            return
        if self.state == LOST:
            self.mean[7] = 0.0  # as ByteTrack: a lost box keeps its height
        f = np.eye(8)
        f[:4, 4:] = np.eye(4) * dt
        h = self.mean[3]
        k = dt * _REF_FPS  # frames' worth of process noise
        q = np.array([_W_POS * h, _W_POS * h, 1e-2, _W_POS * h,
                      _W_VEL * h * _REF_FPS, _W_VEL * h * _REF_FPS, 1e-5 * _REF_FPS, _W_VEL * h * _REF_FPS]) ** 2
        self.mean = f @ self.mean
        self.cov = f @ self.cov @ f.T + np.diag(q * k)

    def correct(self, box: np.ndarray, score: float, keypoints: np.ndarray | None, t: float) -> None:
        z = _xyxy_to_xyah(box)
        h = self.mean[3]
        r = np.diag(np.array([_W_POS * h, _W_POS * h, 1e-1, _W_POS * h]) ** 2)
        hm = np.eye(4, 8)
        s = hm @ self.cov @ hm.T + r
        gain = np.linalg.solve(s, hm @ self.cov).T  # cov H^T S^-1 (S, cov symmetric)
        self.mean = self.mean + gain @ (z - hm @ self.mean)
        self.cov = self.cov - gain @ s @ gain.T
        self.score, self.keypoints, self.t_last = float(score), keypoints, t
        self.history.append((t, z))
        while self.history and t - self.history[0][0] > _HISTORY_S:
            self.history.popleft()

    def mark_lost(self, t: float) -> None:
        """Become lost at time t: restart from the last full-size observation, moving at the velocity fitted
        (least squares) over the recent full-size ones (none: standing still); size frozen."""
        self.state = LOST
        obs = list(self.history)
        if not obs:
            return
        h_max = max(z[3] for _, z in obs)
        full = [(tt, z) for tt, z in obs if z[3] >= _FULL_H * h_max]
        t_ref, z_ref = full[-1]
        v = np.zeros(2)
        ts = np.array([tt for tt, _ in full])
        if len(full) >= 3 and ts[-1] - ts[0] >= 0.2:
            xy = np.array([z[:2] for _, z in full])
            tc = ts - ts.mean()
            v = (tc[:, None] * (xy - xy.mean(0))).sum(0) / (tc ** 2).sum()
        self.mean = np.r_[z_ref[:2] + v * (t - t_ref), z_ref[2:4], v, 0.0, 0.0]
        self.t_pred = t

    def grown(self, buffer: float) -> np.ndarray:
        """Box grown by `buffer` of its width / height on every side."""
        b = self.xyxy
        w, h = b[2] - b[0], b[3] - b[1]
        return b + np.array([-w, -h, w, h]) * buffer


def _match(tracks: list[Track], dets: Detections, idx: np.ndarray, min_iou: float,
           lost_buffer: float = 0.0, features: np.ndarray | None = None,
           appearance_weight: float = 0.0) -> tuple[list, list, list]:
    """Hungarian matching on 1 - IoU (+ appearance_weight x appearance distance where both have an appearance;
    other classes never match); lost tracks on the IoU of both boxes grown by `lost_buffer`. Only pairs with
    IoU >= min_iou can match. Returns (pairs (track i, det row), unmatched track indices, unmatched det rows)."""
    if not tracks or len(idx) == 0:
        return [], list(range(len(tracks))), list(idx)
    iou = box_iou(np.array([tr.xyxy for tr in tracks]), dets.xyxy[idx])
    lost = [i for i, tr in enumerate(tracks) if tr.state == LOST]
    if lost and lost_buffer > 0:
        b = dets.xyxy[idx].astype(np.float64)
        wh = np.c_[b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]]
        grown = b + np.c_[-wh, wh] * lost_buffer
        iou[lost] = box_iou(np.array([tracks[i].grown(lost_buffer) for i in lost]), grown)
    iou[np.array([tr.class_id for tr in tracks])[:, None] != dets.class_id[idx][None, :]] = 0.0
    cost = 1.0 - iou
    have = [i for i, tr in enumerate(tracks) if tr.feature is not None]
    if features is not None and appearance_weight > 0 and have:
        cost[have] += appearance_weight * appearance_distance(np.stack([tracks[i].feature for i in have]),
                                                              features[idx])
    cost = np.where(iou >= min_iou, cost, 1e6)
    rows, cols = linear_sum_assignment(cost)
    pairs = [(int(r), int(idx[c])) for r, c in zip(rows, cols) if iou[r, c] >= min_iou and iou[r, c] > 0]
    mt, md = {p[0] for p in pairs}, {p[1] for p in pairs}
    return pairs, [i for i in range(len(tracks)) if i not in mt], [int(d) for d in idx if int(d) not in md]


class ByteTracker:
    """Assigns stable track ids to per-frame Detections. `update(detections, t)` returns the same rows in the same
    order with `tracker_id` set: the confirmed track's id, or -1 (tentative track, or an unmatched detection)."""

    def __init__(self, *, high_score: float = 0.5, low_score: float = 0.1, new_track_score: float = 0.6,
                 match_iou: float = 0.2, low_match_iou: float = 0.5, tentative_match_iou: float = 0.3,
                 min_hits: int = 3, lost_s: float = 1.0, lost_buffer: float = 0.15, appearance_weight: float = 1.0,
                 low_track_hits: int = 0):
        if not 0 <= low_score <= high_score <= 1:
            raise ValueError(f"need 0 <= low_score ({low_score}) <= high_score ({high_score}) <= 1")
        self.high_score, self.low_score, self.new_track_score = high_score, low_score, new_track_score
        self.match_iou, self.low_match_iou, self.tentative_match_iou = match_iou, low_match_iou, tentative_match_iou
        self.min_hits, self.lost_s, self.lost_buffer = max(1, int(min_hits)), float(lost_s), float(lost_buffer)
        self.appearance_weight, self.low_track_hits = float(appearance_weight), max(0, int(low_track_hits))
        self._tracks: list[Track] = []
        self._next_id = 1
        self._t: float | None = None
        self._dt: float | None = None  # the interval before the last frame (a gap is judged against it)

    @classmethod
    def from_config(cls, cfg) -> ByteTracker:
        """From an edge.analytics.config.TrackerConfig."""
        return cls(**cfg.model_dump(exclude={"enabled"}))

    @property
    def tracks(self) -> list[Track]:
        """Confirmed tracks, matched this frame or lost within the grace."""
        return [tr for tr in self._tracks if tr.state != TENTATIVE]

    def reset(self) -> None:
        """Drop every track. Ids keep counting: zones, lines and queues key their state by id, so an id is never
        reused for another person."""
        self._tracks, self._t, self._dt = [], None, None

    def update(self, detections: Detections, t: float, image: np.ndarray | None = None) -> Detections:
        """Feed one frame's detections at stream time `t` (seconds); returns them with tracker_id set. With the
        frame `image` (BGR) tracks also match on appearance (off when appearance_weight is 0)."""
        if self._t is not None and t < self._t:
            log.warning("tracker: stream time went back from %.3f to %.3f; resetting tracks", self._t, t)
            self.reset()
        elif self._t is not None and is_outage(t - self._t, self._dt, self.lost_s):
            # no frame for longer than an outage (a camera lost, a reconnect; not a slow frame or a stream hiccup):
            # every track is over; otherwise a person standing where another stood before would inherit that id
            log.warning("tracker: no frame for %.3f s (an outage); resetting tracks", t - self._t)
            self.reset()
        self._dt = None if self._t is None else t - self._t
        self._t = t
        out_ids = np.full(len(detections), -1, np.int64)
        for tr in self._tracks:
            tr.predict(t)
        # a lost track past its grace is over before this frame is matched (after a late frame it could otherwise
        # give its id to whoever stands there now)
        self._tracks = [tr for tr in self._tracks if not (tr.state == LOST and t - tr.t_last > self.lost_s)]
        score = detections.score
        usable = np.isfinite(detections.xyxy).all(1)  # a box that is not a number never matches nor starts a track
        high = np.flatnonzero(usable & (score >= self.high_score))
        low = np.flatnonzero(usable & (score >= self.low_score) & (score < self.high_score))
        feats = clean = None
        if image is not None and self.appearance_weight > 0 and len(detections):
            feats = appearance(image, detections.xyxy)
            clean = _covered(detections.xyxy) <= _APP_CLEAN_IOA  # the box shows one person only

        active = [tr for tr in self._tracks if tr.state in (TRACKED, LOST)]
        tentative = [tr for tr in self._tracks if tr.state == TENTATIVE]

        def apply(tr: Track, row: int) -> None:
            kp = None if detections.keypoints is None else detections.keypoints[row].copy()
            tr.correct(detections.xyxy[row].astype(np.float64), float(score[row]), kp, t)
            if feats is not None and (clean[row] or tr.feature is None):
                tr.update_feature(feats[row])

        # 1. high-score detections <-> tracked, then the rest <-> lost tracks (buffered IoU)
        tracked = [tr for tr in active if tr.state == TRACKED]
        lost = [tr for tr in active if tr.state == LOST]
        app = {"features": feats, "appearance_weight": self.appearance_weight}
        pairs, un_tr, un_high = _match(tracked, detections, high, self.match_iou, **app)
        pairs_lost, _, un_high = _match(lost, detections, np.asarray(un_high, np.int64), self.match_iou,
                                        self.lost_buffer, **app)
        found = [(tracked[i], row) for i, row in pairs] + [(lost[i], row) for i, row in pairs_lost]
        # 2. low-score detections <-> tracked tracks still unmatched (not the lost ones: ByteTrack)
        remaining = [tracked[i] for i in un_tr]
        pairs, un2, un_low = _match(remaining, detections, low, self.low_match_iou, **app)
        found += [(remaining[i], row) for i, row in pairs]
        for tr, row in found:
            if tr.state == LOST:
                log.debug("tracker: track %d found again after %.2f s", tr.track_id, t - tr.t_last)
            apply(tr, row)
            tr.state = TRACKED
            out_ids[row] = tr.track_id
        for i in un2:
            remaining[i].mark_lost(t)
        # 3. remaining high-score detections <-> tentative tracks; weak tentative tracks (started from a lone
        # weaker detection) take them or lone weaker ones
        strong = [tr for tr in tentative if not tr.weak]
        weak = [tr for tr in tentative if tr.weak]
        pairs, un_tent, un_high = _match(strong, detections, np.asarray(un_high, np.int64), self.tentative_match_iou)
        pairs = [(strong[i], row) for i, row in pairs]
        dropped = {id(strong[i]) for i in un_tent}
        lone: list[int] = []
        if self.low_track_hits > 0:
            # detections too weak to start a track the usual way, that no other box covers (not part of a person)
            covered = _covered(detections.xyxy, [tr.xyxy for tr in active])
            weak_rows = sorted(set(un_low) | {r for r in un_high if score[r] < self.new_track_score})
            lone = [r for r in weak_rows if covered[r] <= _APP_CLEAN_IOA]
            cand = np.asarray(sorted(set(un_high) | set(lone)), np.int64)
            pw, un_weak, rest = _match(weak, detections, cand, self.tentative_match_iou)
            pairs += [(weak[i], row) for i, row in pw]
            dropped |= {id(weak[i]) for i in un_weak}
            un_high = [r for r in un_high if r in rest]
            lone = [r for r in lone if r in rest]
        else:
            dropped |= {id(tr) for tr in weak}
        for tr, row in pairs:
            apply(tr, row)
            tr.hits += 1
            if tr.hits >= (self.low_track_hits if tr.weak else self.min_hits):
                self._confirm(tr)
                out_ids[row] = tr.track_id
        # 4. new tentative tracks: strong ones from high-score detections, weak ones from lone weaker ones
        starts = [(row, False) for row in un_high if score[row] >= self.new_track_score]
        starts += [(row, True) for row in lone]
        for row, is_weak in starts:
            kp = None if detections.keypoints is None else detections.keypoints[row].copy()
            tr = Track(detections.xyxy[row].astype(np.float64), float(score[row]), int(detections.class_id[row]),
                       kp, t)
            tr.weak = is_weak
            if feats is not None:
                tr.update_feature(feats[row])
            self._tracks.append(tr)
            if (self.low_track_hits if is_weak else self.min_hits) <= 1:
                self._confirm(tr)
                out_ids[row] = tr.track_id
        # 5. forget tentative tracks that missed and lost tracks past the grace
        keep = []
        for tr in self._tracks:
            if id(tr) in dropped:
                continue
            if tr.state == LOST and t - tr.t_last > self.lost_s:
                log.debug("tracker: track %d removed after %.2f s lost", tr.track_id, t - tr.t_last)
                continue
            keep.append(tr)
        self._tracks = keep
        return detections.with_tracker_id(out_ids)

    def _confirm(self, tr: Track) -> None:
        tr.state = TRACKED
        tr.track_id = self._next_id
        self._next_id += 1
