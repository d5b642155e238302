"""The mirror pipeline: capture -> pose -> fit+render -> occlusion+composite, one thread per stage.

Stages are linked by bounded latest-frame slots (a slow stage drops stale frames instead of queueing them), so
they overlap and latency stays bounded. Motion-to-photon latency = composited frame ready - capture timestamp;
it is written to Frame.meta["m2p_ms"] and the `edge_tryon_motion_to_photon_seconds` histogram.
If the renderer cannot start (no EGL), frames pass through: the mirror shows the plain camera view.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np
from prometheus_client import Counter, Gauge, Histogram

from edge.core.events import EventSink
from edge.core.frames import Frame
from edge.core.metrics import FRAME_ERRORS
from edge.tryon.actions import MirrorActions
from edge.tryon.composite import composite_inplace
from edge.tryon.config import TryOnConfig
from edge.tryon.fitting import BodyFit, BodyFitter
from edge.tryon.garments import Catalog, CatalogError, Garment
from edge.tryon.gl import RendererUnavailable
from edge.tryon.intrinsics import Intrinsics
from edge.tryon.occlusion import apply_occlusion, drop_fragments, trim_to_person
from edge.tryon.session import SessionTracker, main_person
from edge.tryon.silhouette import TorsoSilhouette
from edge.tryon.sizing import ShoulderWidthEstimator, suggest_size

if TYPE_CHECKING:
    from edge.pose.types import PersonPose, PoseResult
    from edge.tryon.renderer import RenderOutput

log = logging.getLogger(__name__)

M2P = Histogram("edge_tryon_motion_to_photon_seconds", "capture timestamp -> composited mirror frame ready",
                buckets=(0.02, 0.033, 0.05, 0.066, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0))
STAGE = Histogram("edge_tryon_stage_seconds", "time spent in a try-on pipeline stage", ["stage"],
                  buckets=(0.002, 0.005, 0.01, 0.02, 0.033, 0.05, 0.08, 0.12, 0.2, 0.5))
FRAMES = Counter("edge_tryon_frames_total", "composited mirror frames")
DROPPED = Counter("edge_tryon_frames_dropped_total", "frames replaced in a latest-frame slot", ["stage"])
FPS = Gauge("edge_tryon_fps", "composited mirror frames per second (last 2 s)")
RENDERER_UP = Gauge("edge_tryon_renderer_available", "1 if the garment renderer runs, 0 if plain camera view")
POSE_ERROR_LOG_S = 10.0  # pose failures: the first is logged with its traceback, then a count at most this often


@dataclass(frozen=True, slots=True)
class PosedFrame:
    """Pose thread -> render thread: a captured frame and its pose result (None if pose failed)."""

    frame: Frame
    pose_result: PoseResult | None
    person: PersonPose | None = None  # the shopper, chosen on the pose thread (TryOnPipeline.shopper)
    visit: int = 0  # the shopper's visit (TryOnPipeline.shopper): a new one at a hand-over between two people


@dataclass(frozen=True, slots=True)
class RenderedFrame:
    """Render thread -> composite thread: the frame and what the render thread made for it.

    `garment_layer` is None when nothing was rendered (nobody dressed, renderer unavailable or failed); `fit`,
    `garment` and `intrinsics` are what occlusion needs to cut the layer.
    """

    frame: Frame
    person: PersonPose | None  # the person dressed (session.main_person), None if nobody
    fit: BodyFit | None
    garment_layer: RenderOutput | None  # premultiplied RGBA + depth, cropped to the garment's bbox
    garment: Garment | None
    intrinsics: Intrinsics | None
    hint: str | None = None  # the mirror's circuit breaker is open: plain camera view with this hint
    visit: int = 0  # PosedFrame.visit


class LatestSlot:
    """Bounded (size-1) latest-value hand-off between two threads; put() replaces an unread value."""

    def __init__(self, name: str):
        self.name = name
        self._cv = threading.Condition()
        self._item = None
        self._has = False
        self.closed = False

    def put(self, item) -> None:
        with self._cv:
            if self._has:
                DROPPED.labels(self.name).inc()
            self._item, self._has = item, True
            self._cv.notify_all()

    def get(self, timeout: float = 0.5):
        """Next value, or None on timeout/close."""
        with self._cv:
            if not self._has and not self.closed:
                self._cv.wait(timeout)
            if not self._has:
                return None
            item, self._item, self._has = self._item, None, False
            return item

    def close(self) -> None:
        with self._cv:
            self.closed = True
            self._cv.notify_all()


class TryOnPipeline:
    """Run the mirror for one frame source and pose stage (any object with process(Frame) -> PoseResult)."""

    def __init__(self, cfg: TryOnConfig, source: Iterable[Frame], pose, sink: EventSink | None = None,
                 catalog: Catalog | None = None, renderer_factory=None, breaker=None, hint: str = "Step into view"):
        self.cfg = cfg
        # edge.core.breaker.CircuitBreaker of the mirror (None: none): fed the dressed person's presence and torso
        # visibility and the motion-to-photon latency; while open the garment is not drawn and `hint` is shown
        self.breaker, self.hint = breaker, hint
        self.source = source
        self.pose = pose
        self.catalog = catalog or Catalog(cfg.catalog, cfg.garment_cache_dir)
        self._renderer_factory = renderer_factory
        want = cfg.default_sku if cfg.default_sku in self.catalog.entries else self.catalog.skus()[0]
        sku = self._first_loadable(want)  # built or read now: a broken model is known before the first frame
        if sku != want:
            log.warning("[tryon] default_sku %r: %s does not load (%s); showing %s, the first garment that does",
                        cfg.default_sku, want, self.catalog.broken[want], sku)
        names = [c.name for c in self.catalog.entry(sku).colours]
        colour = cfg.default_colour if cfg.default_colour in names else (names[0] if names else "")
        if cfg.default_sku not in self.catalog.entries or colour != (cfg.default_colour or colour):
            log.warning("[tryon] default_sku %r / default_colour %r: not in the catalogue %s; showing %s %s",
                        cfg.default_sku, cfg.default_colour, self.catalog.path, sku, colour)
        self._want = (sku, colour)
        self._lock = threading.Lock()
        self._s_capture, self._s_pose, self._s_render = LatestSlot("capture"), LatestSlot("pose"), LatestSlot("render")
        self._out_cv = threading.Condition()
        self._out: Frame | None = None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.renderer_status = "starting"  # starting | ok | unavailable
        self.renderer_error = ""
        self.sessions = SessionTracker(sink, cfg.session.absence_timeout_s, cfg.session.min_duration_s)
        self.actions = MirrorActions(self)  # touch (page) and gestures change the mirror through this seam
        self.gestures = None  # edge.tryon.gestures.MirrorGestures (attach_gestures): hands on the pose thread
        self._shopper_id: int | None = None  # pose track id of the shopper (shopper(), pose thread)
        self._with_shopper: set[int] = set()  # track ids seen in view beside the shopper (shopper(), pose thread)
        self._visit = 0  # shopper(): counts the hand-overs between two people
        self.gestures_error = ""  # why gestures are off although configured (the hand models did not open)
        self.shoulders = ShoulderWidthEstimator()
        self.size_suggestion: str | None = None
        self._sized_id: int | None = None  # pose track id of the person the shoulder samples are of
        self.m2p_ms: deque[float] = deque(maxlen=600)
        self._t_out: deque[float] = deque(maxlen=240)
        self._t_in: deque[float] = deque(maxlen=240)  # camera frames taken by the capture thread
        self.frames_out = 0
        # frames whose pose raised (shown without a garment): also in `edge_frame_errors_total{error}`
        self.frame_errors, self.last_frame_error = 0, None
        self._pose_error_log = (-1e9, 0)  # (when, frame_errors) of the last pose-failure log line
        self.source_ended = threading.Event()
        self._sync: _RenderState | None = None  # run_sync's render state (owned by the thread calling it)

    def _first_loadable(self, sku: str) -> str:
        """`sku` if its model loads, else the first catalogue garment that does (`sku` if none does)."""
        for s in [sku] + [s for s in self.catalog.skus() if s != sku]:
            try:
                self.catalog.load(s)
            except CatalogError:  # logged by Catalog.load, and left out of the catalogue
                continue
            return s
        return sku

    # -- control (any thread) -------------------------------------------------------------------------------
    def start(self) -> TryOnPipeline:
        for name, fn in (("capture", self._capture_loop), ("pose", self._pose_loop), ("render", self._render_loop),
                         ("composite", self._composite_loop)):
            t = threading.Thread(target=self._guard, args=(name, fn), name=f"tryon-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if hasattr(self.source, "stop"):
            self.source.stop()
        for s in (self._s_capture, self._s_pose, self._s_render):
            s.close()
        for t in self._threads:
            t.join(timeout)
        self.sessions.close()
        if self.gestures is not None:
            self.gestures.close()

    def attach_gestures(self, models, zoo=None) -> None:
        """Run the hand models + gesture recognizer ([tryon.gestures]) on the pose thread, after each pose frame is
        handed on; gestures act through self.actions (source "swipe", "point" or "palm"). models: the device's
        ModelsSection."""
        from edge.tryon.gestures import MirrorGestures  # noqa: PLC0415 - only mirrors with gestures load hands

        self.gestures = MirrorGestures.open(self.cfg.gestures, models, apply=self._gesture_action,
                                            mirror=self.cfg.mirror_view, zoo=zoo)
        budget = self.cfg.gestures.m2p_budget_ms
        self.gestures.strain = lambda: self.strain(budget)  # yield_to_picture: hands give way to a strained mirror

    def _gesture_action(self, action: str, value, source: str) -> dict:
        return self.actions.apply(action, value, source=source)

    def select(self, sku: str, colour: str = "") -> None:
        """Choose the garment/colour (applied by the render thread on its next frame)."""
        e = self.catalog.entry(sku)  # raises CatalogError for unknown SKUs
        if sku in self.catalog.broken:
            raise CatalogError(f"{sku} cannot be shown: {self.catalog.broken[sku]}")
        if colour and colour not in {c.name for c in e.colours}:
            raise CatalogError(f"{sku} has no colour {colour!r}; colours: {[c.name for c in e.colours]}")
        with self._lock:
            self._want = (sku, colour or (e.colours[0].name if e.colours else ""))

    @property
    def selection(self) -> tuple[str, str]:
        with self._lock:
            return self._want

    def latest(self) -> Frame | None:
        with self._out_cv:
            return self._out

    def wait_frame(self, after_seq: int = -1, timeout: float = 2.0) -> Frame | None:
        """The newest composited frame with seq > after_seq (blocks up to timeout)."""
        end = time.monotonic() + timeout
        with self._out_cv:
            while self._out is None or self._out.seq <= after_seq:
                left = end - time.monotonic()
                if left <= 0 or self._stop.is_set():
                    return None
                self._out_cv.wait(left)
            return self._out

    @staticmethod
    def _rate(stamps: deque[float], window: float = 2.0) -> float:
        now = time.monotonic()
        recent = [t for t in list(stamps) if now - t <= window]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)

    def fps(self) -> float:
        return self._rate(self._t_out)

    def dropped_fraction(self) -> float:
        """Of the camera's frames in the last 2 s, the fraction the mirror did not show (0 when it keeps up)."""
        cam = self._rate(self._t_in)
        return max(0.0, 1.0 - self.fps() / cam) if cam > 0 else 0.0

    def strain(self, m2p_budget_ms: float) -> float:
        """How far the mirror is from keeping up, 0 when it does: the fraction of camera frames dropped in the last
        2 s, or how far the motion-to-photon p95 of the last 60 frames is over m2p_budget_ms (as a fraction of it),
        whichever is larger."""
        recent = list(self.m2p_ms)[-60:]
        late = float(np.percentile(recent, 95)) / m2p_budget_ms - 1.0 if len(recent) >= 20 else 0.0
        return max(self.dropped_fraction(), late, 0.0)

    def m2p_percentiles(self) -> dict[str, float | None]:
        a = np.asarray(self.m2p_ms)
        if len(a) == 0:
            return {"p50": None, "p95": None}
        return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95))}

    def state(self) -> dict:
        sku, colour = self.selection
        pc = self.m2p_percentiles()
        circuit = self.breaker.state if self.breaker is not None else None
        return {"sku": sku, "colour": colour, "size_suggestion": self.size_suggestion,
                "renderer": self.renderer_status, "renderer_error": self.renderer_error,
                "circuit": circuit, "hint": self.hint if circuit == "open" else None,
                "fps": round(self.fps(), 1), "frames": self.frames_out, "frame_errors": self.frame_errors,
                "m2p_p50_ms": None if pc["p50"] is None else round(pc["p50"], 1),
                "m2p_p95_ms": None if pc["p95"] is None else round(pc["p95"], 1),
                "gestures": self.gestures.state() if self.gestures is not None else None,
                "gestures_error": self.gestures_error or None}

    def run_sync(self, frame: Frame, pose_result: PoseResult | None = None) -> RenderedFrame:
        """One frame through pose (unless given), fit + render and occlusion + composite on the calling thread,
        without the stage threads (benchmarks, tests). frame.image becomes the mirror frame; the returned
        item's garment_layer is the layer as composited. Call close_sync() on the same thread when done.
        ValueError for an empty frame (the threaded pipeline skips those)."""
        if frame.image is None or frame.image.size == 0:
            raise ValueError(f"frame {frame.seq} is empty")
        if self._sync is None:
            self._sync = _RenderState()
        if pose_result is None:
            pose_result = self.pose.process(frame)
        posed = self._posed(frame, pose_result)
        if self.gestures is not None:
            self.gestures.process(frame, pose_result, posed.person)
        item = self._render_one(self._sync, posed)
        self._composite_one(item)
        return item

    @property
    def sync_renderer(self):
        """run_sync's GarmentRenderer (None before the first frame or without EGL)."""
        return None if self._sync is None else self._sync.renderer

    def close_sync(self) -> None:
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    # -- stages -------------------------------------------------------------------------------------------------
    def _guard(self, name, fn) -> None:
        try:
            fn()
        except Exception:  # noqa: BLE001
            log.exception("try-on %s stage crashed", name)
            if name == "capture":
                self.source_ended.set()

    def _capture_loop(self) -> None:
        for frame in self.source:
            if self._stop.is_set():
                break
            if frame.image is None or frame.image.size == 0:  # a camera hiccup: nothing to pose or show
                log.warning("try-on: skipped empty frame %d from %s", frame.seq, frame.source)
                continue
            self._t_in.append(time.monotonic())
            self._s_capture.put(frame)
        self.source_ended.set()
        self._s_capture.close()

    def shopper(self, result: PoseResult | None) -> PersonPose | None:
        """The person the mirror serves in this pose result (session.main_person, preferring the last one), chosen
        once per frame on the pose thread, so the garment and the gestures always follow the same person even when
        the render thread skips frames. A new shopper who was in view beside the last one is someone else: a new
        visit (self._visit; the try-on session ends). A new track id never seen beside them may be the same
        person re-found after the pose lost them (turning away): the visit goes on."""
        person = main_person(result, self._shopper_id)
        if person is None:
            return None
        if person.track_id != self._shopper_id:
            if self._shopper_id is not None and person.track_id in self._with_shopper:
                self._visit += 1
            self._shopper_id = person.track_id
            self._with_shopper = set()
        self._with_shopper.update(p.track_id for p in result.people if p.track_id != person.track_id)
        return person

    def _posed(self, frame: Frame, result: PoseResult | None) -> PosedFrame:
        """The frame, its pose result and its shopper (shopper()) for the render thread."""
        person = self.shopper(result)
        return PosedFrame(frame, result, person, self._visit)

    def _pose_loop(self) -> None:
        while not self._stop.is_set():
            frame = self._s_capture.get()
            if frame is None:
                if self._s_capture.closed:
                    break
                continue
            t0 = time.monotonic()
            try:
                result = self.pose.process(frame)
            except Exception as e:  # noqa: BLE001 - a bad frame must not stop the mirror
                self._pose_failed(frame, e)
                result = None
            frame.meta["t_pose_done"] = time.monotonic()
            STAGE.labels("pose").observe(frame.meta["t_pose_done"] - t0)
            posed = self._posed(frame, result)
            job = self.gestures.prepare(frame, result, posed.person) if self.gestures is not None else None
            self._s_pose.put(posed)
            if job is not None:  # hands after the hand-off: the garment is not delayed, the next pose frame is
                self.gestures.run(job)
        self._s_pose.close()

    def _pose_failed(self, frame: Frame, err: Exception) -> None:
        """Count a frame whose pose raised (`frame_errors`, `edge_frame_errors_total`); log the first with its
        traceback, then how many more failed, at most every POSE_ERROR_LOG_S."""
        self.frame_errors += 1
        self.last_frame_error = f"{type(err).__name__}: {err}"[:300]
        FRAME_ERRORS.labels(type(err).__name__).inc()
        now, (t_log, n_log) = time.monotonic(), self._pose_error_log
        if self.frame_errors == 1:
            log.exception("try-on: pose failed on frame %d; the mirror shows it without a garment", frame.seq)
        elif now - t_log >= POSE_ERROR_LOG_S:
            log.warning("try-on: pose failed on %d more frames (%d in all); last: %s", self.frame_errors - n_log,
                        self.frame_errors, self.last_frame_error)
        else:
            return
        self._pose_error_log = (now, self.frame_errors)

    def _make_renderer(self, h: int, w: int):
        intr = Intrinsics.from_config(self.cfg.camera, w, h)
        if self._renderer_factory is not None:
            return self._renderer_factory(intr), intr
        from edge.tryon.renderer import renderer_from_config  # noqa: PLC0415
        return renderer_from_config(self.cfg, intr), intr

    def _render_loop(self) -> None:
        st = _RenderState()
        try:
            while not self._stop.is_set():
                item = self._s_pose.get()
                if item is None:
                    if self._s_pose.closed:
                        break
                    continue
                try:
                    done = self._render_one(st, item)
                except Exception:  # noqa: BLE001 - one bad frame must not stop the mirror: show the camera
                    log.exception("render stage failed on frame %d", item.frame.seq)
                    done = RenderedFrame(frame=item.frame, person=None, fit=None, garment_layer=None, garment=None,
                                         intrinsics=None)
                self._s_render.put(done)
        finally:
            st.close()
            self._s_render.close()

    def _render_one(self, st: _RenderState, posed: PosedFrame) -> RenderedFrame:
        """Fit and render the selected garment for one frame (on the render thread that owns st)."""
        t0 = time.monotonic()
        frame = posed.frame
        h, w = frame.shape
        if self.renderer_status != "unavailable" and st.size != (h, w):
            st.close()
            try:
                st.renderer, st.intr = self._make_renderer(h, w)
                st.fitter = BodyFitter(st.intr, self.cfg.smoothing, self.cfg.min_visibility,
                                       align_2d=self.cfg.fit.align_2d)
                self.renderer_status, st.size, st.shown = "ok", (h, w), (None, None)
                RENDERER_UP.set(1)
            except Exception as e:  # noqa: BLE001 - RendererUnavailable, or a bad [tryon.render] value (an
                # unwritable shader_cache_dir): the plain camera view, not a dead render thread
                self._renderer_failed(e)
                st.renderer = None
        drawing: Garment | None = None  # the garment being uploaded or drawn now
        person = posed.person
        if person is not None and person.track_id != st.person_id:
            if st.person_id is not None:  # someone else is dressed now: the garment must not glide over to them
                st.reset()
            st.person_id = person.track_id
        fit = out = garment = hint = None
        if self.breaker is not None:
            if person is not None:
                self.breaker.record(presence=_seen(person.score), visibility=torso_visibility(person))
            if not self.breaker.allow():  # open: plain camera with the hint instead of a misfitted garment
                hint = self.hint
        if hint is not None:
            st.reset()
        elif st.renderer is not None and person is not None:
            try:
                want = self.selection
                if want != st.shown:
                    try:
                        garment = self.catalog.load(want[0])
                    except CatalogError:  # its model is missing or corrupt (logged): keep what is shown
                        self._garment_failed(want, st.shown)
                    else:
                        drawing = garment
                        if st.shown[0] != want[0]:
                            st.renderer.set_garment(garment, garment.colour(want[1]))
                        else:
                            st.renderer.set_colour(garment.colour(want[1]))
                        drawing, st.shown = None, want
                garment = st.renderer.garment
                fit = st.fitter.fit(person, frame.t, garment.ref) if garment is not None else None
                if fit is not None:
                    if self.cfg.fit.silhouette:
                        if st.silhouette_sku != garment.sku:
                            fc = self.cfg.fit
                            st.silhouette = TorsoSilhouette(garment, fc.max_narrow, fc.max_widen,
                                                            smoothing=self.cfg.smoothing.enabled)
                            st.silhouette_sku = garment.sku
                        fit.torso_scale = st.silhouette.update(person.mask, fit, st.intr, frame.t)
                    if hasattr(st.renderer, "set_torso_scale"):
                        st.renderer.set_torso_scale(fit.torso_scale)
                    if hasattr(st.renderer, "match_scene"):  # light the garment like the scene around the person
                        st.renderer.match_scene(frame.image, person.mask, person.landmarks, frame.t)
                    drawing = garment
                    out = st.renderer.render(fit.poses)
                    drawing, st.drawn = None, st.shown
            except RendererUnavailable as e:
                self._renderer_failed(e)
                try:  # its GL context goes with it
                    st.close()
                except Exception:  # noqa: BLE001 - a renderer that failed may fail to close too
                    log.debug("closing the failed renderer failed", exc_info=True)
                    st.renderer = None
            except Exception as e:  # noqa: BLE001 - show the camera rather than stop
                log.exception("render failed on frame %d", frame.seq)
                # before any garment has drawn in this renderer the renderer itself may be at fault: one garment is
                # blamed then, not the whole catalogue in turn
                if drawing is not None and drawing.sku != st.drawn[0] and not (st.drawn[0] is None and st.blamed):
                    st.blamed = True
                    self._garment_undrawable(st, drawing, e)
        elif person is None:
            st.reset()
        frame.meta["t_render_done"] = time.monotonic()
        STAGE.labels("render").observe(frame.meta["t_render_done"] - t0)
        return RenderedFrame(frame=frame, person=person, fit=fit, garment_layer=out, garment=garment,
                             intrinsics=st.intr, hint=hint, visit=posed.visit)

    def _garment_failed(self, want: tuple[str, str], shown: tuple) -> None:
        """The selected garment cannot be loaded or drawn (logged): go back to `shown`, if any."""
        with self._lock:
            if self._want == want and shown[0] is not None:
                self._want = shown
                log.warning("try-on: %s cannot be shown, back to %s", want[0], shown[0])

    def _garment_undrawable(self, st: _RenderState, garment: Garment, err: Exception) -> None:
        """A garment that loaded but failed to upload or draw before it was ever drawn (e.g. a texture larger than
        the GL takes) is left out of the catalogue like one whose model does not load, and the mirror goes back to
        the garment drawn before (else the first that loads). Otherwise every frame fails again on it, each with a
        traceback, and the shopper sees no garment."""
        why = " ".join(str(err).split())  # a GLError spans many lines
        self.catalog.mark_broken(garment.sku, f"{self.catalog.path}: {garment.sku}: cannot be drawn "
                                              f"({type(err).__name__}: {why})"[:300])
        back = st.drawn
        if back[0] is None:
            sku = self._first_loadable(garment.sku)
            back = (sku, self.catalog.entry(sku).colours[0].name if self.catalog.entry(sku).colours else "")
        st.shown = (None, None)  # the scene may hold part of it: the next frame sets the garment afresh
        want = self.selection
        if want[0] == garment.sku and back[0] != garment.sku:
            self._garment_failed(want, back)

    def _renderer_failed(self, e: Exception) -> None:
        why = str(e) if isinstance(e, RendererUnavailable) else f"{type(e).__name__}: {e}"
        if self.renderer_status != "unavailable":
            log.error("try-on renderer unavailable, showing the plain camera view: %s", why)
        self.renderer_status, self.renderer_error = "unavailable", why
        RENDERER_UP.set(0)

    def _composite_loop(self) -> None:
        while not self._stop.is_set():
            item = self._s_render.get()
            if item is None:
                if self._s_render.closed:
                    break
                continue
            try:
                self._composite_one(item)
            except Exception:  # noqa: BLE001 - one bad frame must not stop the mirror
                log.exception("composite failed on frame %d", item.frame.seq)

    def _composite_one(self, item: RenderedFrame) -> Frame:
        """Occlusion + composite + mirror flip; publishes the frame and records motion-to-photon."""
        frame, layer = item.frame, item.garment_layer
        t0 = time.monotonic()
        if layer is not None and not layer.empty:
            self.finish_layer(item)
            composite_inplace(frame.image, layer)
        if self.cfg.mirror_view:
            frame.image = cv2.flip(frame.image, 1)
        if item.hint:
            draw_hint(frame.image, item.hint)
        t_ready = time.monotonic()
        STAGE.labels("composite").observe(t_ready - t0)
        m2p = t_ready - frame.t_capture
        if self.breaker is not None:
            self.breaker.record(latency_ms=m2p * 1000.0)
        sku, colour = self.selection
        frame.meta.update({"t_composite_done": t_ready, "m2p_ms": m2p * 1000.0,
                           "tryon": {"sku": sku, "colour": colour, "rendered": layer is not None,
                                     **({"hint": item.hint} if item.hint else {})}})
        frame.meta.pop("pose_truth", None)
        M2P.observe(m2p)
        FRAMES.inc()
        self.m2p_ms.append(m2p * 1000.0)
        self._t_out.append(t_ready)
        self.frames_out += 1
        FPS.set(self.fps())
        self._update_analytics(frame, item.person, item.fit, item.garment, item.visit)
        self.actions.observe(item.person, frame.image.shape[1], self.cfg.mirror_view)
        with self._out_cv:
            self._out = frame
            self._out_cv.notify_all()
        return frame

    def finish_layer(self, item: RenderedFrame) -> None:
        """What the shopper sees of the rendered garment, in place: body parts in front cut it, the silhouette
        trims it, floating fragments are dropped ([tryon] occlusion, [tryon.fit] trim)."""
        layer, mask = item.garment_layer, item.person.mask
        if self.cfg.occlusion:
            apply_occlusion(layer, item.fit, item.intrinsics, item.garment.covers, mask)
        if self.cfg.fit.trim:
            trim_to_person(layer, mask, self.cfg.fit.trim_dilate_px)
            drop_fragments(layer, self.cfg.fit.fragment_min_fraction)

    def _update_analytics(self, frame: Frame, person: PersonPose | None, fit: BodyFit | None,
                          garment: Garment | None, visit: int = 0) -> None:
        """Size suggestion and try-on sessions, on the stream clock (media time for recorded media)."""
        if person is not None and person.track_id != self._sized_id:
            if self._sized_id is not None:  # someone else is dressed now: measured afresh, not mixed with the last
                self.shoulders.reset()
                self.size_suggestion = None
            self._sized_id = person.track_id
        if fit is not None:
            self.shoulders.add(fit.shoulder_width_m, facing=abs(fit.yaw_deg) < 20)
        sw = self.shoulders.value()
        if sw is not None and garment is not None:
            self.size_suggestion = suggest_size(garment.size_chart, sw, keep=self.size_suggestion)
        sku, colour = self.selection
        self.sessions.update(frame.t, person is not None, sku, colour, self.size_suggestion, t_wall=frame.t_wall,
                             clock=frame.clock, visit=visit)
        if person is None and self.sessions.current is None:  # the visit is over: the next shopper is measured
            self.shoulders.reset()  # afresh and never sees (or saves in a look) this one's size
            self.size_suggestion = None


