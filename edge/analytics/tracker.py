"""ByteTrack-style multi-object tracker on the stream clock.

Each track has a constant-velocity Kalman filter on (centre x, centre y, aspect w/h, height). Per frame:
1. predict every track to the frame's time `t`;
2. match high-score detections to tracked (confirmed) tracks by IoU (Hungarian), then the rest to lost tracks;
3. match low-score detections to the confirmed tracks still unmatched (a partly occluded person scores low);
4. match the remaining high-score detections to tentative tracks; a tentative track that misses a frame is dropped;
5. start a tentative track from each remaining detection scoring at least `new_track_score`.
A tentative track is confirmed after `min_hits` consecutive matched frames and only then gets an id. A confirmed
track that goes unmatched is "lost" and kept for `lost_s` seconds of stream time, so its id survives a short
occlusion or a crossing. A person being covered yields ever smaller boxes just before vanishing, which would send
the filter off with a false velocity; so when a track is lost its state restarts from its last full-size
observation with the velocity fitted over its recent full-size observations, and it keeps moving with that.
Lost tracks are matched on IoU of boxes grown by `lost_buffer` of their size (buffered IoU), which tolerates the
drift of small, slow or turning people over a short occlusion.
"""
from __future__ import annotations

import logging

import numpy as np
from collections import deque

from scipy.optimize import linear_sum_assignment

from edge.core.detections import Detections, box_iou

log = logging.getLogger(__name__)

# ByteTrack's noise weights (relative to box height) are per frame at 30 fps; scaled here by elapsed time.
_REF_FPS = 30.0
_W_POS, _W_VEL = 1.0 / 20, 1.0 / 160
_HISTORY_S = 1.5  # observations kept to refit a lost track's motion
_FULL_H = 0.85  # an observation at least this share of the track's recent tallest box is "full size"

TENTATIVE, TRACKED, LOST = "tentative", "tracked", "lost"


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
           lost_buffer: float = 0.0) -> tuple[list, list, list]:
    """Hungarian matching on 1 - IoU (other classes never match); lost tracks on the IoU of both boxes grown by
    `lost_buffer`. Returns (pairs (track i, det row), unmatched track indices, unmatched det rows)."""
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
    cost = np.where(iou >= min_iou, 1.0 - iou, 1e6)
    rows, cols = linear_sum_assignment(cost)
    pairs = [(int(r), int(idx[c])) for r, c in zip(rows, cols) if iou[r, c] >= min_iou and iou[r, c] > 0]
    mt, md = {p[0] for p in pairs}, {p[1] for p in pairs}
    return pairs, [i for i in range(len(tracks)) if i not in mt], [int(d) for d in idx if int(d) not in md]


class ByteTracker:
    """Assigns stable track ids to per-frame Detections. `update(detections, t)` returns the same rows in the same
    order with `tracker_id` set: the confirmed track's id, or -1 (tentative track, or an unmatched detection)."""

    def __init__(self, *, high_score: float = 0.5, low_score: float = 0.1, new_track_score: float = 0.6,
                 match_iou: float = 0.2, low_match_iou: float = 0.5, tentative_match_iou: float = 0.3,
                 min_hits: int = 3, lost_s: float = 1.0, lost_buffer: float = 0.15):
        if not 0 <= low_score <= high_score <= 1:
            raise ValueError(f"need 0 <= low_score ({low_score}) <= high_score ({high_score}) <= 1")
        self.high_score, self.low_score, self.new_track_score = high_score, low_score, new_track_score
        self.match_iou, self.low_match_iou, self.tentative_match_iou = match_iou, low_match_iou, tentative_match_iou
        self.min_hits, self.lost_s, self.lost_buffer = max(1, int(min_hits)), float(lost_s), float(lost_buffer)
        self._tracks: list[Track] = []
        self._next_id = 1
        self._t: float | None = None

    @classmethod
    def from_config(cls, cfg) -> ByteTracker:
        """From an edge.analytics.config.TrackerConfig."""
        return cls(**cfg.model_dump(exclude={"enabled"}))

    @property
    def tracks(self) -> list[Track]:
        """Confirmed tracks, matched this frame or lost within the grace."""
        return [tr for tr in self._tracks if tr.state != TENTATIVE]

    def reset(self) -> None:
        self._tracks, self._next_id, self._t = [], 1, None

    def update(self, detections: Detections, t: float) -> Detections:
        """Feed one frame's detections at stream time `t` (seconds); returns them with tracker_id set."""
        if self._t is not None and t < self._t:
            log.warning("tracker: stream time went back from %.3f to %.3f; resetting tracks", self._t, t)
            self.reset()
        self._t = t
        out_ids = np.full(len(detections), -1, np.int64)
        for tr in self._tracks:
            tr.predict(t)
        score = detections.score
        high = np.flatnonzero(score >= self.high_score)
        low = np.flatnonzero((score >= self.low_score) & (score < self.high_score))

        active = [tr for tr in self._tracks if tr.state in (TRACKED, LOST)]
        tentative = [tr for tr in self._tracks if tr.state == TENTATIVE]

        def apply(tr: Track, row: int) -> None:
            kp = None if detections.keypoints is None else detections.keypoints[row].copy()
            tr.correct(detections.xyxy[row].astype(np.float64), float(score[row]), kp, t)

        # 1. high-score detections <-> tracked, then the rest <-> lost tracks (buffered IoU)
        tracked = [tr for tr in active if tr.state == TRACKED]
        lost = [tr for tr in active if tr.state == LOST]
        pairs, un_tr, un_high = _match(tracked, detections, high, self.match_iou)
        pairs_lost, _, un_high = _match(lost, detections, np.asarray(un_high, np.int64), self.match_iou,
                                        self.lost_buffer)
        for tr, row in [(tracked[i], row) for i, row in pairs] + [(lost[i], row) for i, row in pairs_lost]:
            if tr.state == LOST:
                log.debug("tracker: track %d found again after %.2f s", tr.track_id, t - tr.t_last)
            apply(tr, row)
            tr.state = TRACKED
            out_ids[row] = tr.track_id
        # 2. low-score detections <-> tracked tracks still unmatched (not the lost ones: ByteTrack)
        remaining = [tracked[i] for i in un_tr]
        pairs, un2, _ = _match(remaining, detections, low, self.low_match_iou)
        for i, row in pairs:
            apply(remaining[i], row)
            out_ids[row] = remaining[i].track_id
        for i in un2:
            remaining[i].mark_lost(t)
        # 3. remaining high-score detections <-> tentative tracks
        pairs, un_tent, un_high = _match(tentative, detections, np.asarray(un_high, np.int64),
                                         self.tentative_match_iou)
        for i, row in pairs:
            tr = tentative[i]
            apply(tr, row)
            tr.hits += 1
            if tr.hits >= self.min_hits:
                self._confirm(tr)
                out_ids[row] = tr.track_id
        dropped = {id(tentative[i]) for i in un_tent}
        # 4. new tentative tracks
        for row in un_high:
            if score[row] < self.new_track_score:
                continue
            kp = None if detections.keypoints is None else detections.keypoints[row].copy()
            tr = Track(detections.xyxy[row].astype(np.float64), float(score[row]), int(detections.class_id[row]),
                       kp, t)
            self._tracks.append(tr)
            if self.min_hits <= 1:
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
