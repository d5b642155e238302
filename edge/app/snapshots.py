"""The `snapshot` command of a running device (docs/PRIVACY.md): only when `[privacy] snapshots = true`, only for a
requester in `[privacy] snapshot_requesters` who states a purpose, only of the main camera, only for a request sent
(its `ts`) less than SNAPSHOT_MAX_AGE_S ago, at most one per `[privacy] snapshot_min_interval_s`, always anonymised
(edge.privacy.anonymise). Every request, granted or refused, is recorded in the decision log (`snapshot`)."""
from __future__ import annotations

import logging
import math
import threading
import time
from typing import Callable, NoReturn

from sync.commands import stale

log = logging.getLogger(__name__)
SNAPSHOT_MAX_AGE_S = 300.0  # a snapshot request older than this (by its sender's ts), or this far ahead, is refused


class Snapshots:
    """`handle(args)` is the command handler; `latest()` returns the main camera's newest Frame (or None)."""

    def __init__(self, cfg, latest: Callable[[], object]):
        self.cfg, self.latest = cfg, latest
        self._anonymiser = None
        self._lock = threading.Lock()
        self._last_taken: float | None = None  # monotonic time of the last snapshot sent

    def _open(self):
        with self._lock:
            if self._anonymiser is None:
                from edge.pose.pipeline import default_zoo
                from edge.privacy.anonymise import Anonymiser

                p = self.cfg.privacy
                self._anonymiser = Anonymiser.open(default_zoo(self.cfg.models), self.cfg.models,
                                                   face_threshold=p.face_threshold, mask_people=p.snapshot_mask_people,
                                                   max_width=p.snapshot_max_width, jpeg_quality=p.snapshot_jpeg_quality)
            return self._anonymiser

    def close(self) -> None:
        with self._lock:
            if self._anonymiser is not None:
                self._anonymiser.close()
                self._anonymiser = None

    def handle(self, args: dict) -> dict:
        from edge.core import decisions
        from edge.core.metrics import SNAPSHOTS
        from sync.commands import CommandError, current_request

        p = self.cfg.privacy
        by, purpose, camera = args.get("by", ""), args.get("reason", ""), args.get("camera", "")
        info = {"camera": camera or "main", "purpose": purpose}

        def answer(outcome: str, why: str, **data) -> NoReturn:
            SNAPSHOTS.labels(outcome).inc()
            decisions.record("snapshot", by or "?", {**info, "granted": False, "outcome": outcome, **data},
                             reason=why)
            log.warning("snapshot requested by %r %s: %s", by, outcome, why)
            raise CommandError(why)

        if not p.snapshots:
            answer("refused", "refused: snapshots are off on this device ([privacy] snapshots = false)")
        if not by:
            answer("refused", "refused: name the requester in args.by (it is recorded)")
        if by not in p.snapshot_requesters:
            answer("refused", f"refused: {by!r} is not in [privacy] snapshot_requesters")
        if not purpose.strip():
            answer("refused", "refused: state the purpose in args.reason (it is recorded)")
        if camera not in ("", "main"):
            answer("refused", f"refused: snapshots are taken of the main camera only, not {camera!r}")
        # a request that waited at the broker while the device was offline would take a frame of now nobody asked
        # for: without its send time, that is unknown
        req = current_request()
        if req is None or req.ts is None or not math.isfinite(req.ts):
            answer("refused", "refused: the request has no ts (its send time; `edge sync send` and the cloud set it): "
                   "its age cannot be checked")
        why = stale(req.ts, SNAPSHOT_MAX_AGE_S, "snapshot request", "ask again if it is still wanted")
        if why:
            answer("refused", f"refused: {why}")
        since = None if self._last_taken is None else time.monotonic() - self._last_taken
        if since is not None and since < p.snapshot_min_interval_s:
            answer("refused", f"refused: a snapshot was sent {since:.0f} s ago; at most one per "
                   f"{p.snapshot_min_interval_s:g} s ([privacy] snapshot_min_interval_s): ask again in "
                   f"{math.ceil(p.snapshot_min_interval_s - since)} s")
        frame = self.latest()
        if frame is None:
            answer("failed", "not ready: no camera frame yet")
        try:
            result = self._open().snapshot(frame.image)
        except Exception as e:  # noqa: BLE001 - a model missing, a face that would not blur: nothing is sent
            answer("failed", f"snapshot not taken: {type(e).__name__}: {e}")
        self._last_taken = time.monotonic()
        age = round(time.monotonic() - frame.t_capture, 3) if getattr(frame, "t_capture", None) else None
        kept = {k: result[k] for k in ("width", "height", "bytes", "sha256", "faces_blurred", "heads_blurred",
                                       "people_masked", "extra_passes")}
        seq = decisions.record("snapshot", by, {**info, "granted": True, "outcome": "taken", **kept,
                                                "frame_age_s": age}, reason=f"snapshot for {by}: {purpose}"[:300])
        SNAPSHOTS.labels("taken").inc()
        log.info("snapshot for %r (%s): %d face and %d head region(s) blurred, %d bytes", by, purpose,
                 result["faces_blurred"], result["heads_blurred"], result["bytes"])
        return {**result, "camera": "main", "t_wall": getattr(frame, "t_wall", None), "frame_age_s": age, "by": by,
                "decision_seq": seq}