TORSO = (11, 12, 23, 24)  # shoulders and hips: what the garment is fitted to


def torso_visibility(person: PersonPose) -> float:
    """The lowest visibility of the shoulders and hips (a garment on a half-seen torso is misfitted); a
    non-finite one counts as 0 (the breaker would take NaN for good: NaN < threshold is False)."""
    return _seen(np.min(person.landmarks[list(TORSO), 3]))


def _seen(v: float) -> float:
    """A confidence for the breaker: NaN/inf (a broken model output) is 0, not seen."""
    return float(v) if np.isfinite(v) else 0.0


def draw_hint(image: np.ndarray, text: str) -> None:
    """A dark banner with `text` across the bottom of the (displayed) frame, in place."""
    h, w = image.shape[:2]
    scale = max(0.5, w / 900)
    thick = max(1, int(round(scale * 2)))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
    y0 = h - th - base - int(24 * scale)
    band = image[y0:h]
    band[:] = (band.astype(np.uint16) * 2 // 5).astype(np.uint8)
    cv2.putText(image, text, ((w - tw) // 2, h - base - int(12 * scale)), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), thick, cv2.LINE_AA)


class _RenderState:
    """What the render thread owns: the GL renderer (thread-bound), its intrinsics, the fitter, the shown garment."""

    def __init__(self):
        self.renderer = self.intr = self.fitter = self.size = None
        self.silhouette: TorsoSilhouette | None = None
        self.silhouette_sku: str | None = None
        self.shown = (None, None)
        self.drawn = (None, None)  # the selection of the last garment drawn without error
        self.person_id: int | None = None  # pose track id of the person dressed last
        self.blamed = False  # a garment was left out as undrawable in this renderer

    def reset(self) -> None:
        """Forget the smoothing state (nobody dressed, or a new shopper): joints, outline and the scene light."""
        if self.fitter is not None:
            self.fitter.reset()
        if self.silhouette is not None:
            self.silhouette.reset()
        lighting = getattr(self.renderer, "lighting", None)
        if lighting is not None:
            lighting.reset()

    def close(self) -> None:
        if self.renderer is not None:
            self.renderer.close()
            self.renderer = None
