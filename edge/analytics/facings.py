"""Shelf facings: full / low / empty / unknown per planogram facing, judged against a reference taken after
restocking, with camera-moved detection.

Per frame (`ShelfFacings.update(detections, t, t_wall, image=frame.image)`):

1. Alignment: the frame (scaled to `alignment.width`) is registered to the reference view with ECC (euclidean) on
   the shelf structure outside the facings plus the facings last measured unchanged, person boxes masked out;
   started from the last warp, from no shift and from a phase-correlation jump, the warp whose shelf structure
   correlates best wins. A failed alignment (that correlation below `min_correlation`), or a shift or rotation
   past the limits, that lasts `moved_after_s` while the view is still raises `camera_moved`, and every facing is
   `unknown` until the view aligns again (or the reference is retaken). Smaller drifts are undone by warping.
2. Photometric normalisation: per colour channel, a robust gain + offset fit of the aligned frame to the reference
   where stock does not change (shelf edges, labels, back panel outside the facings), so exposure and white-balance
   swings cancel out.
3. Gating: a facing is measured only when no person box (any detection row, plus `occlusion_margin_px`) or mask
   pixel touches it, and nothing in it moved (frame to frame, after registering the two), for `stable_frames`
   frames and `clear_s` seconds.
4. Cues on a grid of cells over the facing: structural similarity (SSIM) and colour similarity to the reference,
   edge density relative to the reference's, and distance to the back-panel colour. A cell still holds product when
   their mean is >= 0.5; `fill` is the share of the reference's product cells that still do.
5. State: fill below `empty_below` is empty, below `low_below` low, else full, with `hysteresis`; a new state is
   reported once it has been measured for `persistence_s` of stream time with a clear view (time with someone in
   front does not count). A facing that could not be measured for `unknown_after_s` becomes unknown.

Events (stream `events`): `facing_state` (facing, sku, camera, state, previous, needs_action, reason, cues),
`camera_moved` (camera, moved true/false, reason, shift_px, rotation_deg, correlation) and `facing_reference`
(facing, sku, camera, reason, by, via, stored: whether it was written to `reference_dir`).

What is stored: `reference_dir` gets each facing's own reference (taken with nobody in front of it, see gating) and a
margin of `_REF_MARGIN` px around its polygon within its bounding box (what the cues' filters reach), plus the
back panel's mean colour. Everything else in the view (the aisle, where a shopper no detector found may stand) is
zeroed before it is written. The view around the facings, which alignment and the photometric fit use, lives in
memory only: after a restart the frame is aligned on the stored facings and that view is taken again from the first
still, aligned frame. With `keep_references_in_memory(reason)` (nothing masks people: no person detector, no pose)
nothing is written or read.
"""
from __future__ import annotations

import json
import logging
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge.analytics.base import is_outage, make_event
from edge.core.detections import Detections
from edge.core.events import Event
from edge.core.files import write_atomic

log = logging.getLogger(__name__)

STATES = ("full", "low", "empty", "unknown")
_SSIM_C1, _SSIM_C2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
_EDGE_T = 40.0  # gradient magnitude (reference grey levels) that counts as an edge
_EDGE_MIN = 0.04  # reference cells with fewer edge pixels than this say nothing about edges
_PANEL_NEAR, _PANEL_FAR = 8.0, 20.0  # CIE76 distance to the back panel: looks like panel .. clearly not
_COLOUR_SAME, _COLOUR_DIFF = 6.0, 20.0  # CIE76 distance to the reference cell: same .. different
_SSIM_LO, _SSIM_HI = 0.2, 0.6
_DIFF_T = 18  # grey levels (after removing the region's median change) that count as motion
_REF_MARGIN = 8  # px kept around a facing's polygon in a stored reference (the cues' filters reach 6 px)
_REF_VERSION = 2  # reference.json "v": 2 = facings only (1 held the whole view)


@dataclass
class _Ref:
    """A facing's reference, precomputed for the cues."""

    gray: np.ndarray  # float32 bbox crop
    mu: np.ndarray
    var: np.ndarray
    lab: np.ndarray  # (cells, 3) mean Lab per cell
    edges: np.ndarray  # (cells,) edge density per cell
    product: np.ndarray  # (cells,) float weights: cells that hold product in the reference
    bgr: np.ndarray  # uint8 bbox crop, zero outside the polygon + margin: what is stored
    valid: np.ndarray  # bool bbox crop: pixels of `bgr` that show the shelf
    t_wall: float | None = None


@dataclass
class Facing:
    """One facing: its planogram entry, reference and state. `state` is full / low / empty / unknown; `cues` the
    last measurement; `needs_action` whether the state is one of `alert_on` (None while unknown)."""

    id: str
    sku: str
    polygon: np.ndarray
    alert_on: tuple[str, ...] = ("empty",)
    empty_below: float = 0.15
    low_below: float = 0.7
    hysteresis: float = 0.05
    persistence_s: float = 10.0
    state: str = "unknown"
    since_t: float | None = None
    cues: dict | None = None
    measured_t: float | None = None
    occluded: bool = False
    # internal
    _ref: _Ref | None = field(default=None, repr=False)
    _bbox: tuple[int, int, int, int] = (0, 0, 0, 0)
    _mask: np.ndarray | None = field(default=None, repr=False)  # bbox-sized bool polygon mask
    _keep: np.ndarray | None = field(default=None, repr=False)  # bbox-sized bool: polygon + _REF_MARGIN (stored)
    _labels: np.ndarray | None = field(default=None, repr=False)  # bbox-sized cell index, -1 outside
    _n_cells: int = 0
    _sbox: tuple[int, int, int, int] = (0, 0, 0, 0)  # bbox at the alignment scale
    _stable: int = 0
    _seen_t: float | None = None  # last time it was measurable
    _candidate: str | None = None
    _cand_measured: float = 0.0  # seconds the candidate state has been measured without a gap
    _clear_since: float = 0.0  # first frame of the current stretch with nobody in front and no motion
    _pending: str | None = None  # "now" | "restocked" | "startup": retake the reference when measurable
    _pending_by: str = ""
    _pending_via: str = ""

    @classmethod
    def from_config(cls, c, persistence_s: float) -> Facing:
        """From an edge.analytics.config.FacingConfig."""
        return cls(c.id, c.sku, np.asarray(c.polygon, np.float64).reshape(-1, 2), tuple(c.alert_on), c.empty_below,
                   c.low_below, c.hysteresis, persistence_s if c.persistence_s is None else c.persistence_s)

    @property
    def has_reference(self) -> bool:
        return self._ref is not None

    @property
    def needs_action(self) -> bool | None:
        return None if self.state == "unknown" else self.state in self.alert_on

    @property
    def pending_reference(self) -> str | None:
        """Why a reference retake is waiting ("now", "restocked", "startup"), or None."""
        return self._pending

    def classify(self, fill: float) -> str:
        """State for a fill fraction; thresholds move away from the current state by the hysteresis."""
        h, cur = self.hysteresis, self.state
        low = self.low_below + (-h if cur == "full" else h if cur in ("low", "empty") else 0.0)
        empty = self.empty_below + (h if cur == "empty" else -h if cur in ("full", "low") else 0.0)
        return "empty" if fill < empty else "low" if fill < low else "full"


@dataclass
class Alignment:
    """The last alignment of the frame to the reference view (shift and rotation in frame px / degrees)."""

    ok: bool = True
    shift_px: float = 0.0
    rotation_deg: float = 0.0
    correlation: float | None = None
    reason: str = ""


class ShelfFacings:
    """The facings one camera watches (an [analytics.planogram]). `update(detections, t, t_wall, image=...)`
    returns facing_state / camera_moved / facing_reference events. Readable state: `facings` (id -> Facing),
    `camera_moved`, `alignment`. `retake_reference(facing_id=None)` may be called from any thread."""

    needs_image = True

    def __init__(self, camera: str, facings: list[Facing], *, stable_frames: int = 5, clear_s: float = 2.0,
                 measure_every_s: float = 0.5,
                 unknown_after_s: float = 300.0, occlusion_margin_px: float = 8.0, motion_threshold: float = 0.02,
                 back_panel_color: str | None = None, back_panel_region=None, reference_dir: str | Path | None = None,
                 max_shift_px: float = 10.0, max_rotation_deg: float = 1.0, min_correlation: float = 0.6,
                 moved_after_s: float = 3.0, align_width: int = 320, source: str = "default"):
        self.name = self.camera = camera
        self.source = source
        self.facings: dict[str, Facing] = {f.id: f for f in facings}
        self.stable_frames, self.clear_s = stable_frames, clear_s
        self.measure_every_s, self.unknown_after_s = measure_every_s, unknown_after_s
        self.occlusion_margin_px, self.motion_threshold = occlusion_margin_px, motion_threshold
        self.max_shift_px, self.max_rotation_deg, self.min_correlation = max_shift_px, max_rotation_deg, min_correlation
        self.moved_after_s, self.align_width = moved_after_s, align_width
        self.reference_dir = Path(reference_dir) if reference_dir else None
        self._panel_bgr = None if back_panel_color is None else _hex_bgr(back_panel_color)
        self._panel_region = None if back_panel_region is None else np.asarray(back_panel_region, np.float64)
        self._panel_lab: np.ndarray | None = None
        self.camera_moved = False
        self.alignment = Alignment()
        self._lock = threading.Lock()
        self._size: tuple[int, int] | None = None
        self._ref_bgr: np.ndarray | None = None  # full-res reference view (person pixels zeroed); in memory only
        self._structure_known = False  # False after a restart until the view around the facings is taken again
        self._stored_panel_lab: np.ndarray | None = None  # the back panel colour saved with the reference
        self.not_persisted: str | None = None  # why references are kept in memory only (None: in reference_dir)
        self._ref_valid: np.ndarray | None = None  # bool: pixels of the reference that show the shelf
        self._ref_small: np.ndarray | None = None  # float32 grey at the alignment scale
        self._ref_small_bgr: np.ndarray | None = None
        self._ref_small_valid: np.ndarray | None = None
        self._ref_small_blur: np.ndarray | None = None
        self._structure: np.ndarray | None = None  # alignment scale: pixels outside every facing
        self._facing_index: np.ndarray | None = None
        self._fit_where: tuple[np.ndarray, np.ndarray] | None = None
        self._pending_view: tuple[str, str, str] | None = ("startup", "", "")  # retake the whole view
        self._warp = np.eye(2, 3, dtype=np.float32)  # alignment-scale warp: reference -> frame
        self._prev_small: np.ndarray | None = None
        self._bad_since: float | None = None
        self._good_since: float | None = None
        self._gain = np.ones(3, np.float32)
        self._offset = np.zeros(3, np.float32)
        self._warned_no_image = False
        self._last_t: float | None = None
        self._interval: float | None = None  # the last gap between two frames (stream time), for is_outage
        self._window: np.ndarray | None = None
        for f in self.facings.values():
            f._pending = "startup"

    @classmethod
    def from_config(cls, c, source: str = "default") -> ShelfFacings:
        """From an edge.analytics.config.PlanogramConfig (its reference folder: reference_dir_of)."""
        a = c.alignment
        return cls(c.camera, [Facing.from_config(f, c.persistence_s) for f in c.facings],
                   stable_frames=c.stable_frames, clear_s=c.clear_s, measure_every_s=c.measure_every_s,
                   unknown_after_s=c.unknown_after_s,
                   occlusion_margin_px=c.occlusion_margin_px, motion_threshold=c.motion_threshold,
                   back_panel_color=c.back_panel_color, back_panel_region=c.back_panel_region,
                   reference_dir=reference_dir_of(c), max_shift_px=a.max_shift_px, max_rotation_deg=a.max_rotation_deg,
                   min_correlation=a.min_correlation, moved_after_s=a.moved_after_s, align_width=a.width,
                   source=source)

    def keep_references_in_memory(self, reason: str) -> None:
        """Nothing masks people in this camera's frames (`reason`, e.g. no person detector and no pose): references
        are neither written to nor read from `reference_dir`; they are taken again at each start."""
        if self.not_persisted is None:
            log.warning("shelf %s: %s to mask people: shelf references are kept in memory only%s", self.camera, reason,
                        "" if self.reference_dir is None else f" (not written to {self.reference_dir})")
        self.not_persisted = reason

    # ------------------------------------------------------------------ restock workflow
    def retake_reference(self, facing_id: str | None = None, *, when: str = "now", by: str = "",
                         via: str = "api") -> list[str]:
        """Ask for a new reference of one facing (or, with None, of the whole view and every facing). It is taken
        at the next frame where the facing is measurable (nobody in front, still). when="restocked" waits until the
        facing no longer looks empty, nor low when its alert_on lists low (an alert acknowledged before the restock
        must not make the empty shelf the reference; a facing with no reference to judge that against, after a
        restart in memory only, takes one as at any start). A retake asked before the first frame stands when the
        stored references load. Returns the facing ids now waiting; raises KeyError for an unknown facing."""
        if when not in ("now", "restocked") or (facing_id is None and when != "now"):
            raise ValueError(f"when must be 'now' or (for one facing) 'restocked', not {when!r}")
        with self._lock:
            if facing_id is None:
                ids = list(self.facings)
                self._pending_view = (when, by, via)
            elif facing_id in self.facings:
                ids = [facing_id]
            else:
                raise KeyError(f"no facing {facing_id!r} on camera {self.camera!r} "
                               f"(facings: {', '.join(self.facings) or 'none'})")
            for fid in ids:
                f = self.facings[fid]
                f._pending, f._pending_by, f._pending_via = when, by, via
        log.info("shelf %s: reference retake requested for %s (%s, by %r via %s)", self.camera,
                 "every facing" if facing_id is None else facing_id, when, by, via)
        return ids

    # ------------------------------------------------------------------ per frame
    def update(self, detections: Detections, t: float, t_wall: float | None = None, *, image: np.ndarray | None = None,
               mask: np.ndarray | None = None) -> list[Event]:
        """Advance to one frame (BGR `image`; `mask`: optional HxW person segmentation, > 0.5 = person)."""
        if image is None:
            if not self._warned_no_image:
                log.warning("shelf %s: no frame image given; facings cannot be measured", self.camera)
                self._warned_no_image = True
            return []
        gap = None if self._last_t is None else t - self._last_t
        outage = gap is not None and gap > 0 and is_outage(gap, self._interval)
        if outage:  # the time without frames is no clear view: persistence starts over (states stand)
            log.info("shelf %s: no frame for %.1f s; state timers restart", self.camera, gap)
        elif gap is not None and gap > 0:
            self._interval = gap
        if gap is not None and (gap < 0 or outage):
            if gap < 0:
                log.warning("shelf %s: stream time went back (%.3f -> %.3f); timers restart", self.camera,
                            self._last_t, t)
            for f in self.facings.values():
                f._candidate, f._seen_t = None, t
                f.measured_t, f._clear_since, f._stable = None, t, 0  # measured again once the view is clear
            self._bad_since = self._good_since = None
        self._last_t = t
        events: list[Event] = []
        h, w = image.shape[:2]
        if self._size != (w, h):
            self._setup(w, h)
        sh, sw = self._small_size
        small_bgr = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
        small = cv2.cvtColor(small_bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
        boxes = np.asarray(detections.xyxy, np.float64).reshape(-1, 4)
        person = self._person_mask(boxes, mask, w, h)
        person_small = cv2.resize(person.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST) > 0
        moving, still = self._motion(small, person_small)
        with self._lock:
            pending_view = self._pending_view
        if self._ref_bgr is None:
            if pending_view is not None and still:
                self._take_view(image, person, pending_view, t, t_wall, events, aligned=False)
            return events

        ok = self._align(small, person_small)
        events += self._camera_state(ok, still, t, t_wall)
        if pending_view is not None and self._ref_small is not None and still and (ok or self.camera_moved) \
                and self._pending_view is pending_view:
            self._take_view(image, person, pending_view, t, t_wall, events, aligned=ok)
            ok = True
        if not ok or self.camera_moved:
            for f in self.facings.values():
                f._stable = 0
                if f._seen_t is not None and f.state != "unknown" and t - f._seen_t >= self.unknown_after_s:
                    events.append(self._set_state(f, "unknown", t, t_wall, f"not seen for {t - f._seen_t:.0f} s"))
            return events

        aligned = self._aligned(image)
        fitted = False
        if not self._structure_known and still and self.alignment.correlation is not None:
            self._fit_photometric(aligned, person_small)  # on the stored facings: into their photometry
            fitted = True
            self._learn_structure(aligned, person)
        for f in self.facings.values():
            x0, y0, x1, y1 = f._bbox
            if x1 <= x0 or y1 <= y0:
                continue
            f.occluded = bool(person[y0:y1, x0:x1][f._mask].any())
            if f.occluded or moving.get(f.id, False):
                f._stable = 0
            else:
                if f._stable == 0:
                    f._clear_since = t
                f._stable += 1
            if f._seen_t is None:
                f._seen_t = t
            if f._stable < self.stable_frames or t - f._clear_since < self.clear_s:
                if f.state != "unknown" and t - f._seen_t >= self.unknown_after_s:
                    events.append(self._set_state(f, "unknown", t, t_wall, f"not seen for {t - f._seen_t:.0f} s"))
                continue
            f._seen_t = t
            due = f._pending is not None or f.measured_t is None or t - f.measured_t >= self.measure_every_s
            if not due or (f._ref is None and f._pending is None):
                continue
            if not fitted:  # the photometric fit is only needed when a facing is measured or retaken
                self._fit_photometric(aligned, person_small)
                fitted = True
            if f._pending == "restocked" and f._ref is None:  # nothing to judge a restock against (in memory
                with self._lock:  # only, after a restart): the reference is taken as at any start
                    f._pending, f._pending_by, f._pending_via = "startup", "", ""
                log.info("shelf %s: facing %s has no reference to judge its restock against; taking one now",
                         self.camera, f.id)
            if f._pending is not None and f._pending != "restocked":
                self._take_facing(f, aligned, t, t_wall, events)
                continue
            if f._ref is None:
                continue
            cues, restocked = self._measure(f, aligned)
            # time with someone in front (or moving) since the last measurement does not count
            dt = 0.0 if f.measured_t is None or f.measured_t < f._clear_since else t - f.measured_t
            f.cues, f.measured_t = cues, t
            if f._pending == "restocked":
                if restocked:
                    self._take_facing(f, aligned, t, t_wall, events)
                continue
            self._advance(f, cues["fill"], dt, t, t_wall, events)
        return events

    # ------------------------------------------------------------------ geometry
    def _setup(self, w: int, h: int) -> None:
        if self._size is not None:
            log.warning("shelf %s: frame size changed %s -> %dx%d; references are retaken", self.camera, self._size,
                        w, h)
            self._ref_bgr = None
            self._pending_view = ("startup", "", "")
            for f in self.facings.values():
                f._ref, f._pending = None, "startup"
        self._size = (w, h)
        sw = min(self.align_width, w)
        sh = max(16, int(round(h * sw / w)))
        self._small_size = (sh, sw)
        self._scale = w / sw
        self._window = cv2.createHanningWindow((sw, sh), cv2.CV_32F)
        self._prev_small = None
        index = np.zeros((sh, sw), np.int32)  # alignment scale: 1 + the facing's position, 0 outside every facing
        for k, f in enumerate(self.facings.values()):
            cv2.fillPoly(index, [np.round(f.polygon / self._scale * 16).astype(np.int32)], k + 1, shift=4)
        self._facing_index = index
        self._structure = cv2.dilate((index > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
        for f in self.facings.values():
            poly = f.polygon
            x0, y0 = max(0, int(math.floor(poly[:, 0].min()))), max(0, int(math.floor(poly[:, 1].min())))
            x1, y1 = min(w, int(math.ceil(poly[:, 0].max()))), min(h, int(math.ceil(poly[:, 1].max())))
            f._bbox = (x0, y0, x1, y1)
            if x1 <= x0 or y1 <= y0:
                log.warning("shelf %s: facing %s lies outside the %dx%d frame", self.camera, f.id, w, h)
                continue
            m = np.zeros((y1 - y0, x1 - x0), np.uint8)
            cv2.fillPoly(m, [np.round((poly - (x0, y0)) * 16).astype(np.int32)], 1, shift=4)
            f._mask = m.astype(bool)
            f._keep = cv2.dilate(m, np.ones((2 * _REF_MARGIN + 1, 2 * _REF_MARGIN + 1), np.uint8)) > 0
            bw, bh = x1 - x0, y1 - y0
            cell = int(np.clip(round(math.sqrt(f._mask.sum() / 48.0)), 6, 32))
            nx, ny = max(1, round(bw / cell)), max(1, round(bh / cell))
            gx = np.minimum((np.arange(bw) * nx) // bw, nx - 1)
            gy = np.minimum((np.arange(bh) * ny) // bh, ny - 1)
            labels = (gy[:, None] * nx + gx[None, :]).astype(np.int32)
            inside = np.bincount(labels[f._mask], minlength=nx * ny)
            total = np.bincount(labels.ravel(), minlength=nx * ny)
            keep = inside >= 0.4 * total  # cells mostly inside the polygon
            remap = np.full(nx * ny, -1, np.int32)
            remap[keep] = np.arange(int(keep.sum()), dtype=np.int32)
            labels = remap[labels]
            labels[~f._mask] = -1
            f._labels, f._n_cells = labels, int(keep.sum())
            s = 1.0 / self._scale
            f._sbox = (int(x0 * s), int(y0 * s), max(int(x0 * s) + 1, int(math.ceil(x1 * s))),
                       max(int(y0 * s) + 1, int(math.ceil(y1 * s))))
        if self.reference_dir is not None and self._ref_bgr is None and self.not_persisted is None:
            self._load()

    def _person_mask(self, boxes: np.ndarray, mask: np.ndarray | None, w: int, h: int) -> np.ndarray:
        """H x W bool: pixels covered by a person box (grown by the margin) or the segmentation mask."""
        out = np.zeros((h, w), bool)
        m = self.occlusion_margin_px
        for x0, y0, x1, y1 in boxes:
            if not np.all(np.isfinite((x0, y0, x1, y1))):
                continue
            a, b = max(0, int(x0 - m)), max(0, int(y0 - m))
            c, d = min(w, int(math.ceil(x1 + m))), min(h, int(math.ceil(y1 + m)))
            if c > a and d > b:
                out[b:d, a:c] = True
        if mask is not None:
            mk = np.asarray(mask)
            if mk.shape[:2] != (h, w):
                mk = cv2.resize(mk.astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST)
            out |= mk > 0.5
        return out

    def _motion(self, small: np.ndarray, person: np.ndarray) -> tuple[dict[str, bool], bool]:
        """(facing id -> moving since the last frame, the view outside person boxes still). The frame is first
        registered to the previous one (a vibrating camera is not motion) and lightly blurred; each region's mean
        change is removed, so an exposure ramp is not motion either."""
        small = cv2.GaussianBlur(small, (3, 3), 0)
        prev, self._prev_small = self._prev_small, small
        if prev is None:
            return {fid: True for fid in self.facings}, False
        (dx, dy), resp = cv2.phaseCorrelate(prev.copy(), small.copy(), self._window)
        if resp > 0.1 and 0.1 < math.hypot(dx, dy) < 20:
            sh, sw = self._small_size
            small = cv2.warpAffine(small, np.array([[1, 0, dx], [0, 1, dy]], np.float32), (sw, sh),
                                   flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
        diff = small - prev
        d = (np.abs(diff - float(diff.mean())) > _DIFF_T)[~person]
        still = d.size > 0.2 * small.size and float(d.mean()) < self.motion_threshold
        out = {}
        for f in self.facings.values():
            x0, y0, x1, y1 = f._sbox
            r = diff[y0:y1, x0:x1]
            if r.size == 0:
                out[f.id] = False
                continue
            out[f.id] = float((np.abs(r - float(r.mean())) > _DIFF_T).mean()) >= self.motion_threshold
        return out, still

    # ------------------------------------------------------------------ alignment
    def _align(self, small: np.ndarray, person: np.ndarray) -> bool:
        """Register the frame to the reference view; sets self.alignment and self._warp. True when within limits."""
        ref = self._ref_small
        sh, sw = self._small_size
        valid = self._ref_small_valid & ~person
        # people hide most of the view (after a restart: most of the stored facings): keep the last warp, judge nothing
        if (valid.mean() < 0.2) if self._structure_known else (valid.sum() < 0.5 * self._ref_small_valid.sum()):
            self.alignment = Alignment(self.alignment.ok, self.alignment.shift_px, self.alignment.rotation_deg,
                                       None, "view hidden by people")
            return self.alignment.ok
        # ECC from the last warp; when phase correlation sees a jump, also from its shift: the better fit wins
        # (both OpenCV calls may scale or blur float32 inputs in place: give them copies)
        (dx, dy), resp = cv2.phaseCorrelate(ref.copy(), small.copy(), self._window)
        starts = [self._warp.copy()]
        if abs(self._warp[0, 2]) + abs(self._warp[1, 2]) > 0.5 or abs(self._warp[1, 0]) > 1e-3:
            starts.append(np.eye(2, 3, dtype=np.float32))  # where the camera belongs: never stuck off it
        if resp > 0.1 and math.hypot(dx - self._warp[0, 2], dy - self._warp[1, 2]) > 2.0:
            starts.append(np.array([[1, 0, dx], [0, 1, dy]], np.float32))
        # registered on what still looks like the reference: the shelf structure and the facings last measured
        # unchanged (emptied facings, and restocked packs a few pixels off their old place, would pull it away)
        trusted = np.zeros(len(self.facings) + 1, bool)
        for k, f in enumerate(self.facings.values()):
            trusted[k + 1] = f._pending is None and f.cues is not None and f.cues["fill"] >= 0.9 \
                and (f.cues["ssim"] or 0.0) >= 0.8
        region = (valid & (self._structure | trusted[self._facing_index])).astype(np.uint8)
        if not self._structure_known:  # after a restart only the stored facings are known: all of them
            region = valid.astype(np.uint8)
        best = None
        for start in starts:  # each start as it is and refined by ECC: changed stock must not drag it away
            try:
                _, refined = cv2.findTransformECC(ref.copy(), small.copy(), start.copy(), cv2.MOTION_EUCLIDEAN,
                                                  (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 1e-4),
                                                  region, 5)
                candidates = (start, refined)
            except cv2.error:
                candidates = (start,)
            for warp in candidates:
                cc = self._structure_correlation(small, warp, valid)
                if best is None or cc > best[0] + 1e-4:
                    best = (cc, warp)
        cc, warp = best
        cx, cy = sw / 2.0, sh / 2.0
        moved = warp[:, :2] @ np.array([cx, cy]) + warp[:, 2] - np.array([cx, cy])
        shift = float(math.hypot(*moved)) * self._scale
        rot = math.degrees(math.atan2(float(warp[1, 0]), float(warp[0, 0])))
        if cc < self.min_correlation:
            reason, ok = f"correlation {cc:.2f} < {self.min_correlation:g}", False
        elif shift > self.max_shift_px:
            reason, ok = f"shifted {shift:.1f} px > {self.max_shift_px:g}", False
        elif abs(rot) > self.max_rotation_deg:
            reason, ok = f"rotated {rot:.2f}° > {self.max_rotation_deg:g}", False
        else:
            reason, ok = "", True
            self._warp = warp
        self.alignment = Alignment(ok, round(shift, 2), round(rot, 3), round(float(cc), 4), reason)
        return ok

    def _structure_correlation(self, small: np.ndarray, warp: np.ndarray, valid: np.ndarray) -> float:
        """Normalised correlation of the warped frame with the reference over what is not a facing (shelf edges,
        labels, back panel), so emptied or restocked facings do not look like a moved camera; the whole view
        when the facings cover nearly all of it."""
        sh, sw = self._small_size
        cur = cv2.warpAffine(small, warp, (sw, sh), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REPLICATE)
        cur = cv2.GaussianBlur(cur, (5, 5), 0)
        m = valid & self._structure if self._structure_known and (self._structure & valid).mean() >= 0.05 else valid
        a, b = self._ref_small_blur[m], cur[m]
        a, b = a - a.mean(), b - b.mean()
        den = math.sqrt(float((a * a).sum()) * float((b * b).sum()))
        return float((a * b).sum() / den) if den > 0 else 0.0

    def _camera_state(self, ok: bool, still: bool, t: float, t_wall: float | None) -> list[Event]:
        """camera_moved after `moved_after_s` of failed alignment (view still); back after as long aligned."""
        out: list[Event] = []
        if ok:
            self._bad_since = None
            if self.camera_moved:
                self._good_since = t if self._good_since is None else self._good_since
                if t - self._good_since >= self.moved_after_s:
                    out.append(self._set_moved(False, "aligned with the reference again", t, t_wall))
            return out
        self._good_since = None
        self._bad_since = t if self._bad_since is None else self._bad_since
        if not self.camera_moved and still and t - self._bad_since >= self.moved_after_s:
            out.append(self._set_moved(True, self.alignment.reason, t, t_wall))
            for f in self.facings.values():
                if f.state != "unknown":
                    out.append(self._set_state(f, "unknown", t, t_wall, "camera moved"))
                f._candidate = None
        return out

    def _set_moved(self, moved: bool, reason: str, t: float, t_wall: float | None) -> Event:
        self.camera_moved = moved
        self._bad_since = self._good_since = None
        a = self.alignment
        (log.warning if moved else log.info)("shelf %s: camera %s (%s)", self.camera,
                                             "moved" if moved else "back in place", reason)
        return make_event("camera_moved", {
            "camera": self.camera, "moved": moved, "reason": reason,
            "shift_px": None if not math.isfinite(a.shift_px) else a.shift_px,
            "rotation_deg": None if not math.isfinite(a.rotation_deg) else a.rotation_deg,
            "correlation": a.correlation}, t, t_wall, self.source)

    def _aligned(self, image: np.ndarray) -> np.ndarray:
        """The frame in the reference's geometry (warped back when the camera drifted a little)."""
        wp = self._warp.astype(np.float64).copy()
        if abs(wp[0, 2]) < 0.05 and abs(wp[1, 2]) < 0.05 and abs(wp[1, 0]) < 1e-4:
            return image
        wp[:, 2] *= self._scale
        h, w = image.shape[:2]
        return cv2.warpAffine(image, wp, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)

    # ------------------------------------------------------------------ photometry
    def _fit_photometric(self, aligned: np.ndarray, person: np.ndarray) -> None:
        """Per channel, robust `frame = gain * reference + offset`, fitted where stock does not change (shelf edges,
        labels, back panel outside the facings; the whole view when that is too small), without people or clipped
        pixels. A narrow range of values fits a gain alone (exposure and white balance are gains)."""
        sh, sw = self._small_size
        small = np.ascontiguousarray(cv2.resize(aligned, (sw, sh), interpolation=cv2.INTER_AREA)[::2, ::2])
        planes = cv2.split(small)
        hi = np.maximum(np.maximum(planes[0], planes[1]), planes[2])
        lo = np.minimum(np.minimum(planes[0], planes[1]), planes[2])
        ok = (hi < 250) & (lo > 3) & ~person[::2, ::2]
        use = ok & self._fit_where[0]
        if use.sum() < 300:  # facings cover nearly the whole view: a sample of all of it
            use = ok & self._fit_where[1]
            if use.sum() < 300:
                return
        idx = np.flatnonzero(use)
        if len(idx) > 4000:
            idx = idx[:: len(idx) // 4000 + 1]
        ref = self._ref_small_bgr[::2, ::2].reshape(-1, 3)[idx]
        cur = small.reshape(-1, 3)[idx].astype(np.float32)
        for c in range(3):
            x, y = ref[:, c], cur[:, c]
            gain, off = float(np.median(y / x)), 0.0
            keep = np.abs(y - gain * x) < 12.0
            for _ in range(3):
                xs, ys = x[keep], y[keep]
                if len(xs) < 50:
                    break
                vx = float(xs.var())
                if vx < 100.0:
                    gain, off = float(np.median(ys / xs)), 0.0
                else:
                    gain = float(((xs - xs.mean()) * (ys - ys.mean())).mean() / vx)
                    off = float(np.median(ys - gain * xs))
                r = y - (gain * x + off)
                mad = float(np.median(np.abs(r - np.median(r)))) * 1.4826
                keep = np.abs(r) < max(3.0 * mad, 6.0)
            self._gain[c], self._offset[c] = float(np.clip(gain, 0.25, 4.0)), float(np.clip(off, -60.0, 60.0))

    def _normalised(self, crop: np.ndarray) -> np.ndarray:
        """A frame crop mapped into the reference's photometry (float32 BGR 0-255)."""
        out = (crop.astype(np.float32) - self._offset) / self._gain
        return np.clip(out, 0, 255, out=out)

    # ------------------------------------------------------------------ references
    def _take_view(self, image: np.ndarray, person: np.ndarray, pending, t, t_wall, events, *, aligned: bool) -> None:
        """The whole view becomes the reference (person pixels are blanked and masked out)."""
        when, by, via = pending
        base = self._aligned(image) if aligned else image
        if self._ref_bgr is not None and not aligned:
            log.warning("shelf %s: reference view retaken while the camera is moved: the facing polygons stay in "
                        "the configured frame pixels, check that they still fit the shelf", self.camera)
        if not aligned:  # the new view is the camera's geometry now
            self._warp = np.eye(2, 3, dtype=np.float32)
        self._gain[:], self._offset[:] = 1.0, 0.0
        ref = base.copy()
        ref[person] = 0
        self._ref_bgr, self._ref_valid = ref, ~person
        self._structure_known = True
        self._refresh_small()
        with self._lock:
            if self._pending_view is pending:
                self._pending_view = None
        if self.camera_moved:
            events.append(self._set_moved(False, "reference retaken", t, t_wall))
        self._sample_panel()
        log.info("shelf %s: reference view taken (%s)", self.camera, when)
        self._save()

    def _refresh_small(self) -> None:
        sh, sw = self._small_size
        self._ref_small_bgr = cv2.resize(self._ref_bgr, (sw, sh), interpolation=cv2.INTER_AREA).astype(np.float32)
        self._ref_small = cv2.cvtColor(self._ref_small_bgr, cv2.COLOR_BGR2GRAY)
        self._ref_small_valid = cv2.resize(self._ref_valid.astype(np.uint8), (sw, sh),
                                           interpolation=cv2.INTER_NEAREST) > 0
        self._ref_small_blur = cv2.GaussianBlur(self._ref_small, (5, 5), 0)
        r = self._ref_small_bgr[::2, ::2]
        base = self._ref_small_valid[::2, ::2] & (r.max(2) < 250) & (r.min(2) > 8)
        # photometric fit: outside facings, everywhere (after a restart, until the view is retaken: the facings)
        self._fit_where = (base & self._structure[::2, ::2] if self._structure_known else base, base)

    def _learn_structure(self, aligned: np.ndarray, person: np.ndarray) -> None:
        """After a restart: the view around the stored facings (shelf edges, labels, back panel: what alignment and
        the photometric fit use) is taken from this aligned, still frame, in the stored facings' photometry. In
        memory only, like the view taken at startup."""
        fill = ~self._ref_valid & ~person
        self._ref_bgr[fill] = np.round(self._normalised(aligned[fill])).astype(np.uint8)
        self._ref_valid |= fill
        self._structure_known = True
        self._refresh_small()
        self._sample_panel()
        log.info("shelf %s: the view around the stored facings was taken again (kept in memory)", self.camera)

    def _sample_panel(self) -> None:
        """Back-panel colour (Lab) from the configured region of the reference, else the configured colour."""
        if self._panel_region is not None and self._ref_bgr is not None:
            h, w = self._ref_bgr.shape[:2]
            m = np.zeros((h, w), np.uint8)
            cv2.fillPoly(m, [np.round(self._panel_region * 16).astype(np.int32)], 1, shift=4)
            m = m.astype(bool) & self._ref_valid
            if m.sum() >= 20:
                bgr = self._ref_bgr[m].astype(np.float32).mean(0)
                self._panel_lab = _lab(bgr.reshape(1, 1, 3)).reshape(3)
                return
            if not self._structure_known and self._stored_panel_lab is not None:  # restarted: the saved colour
                self._panel_lab = self._stored_panel_lab
                return
            log.warning("shelf %s: back_panel_region is hidden in the reference; panel cue off", self.camera)
        self._panel_lab = None if self._panel_bgr is None else _lab(
            np.asarray(self._panel_bgr, np.float32).reshape(1, 1, 3)).reshape(3)

    def _take_facing(self, f: Facing, aligned: np.ndarray, t: float, t_wall: float | None, events: list) -> None:
        """The facing's current look (in the reference photometry) becomes its reference; its state is full."""
        x0, y0, x1, y1 = f._bbox
        crop = self._normalised(aligned[y0:y1, x0:x1])
        region = self._ref_bgr[y0:y1, x0:x1]
        region[f._mask] = np.round(crop[f._mask]).astype(np.uint8)
        self._ref_valid[y0:y1, x0:x1] |= f._mask
        self._refresh_small()
        if self._panel_region is not None:
            self._sample_panel()
        f._ref = self._make_ref(f, self._ref_bgr[y0:y1, x0:x1], self._ref_valid[y0:y1, x0:x1], t_wall)
        reason, by, via = f._pending or "now", f._pending_by, f._pending_via
        with self._lock:
            f._pending = None
        f.cues, _ = self._measure(f, aligned)  # against the new reference (the old cues predate the retake)
        f._candidate, f.measured_t = None, t
        stored = self._save()
        events.append(make_event("facing_reference", {"facing": f.id, "sku": f.sku, "camera": self.camera,
                                                      "reason": reason, "by": by, "via": via, "stored": stored},
                                 t, t_wall, self.source))
        if f.state != "full":
            events.append(self._set_state(f, "full", t, t_wall, "reference retaken"))

    def _make_ref(self, f: Facing, bgr: np.ndarray, valid: np.ndarray, t_wall: float | None) -> _Ref:
        """A facing's reference from its bbox crop of the reference view: only the polygon and the margin are kept
        (the cues' filters reach no further, so they measure the same here and after a restart)."""
        bgr = bgr.copy()
        bgr[~f._keep] = 0
        valid = valid & f._keep
        crop = bgr.astype(np.float32)
        gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
        mu = cv2.GaussianBlur(gray, (0, 0), 1.5)
        var = cv2.GaussianBlur(gray * gray, (0, 0), 1.5) - mu * mu
        lab = self._cell_mean(f, _lab(crop))
        edges = self._cell_mean(f, _edges(gray))
        product = np.ones(f._n_cells, np.float32)
        if self._panel_lab is not None:
            d = np.linalg.norm(lab - self._panel_lab, axis=1)
            product = ((d > _PANEL_NEAR) | (edges >= _EDGE_MIN)).astype(np.float32)
            if product.sum() < 0.25 * f._n_cells:
                log.warning("shelf %s: the reference of facing %s looks empty (%.0f%% product); retake it after "
                            "restocking", self.camera, f.id, 100.0 * product.mean())
                product[:] = 1.0
        return _Ref(gray, mu, var, lab, edges, product, bgr, valid, t_wall)

    def _cell_mean(self, f: Facing, img: np.ndarray) -> np.ndarray:
        """Per-cell mean of an (h, w) or (h, w, c) map over the facing's polygon."""
        lab = f._labels
        sel = lab >= 0
        idx = lab[sel]
        counts = np.maximum(np.bincount(idx, minlength=f._n_cells), 1).astype(np.float32)
        if img.ndim == 2:
            return (np.bincount(idx, weights=img[sel], minlength=f._n_cells) / counts).astype(np.float32)
        return np.stack([np.bincount(idx, weights=img[..., k][sel], minlength=f._n_cells) / counts
                         for k in range(img.shape[2])], 1).astype(np.float32)

    # ------------------------------------------------------------------ measuring
    def _measure(self, f: Facing, aligned: np.ndarray) -> tuple[dict, bool]:
        """Cues of the facing now; (cues with `fill`, whether enough that is not back panel fills it to be out of
        every `alert_on` state: restocked)."""
        x0, y0, x1, y1 = f._bbox
        cur = self._normalised(aligned[y0:y1, x0:x1])
        ref = f._ref
        gray = cv2.cvtColor(cur, cv2.COLOR_BGR2GRAY)
        mu = cv2.GaussianBlur(gray, (0, 0), 1.5)
        var = cv2.GaussianBlur(gray * gray, (0, 0), 1.5) - mu * mu
        cov = cv2.GaussianBlur(gray * ref.gray, (0, 0), 1.5) - mu * ref.mu
        ssim = ((2 * mu * ref.mu + _SSIM_C1) * (2 * cov + _SSIM_C2)) / \
               ((mu * mu + ref.mu * ref.mu + _SSIM_C1) * (var + ref.var + _SSIM_C2))
        s = self._cell_mean(f, ssim)
        lab = self._cell_mean(f, _lab(cur))
        e = self._cell_mean(f, _edges(gray))
        cues = [np.clip((s - _SSIM_LO) / (_SSIM_HI - _SSIM_LO), 0, 1)]
        d_ref = np.linalg.norm(lab - ref.lab, axis=1)
        cues.append(np.clip(1 - (d_ref - _COLOUR_SAME) / (_COLOUR_DIFF - _COLOUR_SAME), 0, 1))
        has_edges = ref.edges >= _EDGE_MIN
        e_ratio = np.where(has_edges, e / np.maximum(ref.edges, 1e-6), np.nan)
        edge_cue = np.where(has_edges, np.clip(e_ratio / 0.5, 0, 1), np.nan)
        panel_cue = np.full(f._n_cells, np.nan, np.float32)
        d_panel = None
        if self._panel_lab is not None:
            d_panel = np.linalg.norm(lab - self._panel_lab, axis=1)
            panel_cue = np.clip((d_panel - _PANEL_NEAR) / (_PANEL_FAR - _PANEL_NEAR), 0, 1)
        score = _row_mean(np.stack(cues + [edge_cue, panel_cue], 1))
        w = ref.product
        fill = float((w * (score >= 0.5)).sum() / max(w.sum(), 1e-6))
        # "something is there": edges and not panel, ignoring the reference's look (a restock may differ)
        there = _row_mean(np.stack([edge_cue, panel_cue], 1))
        there = np.where(np.isnan(there), score, there)
        there_fill = float((w * (there >= 0.5)).sum() / max(w.sum(), 1e-6))
        pw = w / max(w.sum(), 1e-6)

        def avg(v):
            ok = np.isfinite(v)
            return None if not ok.any() else round(float((v[ok] * pw[ok]).sum() / max(pw[ok].sum(), 1e-9)), 3)

        out = {"fill": round(fill, 3), "ssim": avg(s), "colour_distance": avg(d_ref), "edge_ratio": avg(e_ratio),
               "panel_distance": None if d_panel is None else avg(d_panel), "cells": int(f._n_cells),
               "gain": [round(float(g), 3) for g in self._gain]}
        # restocked: past the threshold of every state that needs action (a facing that alerts when low must not
        # have its low shelf taken as the full reference)
        return out, there_fill >= (f.low_below if "low" in f.alert_on else f.empty_below) + f.hysteresis

    def _advance(self, f: Facing, fill: float, dt: float, t: float, t_wall: float | None, events: list) -> None:
        """Hysteresis + persistence: report a new state once it has been measured for persistence_s of clear view in
        total (`dt`: seconds since the previous measurement, 0 when someone was in front in between); a measurement
        with another result starts over."""
        c = f.classify(fill)
        if c == f.state:
            f._candidate = None
            return
        if c != f._candidate:
            f._candidate, f._cand_measured = c, 0.0
        else:
            f._cand_measured += dt
        if f._cand_measured >= f.persistence_s:
            events.append(self._set_state(f, c, t, t_wall, f"fill {fill:.2f}"))

    def _set_state(self, f: Facing, state: str, t: float, t_wall: float | None, reason: str) -> Event:
        prev, f.state, f.since_t, f._candidate = f.state, state, t, None
        (log.info if state != "unknown" else log.debug)("shelf %s: facing %s (%s) %s -> %s (%s)", self.camera, f.id,
                                                        f.sku, prev, state, reason)
        return make_event("facing_state", {"facing": f.id, "sku": f.sku, "camera": self.camera, "state": state,
                                           "previous": prev, "needs_action": f.needs_action, "reason": reason,
                                           "cues": f.cues if state != "unknown" else None}, t, t_wall, self.source)

    # ------------------------------------------------------------------ persistence
    def _stored(self) -> tuple[np.ndarray, np.ndarray, list[Facing]]:
        """What is written: each facing's own reference within its polygon and margin, zero everywhere else."""
        w, h = self._size
        img, valid = np.zeros((h, w, 3), np.uint8), np.zeros((h, w), bool)
        facings = [f for f in self.facings.values() if f._ref is not None and f._keep is not None]
        for inner in (False, True):  # margins first: a neighbour's polygon wins over a margin
            for f in facings:
                x0, y0, x1, y1 = f._bbox
                sel = f._mask if inner else f._keep & ~f._mask
                img[y0:y1, x0:x1][sel] = f._ref.bgr[sel]
                valid[y0:y1, x0:x1][sel] = f._ref.valid[sel]
        return img, valid, facings

    def _save(self) -> bool:
        """Write the facings' references to reference_dir; whether they are stored there now."""
        if self.reference_dir is None or self._ref_bgr is None or self.not_persisted is not None:
            return False
        img, valid, facings = self._stored()
        if not facings:
            return False
        try:
            d = self.reference_dir
            ok, png = cv2.imencode(".png", img)
            ok2, valid = cv2.imencode(".png", valid.astype(np.uint8) * 255)
            if not (ok and ok2):
                raise OSError("PNG encoding failed")
            panel = self._panel_lab if self._structure_known else self._stored_panel_lab
            meta = {"v": _REF_VERSION, "camera": self.camera, "size": list(self._size),
                    "panel_lab": None if panel is None else [round(float(v), 3) for v in panel],
                    "facings": {f.id: {"sku": f.sku, "polygon": f.polygon.tolist(), "t_wall": f._ref.t_wall}
                                for f in facings}}
            write_atomic(d / "reference.png", png.tobytes())
            write_atomic(d / "valid.png", valid.tobytes())
            write_atomic(d / "reference.json", json.dumps(meta, indent=1).encode())
        except OSError as e:
            log.warning("shelf %s: could not save the reference to %s: %s", self.camera, self.reference_dir, e)
            return False
        return True

    def _load(self) -> None:
        """The stored facings' references; the view around them is taken again (`_learn_structure`). A reference
        of an older version (the whole view) is rewritten with the facings only, or removed when none fits. Not
        loaded while a retake of every facing asked before the first frame waits: that takes the view afresh."""
        d = self.reference_dir
        with self._lock:
            view = self._pending_view
        if view is not None and view[0] != "startup":  # every facing is to be retaken (asked before this frame)
            log.info("shelf %s: a retake of every facing is waiting; the saved reference in %s is not used",
                     self.camera, d)
            return
        try:
            meta = json.loads((d / "reference.json").read_text())
            ref = cv2.imread(str(d / "reference.png"), cv2.IMREAD_COLOR)
            valid = cv2.imread(str(d / "valid.png"), cv2.IMREAD_GRAYSCALE)
        except (OSError, ValueError):
            return
        try:
            size = tuple(meta.get("size", ()))
            panel = meta.get("panel_lab")
            panel = None if panel is None else np.asarray(panel, np.float32).reshape(3)
        except (AttributeError, TypeError, ValueError) as e:  # not an object, or a field of the wrong shape
            log.warning("shelf %s: saved reference in %s is unreadable (%s); taking a new one", self.camera, d, e)
            return
        legacy = meta.get("v") != _REF_VERSION
        if ref is None or valid is None or size != self._size or ref.shape[:2] != valid.shape:
            log.info("shelf %s: saved reference in %s does not fit this frame; taking a new one", self.camera, d)
            if legacy:
                self._remove_stored()
            return
        valid = valid > 127
        self._stored_panel_lab = panel
        if legacy and self._panel_region is not None:  # the whole view: the back panel's colour, before it goes
            self._ref_bgr, self._ref_valid, self._structure_known = ref, valid, True
            self._sample_panel()
            self._stored_panel_lab, self._ref_bgr, self._ref_valid = self._panel_lab, None, None
        restored = []
        saved_facings = meta.get("facings")
        for f in self.facings.values():
            saved = saved_facings.get(f.id) if isinstance(saved_facings, dict) else None
            if isinstance(saved, dict) and saved.get("sku") == f.sku and _same_polygon(saved.get("polygon"),
                                                                                        f.polygon) \
                    and f._mask is not None:
                restored.append((f, saved.get("t_wall")))
        if not restored:
            log.info("shelf %s: no facing of the saved reference in %s fits the planogram; taking a new one",
                     self.camera, d)
            if legacy:
                self._remove_stored()
            return
        keep = np.zeros(valid.shape, bool)  # an older reference held the whole view: only the facings are used
        for f, _ in restored:
            x0, y0, x1, y1 = f._bbox
            keep[y0:y1, x0:x1] |= f._keep
        ref[~keep] = 0
        self._ref_bgr, self._ref_valid = ref, valid & keep
        self._structure_known = False
        self._pending_view = None
        self._refresh_small()
        self._sample_panel()
        for f, t_wall in restored:
            x0, y0, x1, y1 = f._bbox
            f._ref = self._make_ref(f, ref[y0:y1, x0:x1], self._ref_valid[y0:y1, x0:x1], t_wall)
            with self._lock:  # a retake asked before this first frame (an ack, a command) still stands
                if f._pending == "startup":
                    f._pending = None
        log.info("shelf %s: reference loaded from %s (%d of %d facings); the view around them is taken again at "
                 "the first still, aligned frame", self.camera, d, len(restored), len(self.facings))
        if legacy:
            log.info("shelf %s: rewriting the saved reference with the facings only", self.camera)
            self._save()

    def _remove_stored(self) -> None:
        for name in REFERENCE_FILES:
            try:
                (self.reference_dir / name).unlink(missing_ok=True)
            except OSError as e:
                log.warning("shelf %s: could not remove %s: %s", self.camera, self.reference_dir / name, e)


REFERENCE_FILES = ("reference.png", "valid.png", "reference.json")  # a camera's files in its reference_dir


def reference_dir_of(c) -> Path | None:
    """Where a PlanogramConfig's references are stored: its reference_dir, None (the default) <data dir>/shelf/
    <camera>, "" nowhere (kept in memory: None)."""
    if c.reference_dir is None:
        from edge.core.paths import data_dir

        return data_dir() / "shelf" / c.camera
    return Path(c.reference_dir) if c.reference_dir else None


def _same_polygon(saved, polygon: np.ndarray) -> bool:
    """Whether a stored polygon (JSON) is this facing's: same vertices, in order (False for anything unreadable or
    with another number of vertices)."""
    try:
        pts = np.asarray(saved, np.float64)
    except (TypeError, ValueError):
        return False
    return pts.shape == polygon.shape and bool(np.allclose(pts, polygon))


def _row_mean(a: np.ndarray) -> np.ndarray:
    """Mean of each row over its finite entries (NaN where there are none)."""
    ok = np.isfinite(a)
    n = ok.sum(1)
    return np.where(n > 0, np.where(ok, a, 0).sum(1) / np.maximum(n, 1), np.nan)


def _hex_bgr(text: str) -> tuple[int, int, int]:
    r, g, b = (int(text[i:i + 2], 16) for i in (1, 3, 5))
    return b, g, r


def _lab(bgr: np.ndarray) -> np.ndarray:
    """CIE Lab (L 0-100) of float BGR 0-255."""
    return cv2.cvtColor(np.ascontiguousarray(bgr, np.float32) / 255.0, cv2.COLOR_BGR2Lab)


def _edges(gray: np.ndarray) -> np.ndarray:
    """1.0 where the gradient magnitude of the (lightly smoothed) grey image is an edge."""
    g = cv2.GaussianBlur(gray, (3, 3), 0)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3)
    return (cv2.magnitude(gx, gy) > _EDGE_T * 4).astype(np.float32)  # Sobel 3x3 scales gradients by 4


def shelf_reference_handler(planograms, *, error: type[Exception] = LookupError):
    """Handler for `SyncService(commands={"shelf_reference": ...})`, args `{"facing", "camera", "by"}`
    (sync.commands.ShelfReferenceArgs): retake the reference of one facing, or with facing "" / "all" of every
    facing (of `camera`, or of every camera). `planograms` is a mapping camera -> ShelfFacings
    (Analytics.planograms) or a callable returning one (the runtime builds its stages after sync starts). An unknown
    facing or camera raises `error`: pass sync.commands.CommandError for a plain `error` result."""

    def shelf_reference(args: dict) -> dict:
        cams = planograms() if callable(planograms) else planograms
        if not cams:
            raise error("no shelf facings on this device (no [analytics.planogram] facings)")
        facing, camera = (args.get("facing") or "").strip(), (args.get("camera") or "").strip()
        by = args.get("by") or "cloud"
        if camera and camera not in cams:
            raise error(f"no camera {camera!r} with facings on this device (cameras: {', '.join(cams)})")
        chosen = {camera: cams[camera]} if camera else dict(cams)
        pending: list[str] = []
        if facing.lower() in ("", "all"):
            for p in chosen.values():
                pending += p.retake_reference(None, by=by, via="mqtt")
        else:
            owner = next((p for p in chosen.values() if facing in p.facings), None)
            if owner is None:
                known = ", ".join(fid for p in chosen.values() for fid in p.facings)
                raise error(f"no facing {facing!r} on this device (facings: {known})")
            pending = owner.retake_reference(facing, by=by, via="mqtt")
            chosen = {owner.camera: owner}
        return {"pending": pending, "cameras": sorted(chosen),
                "taken": "at the next frame with nobody in front of the facing"}

    return shelf_reference
