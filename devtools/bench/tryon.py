"""`edge bench tryon [--json PATH]`: render-only FPS (stock pyrender vs fast path), end-to-end mirror FPS and
motion-to-photon latency at 640x480 and 1280x720, and the fit quality on the package photos and motion clips.

Render-only: one renderer per config on this thread, the fitted garment moving through a pose cycle.
End-to-end: the threaded TryOnPipeline (capture -> pose -> fit+render -> occlusion+composite) fed by a paced
camera stand-in. e2e_fps_* / m2p_*: with a 30 FPS camera (the deployed rate; 30.0 = every camera frame is
shown); *_cam60_*: the same with a 60 FPS camera (spare capacity, includes the heavier capture load).
*_prev_*: the same runs with the previous fit (`[tryon.fit]` align_2d, silhouette and trim off), interleaved with
the current one in the same process (30 FPS camera: current, previous, previous, current, each pair averaged; then
60 FPS camera: previous, current), so load drifts hit both alike; *_ratio_*: current / previous.

*_flat_*: the flat material of earlier releases (`[tryon.render] materials` and `[tryon.lighting]` off; crop and
adaptive scale as configured), *_base_*: the renderer before issue 14 items 1/6 (flat, whole frame, fixed
render_scale); both interleaved with the current one (30 FPS camera: current, flat, previous fit, base, then the
reverse; pairs averaged); *_<variant>_ratio_*: current / variant (e2e_fps_flat_ratio_*: the fabric maps' and scene
lighting's cost).
render_scale_p50_*: median adaptive render scale during a run; material_level_mean_*: mean fabric map level (0 all
maps, 1 albedo only, 2 flat; the adaptive step below min_scale). Render-only fabric_* rows: the fabric maps on.

Fit quality (devtools.tryon_quality; `--quality-skus`, `--quality-frames`): each source is run frame by frame
through TryOnPipeline.run_sync (the deployed pose model, fit, render, occlusion, trim) and compared with the
person's segmentation mask of the FP32 landmark model (a second pose pipeline, the person best overlapping the
dressed one). Sources: the package photos as still cameras (with sensor noise, sigma 2 grey levels; anchor jitter
is measured there after a warm-up) and the motion clips of devtools.motion. Keys: fit_precision (worst source),
fit_coverage (worst source), fragments_max, fragments_raw_max, jitter_px_p95 (stills), step_ms_p50 (per-frame
cost without pose), each also per source and SKU under "quality", and with the previous fit as *_prev.
Quality runs at every size of `--sizes`: at sizes other than 640x480 the keys end in _720 (or _WxH) and the
table's keys in @720; their frames are the same 640x480 sources scaled to the height and padded at the sides
(a 16:9 frame with the same content; pixel distances scale with the height, x1.5 at 720p).
"""
from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    p.add_argument("--sizes", default="640x480,1280x720", help="comma-separated WxH list")
    p.add_argument("--sku", default="TEE-001", help="garment to render")
    p.add_argument("--render-frames", type=int, default=90, help="timed frames per fast render-only run")
    p.add_argument("--stock-frames", type=int, default=30, help="timed frames per stock render-only run")
    p.add_argument("--seconds", type=float, default=6.0, help="measured seconds per end-to-end run")
    p.add_argument("--pose", choices=["auto", "model", "synthetic"], default="auto",
                   help="pose stage: the pose model (edge.pose.pipeline) or the synthetic mannequin's truth")
    p.add_argument("--photo", default="astronaut", help="end-to-end source: a still photo of a person looped as a "
                   "camera (a package photo name such as 'astronaut' or a path; needs the pose model); "
                   "'' = the synthetic mannequin")
    p.add_argument("--config", default="", help="device TOML whose [models], [pose] and [tryon] the end-to-end "
                   "runs use (default: device_configs/tryon-mirror.toml when present, else built-in defaults)")
    p.add_argument("--quality-skus", default="TEE-001,JKT-002", help="garments whose fit quality is measured ('' = "
                   "skip the quality runs)")
    p.add_argument("--quality-photos", default="zidane,astronaut,grace_hopper", help="package photos (still camera)")
    p.add_argument("--quality-clips", default="bus_walk,astronaut_zoom,zidane_pan", help="devtools.motion clips")
    p.add_argument("--quality-frames", type=int, default=60, help="measured frames per photo (after 20 warm-up "
                   "frames) and per clip")
    p.add_argument("--no-prev", action="store_true", help="skip the previous-fit runs (side-by-side FPS, quality)")
    p.add_argument("--gesture-photo", default="zidane", help="source of the gestures on/off runs: a package photo "
                   "whose raised hand the hand models find and track ('' = --photo); zidane.jpg is framed per size "
                   "(GESTURE_VIEWS) so the pose model finds that man")
    p.add_argument("--no-gestures", action="store_true", help="skip the runs with hand gestures on ([tryon.gestures] "
                   "enabled: hands on the pose thread while the shopper is in the zone)")
    p.add_argument("--no-flat", action="store_true", help="skip the flat-material and base-renderer runs "
                   "(side-by-side FPS)")


class PhotoSource:
    """A still photo, cropped to WxH (covering it, `zoom` times closer, centred at `center_x` of its width),
    delivered as a paced camera stream."""

    def __init__(self, path: str, width: int, height: int, fps: float, zoom: float = 1.0, center_x: float = 0.5):
        import cv2  # noqa: PLC0415
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise SystemExit(f"cannot read photo {path}")
        s = zoom * max(width / img.shape[1], height / img.shape[0])
        img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)),
                         interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        y0 = (img.shape[0] - height) // 2
        x0 = min(max(0, round(center_x * img.shape[1] - width / 2)), img.shape[1] - width)
        self.image = img[y0:y0 + height, x0:x0 + width].copy()
        self.fps, self._stop = fps, False

    def stop(self) -> None:
        self._stop = True

    def __iter__(self):
        import time  # noqa: PLC0415

        from edge.core.frames import Frame  # noqa: PLC0415
        seq, t_next = 0, time.monotonic()
        while not self._stop:
            now = time.monotonic()
            if t_next > now:
                time.sleep(t_next - now)
            t_next = max(t_next + 1.0 / self.fps, time.monotonic() - 1.0 / self.fps)
            t = time.monotonic()
            yield Frame(image=self.image.copy(), seq=seq, t_capture=t, t_wall=time.time(), source="photo")
            seq += 1


def _device_config(path: str):
    """The mirror's EdgeConfig: --config, else the shipped tryon-mirror.toml, else defaults."""
    from pathlib import Path  # noqa: PLC0415

    from edge.app.config import load_config, parse_config  # noqa: PLC0415

    shipped = Path(__file__).resolve().parents[2] / "device_configs" / "tryon-mirror.toml"
    if path or shipped.is_file():
        return load_config(path or shipped)
    return parse_config({"device": {"id": "bench", "store": "bench", "kind": "tryon-mirror"}, "tryon": {"enabled": True}})


def _photo_path(photo: str) -> str:
    """A package photo name (see calibration.photos) or a file path."""
    from calibration.photos import BY_NAME, photo_path  # noqa: PLC0415

    return str(photo_path(photo)) if photo in BY_NAME else photo


def _pose_stage(kind: str, cfg):
    """(stage, description). 'auto' uses edge.pose.pipeline.PosePipeline when it can be built."""
    if kind in ("auto", "model"):
        try:
            from edge.pose.pipeline import PosePipeline  # noqa: PLC0415

            pipe = PosePipeline(cfg)
            desc = ", ".join(f"{s.info.backend}/{s.info.precision}/{s.info.threads}t" for s in pipe.sessions)
            return pipe, f"model (edge.pose.pipeline.PosePipeline: {desc})"
        except Exception as e:  # noqa: BLE001 - report and fall back
            if kind == "model":
                raise
            log.warning("pose model stage unavailable (%s: %s); using the synthetic mannequin's landmarks",
                        type(e).__name__, e)
            from devtools.mannequin import TruthPose  # noqa: PLC0415
            return TruthPose(), f"synthetic (PosePipeline unavailable: {type(e).__name__}: {e})"
    from devtools.mannequin import TruthPose  # noqa: PLC0415
    return TruthPose(), "synthetic"


def render_only(catalog, sku: str, w: int, h: int, fast: bool, frames: int, warmup: int = 8, materials: bool = False,
                crop: bool = False) -> dict:
    import time  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    from edge.tryon.fitting import BodyFitter  # noqa: PLC0415
    from edge.tryon.intrinsics import Intrinsics  # noqa: PLC0415
    from devtools.mannequin import MannequinSource  # noqa: PLC0415
    from edge.tryon.renderer import GarmentRenderer  # noqa: PLC0415

    intr = Intrinsics.from_hfov(w, h, 60.0)
    g = catalog.load(sku)
    src = MannequinSource(w, h, n_cycle=12, intr=intr, realtime=False)
    fits = [BodyFitter(intr, smoothing=None).fit(p.person_pose(), 0.0, g.ref) for p in src.cycle]
    r = GarmentRenderer(intr, msaa=0 if fast else 4, fixed_light_shaders=fast, materials=materials, crop=crop)
    try:
        r.set_garment(g)
        ts = []
        for i in range(warmup + frames):
            t0 = time.perf_counter()
            out = r.render(fits[i % len(fits)].poses)
            if i >= warmup:
                ts.append(time.perf_counter() - t0)
        from edge.tryon.gl import gl_renderer_string  # noqa: PLC0415
        gl = gl_renderer_string()
    finally:
        r.close()
    ms = 1000 * float(np.median(ts))
    return {"ms": round(ms, 2), "fps": round(1000 / ms, 1), "coverage": round(out.bbox[2] * out.bbox[3] / (w * h), 3),
            "gl_renderer": gl}


# zidane.jpg framed so the pose model finds the man raising his pointing hand as the shopper in the try-on zone
# (the BlazePose detector misses him in some framings): (zoom, centre x) per bench size
GESTURE_VIEWS = {(640, 480): (1.0, 0.5), (1280, 720): (1.33, 0.6)}


def end_to_end(catalog, pose, w: int, h: int, camera_fps: float, seconds: float, sku: str, photo: str = "",
               tcfg=None, models=None, view: tuple[float, float] = (1.0, 0.5)) -> dict:
    """One timed run of the mirror pipeline. With tcfg.gestures.enabled, `models` (the device's ModelsSection) opens
    the hand models as `edge run` does, and the result adds the hands' share of frames and their time."""
    import time  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    from prometheus_client import REGISTRY  # noqa: PLC0415

    from edge.tryon.config import TryOnConfig  # noqa: PLC0415
    from devtools.mannequin import MannequinSource  # noqa: PLC0415
    from edge.tryon.pipeline import TryOnPipeline  # noqa: PLC0415

    src = PhotoSource(photo, w, h, camera_fps, *view) if photo else MannequinSource(w, h, fps=camera_fps, n_cycle=24)
    tcfg = (tcfg or TryOnConfig()).model_copy(update={"default_sku": sku})
    pipe = TryOnPipeline(tcfg, src, pose, catalog=catalog)
    if tcfg.gestures.enabled:
        pipe.attach_gestures(models)
    pipe.start()
    try:
        if pipe.wait_frame(-1, timeout=60) is None:
            raise RuntimeError("the pipeline produced no frame")
        time.sleep(1.5)  # warm-up (shader compile, first uploads)
        pipe.m2p_ms.clear()
        g = pipe.gestures
        if g is not None:
            g.hands_ms.clear()
            g0 = (g.frames_seen, g.frames_run)
        n0, t0 = pipe.frames_out, time.monotonic()
        scales, levels, seen, every = [], [], [], []
        while time.monotonic() < t0 + seconds:
            time.sleep(0.1)
            if g is not None and g.last is not None:
                seen.append(bool(g.last.hands))
                every.append(g.every)
            scales.append(REGISTRY.get_sample_value("edge_tryon_render_scale"))
            levels.append(REGISTRY.get_sample_value("edge_tryon_material_level"))
        n1, t1 = pipe.frames_out, time.monotonic()
        m2p = np.asarray(pipe.m2p_ms)
        rendered = pipe.latest().meta.get("tryon", {}).get("rendered")
    finally:
        pipe.stop()
    scales = [v for v in scales if v is not None]
    levels = [v for v in levels if v is not None]
    hands = {}
    if g is not None:
        n_seen, ran = g.frames_seen - g0[0], g.frames_run - g0[1]
        ms = np.asarray(g.hands_ms) if g.hands_ms else np.zeros(1)
        hands = {"hands_run_share": round(min(1.0, ran / max(n_seen, 1)), 3),
                 "hands_seen_share": round(float(np.mean(seen)), 3) if seen else 0.0,
                 "hands_every_mean": round(float(np.mean(every)), 2) if every else None,
                 "hands_ms_p50": round(float(np.median(ms)), 1), "hands_ms_p95": round(float(np.percentile(ms, 95)), 1), "hands_reason": g.reason}
    return {**hands, "fps": round((n1 - n0) / (t1 - t0), 1), "m2p_p50_ms": round(float(np.percentile(m2p, 50)), 1),
            "m2p_p95_ms": round(float(np.percentile(m2p, 95)), 1), "frames": int(n1 - n0),
            "renderer": pipe.renderer_status, "garment_rendered": bool(rendered),
            "render_scale_p50": round(float(np.median(scales)), 2) if scales else None,
            "material_level_mean": round(float(np.mean(levels)), 2) if levels else None}


def _mean_runs(a: dict, b: dict) -> dict:
    """Two end-to-end runs of one configuration: FPS and latency percentiles averaged, frames summed."""
    out = {k: round((a[k] + b[k]) / 2, 1) for k in ("fps", "m2p_p50_ms", "m2p_p95_ms")}
    def avg(key):
        v = [x for x in (a.get(key), b.get(key)) if x is not None]
        return round(sum(v) / len(v), 2) if v else None
    return {**out, "frames": a["frames"] + b["frames"], "renderer": a["renderer"],
            "garment_rendered": a["garment_rendered"] and b["garment_rendered"],
            "render_scale_p50": avg("render_scale_p50"), "material_level_mean": avg("material_level_mean")}


def with_gestures(tcfg, on: bool = True):
    """The mirror's config with hand gestures on (or off); the shipped [tryon.gestures] otherwise."""
    return tcfg.model_copy(update={"gestures": tcfg.gestures.model_copy(update={"enabled": on})})


def previous_fit(tcfg):
    """The [tryon] config with the previous fit: world landmarks + translation, rigid garment, no trim."""
    return tcfg.model_copy(update={"fit": tcfg.fit.model_copy(update={"align_2d": False, "silhouette": False,
                                                                        "trim": False})})


def flat_material(tcfg):
    """The [tryon] config with the flat material of earlier releases: no fabric maps, the neutral light rig."""
    return tcfg.model_copy(update={"render": tcfg.render.model_copy(update={"materials": False}),
                                   "lighting": tcfg.lighting.model_copy(update={"enabled": False})})


def base_renderer(tcfg):
    """The renderer before issue 14 items 1/6: flat material, neutral rig, whole frame, fixed render_scale."""
    flat = flat_material(tcfg)
    return flat.model_copy(update={"render": flat.render.model_copy(update={"crop": False,
                                                                             "adaptive_scale": False})})


def size_tag(w: int, h: int) -> str:
    return {480: "640", 720: "720"}.get(h, f"{w}x{h}") if (w, h) in ((640, 480), (1280, 720)) else f"{w}x{h}"


def to_size(img, w: int, h: int):
    """A 640x480 source frame as a w x h camera frame: scaled to the height, sides padded (edge pixels), or
    centre-cropped if wider."""
    import cv2  # noqa: PLC0415
    if img.shape[:2] == (h, w):
        return img
    s = h / img.shape[0]
    out = cv2.resize(img, (round(img.shape[1] * s), h), interpolation=cv2.INTER_LINEAR if s > 1 else cv2.INTER_AREA)
    extra = w - out.shape[1]
    if extra >= 0:
        return cv2.copyMakeBorder(out, 0, 0, extra // 2, extra - extra // 2, cv2.BORDER_REPLICATE)
    x0 = -extra // 2
    return out[:, x0:x0 + w].copy()


def reference_pose(cfg):
    """Pose pipeline of the FP32 landmark model (segmentation on, up to 3 people): the reference person mask."""
    from edge.pose.pipeline import PosePipeline  # noqa: PLC0415

    models = cfg.models.model_copy(update={
        "pose_landmarks": cfg.models.pose_landmarks.model_copy(update={"precision": "fp32"}),
        "pose_detector": cfg.models.pose_detector.model_copy(update={"precision": "fp32"})})
    return PosePipeline((cfg.pose.model_copy(update={"segmentation": True, "max_people": 3}), models))


def quality_frames(kind: str, name: str, n: int, warmup: int = 20, noise: float = 2.0, seed: int = 0,
                   size: tuple[int, int] = (640, 480)):
    """(frames, measured-from index): a package photo as a still camera with sensor noise, or a motion clip, as
    `size` (W, H) frames (see to_size)."""
    import numpy as np  # noqa: PLC0415

    if kind == "clip":
        from devtools.motion import SEQUENCES  # noqa: PLC0415
        return [to_size(f, *size) for f in SEQUENCES[name](n)], 0
    img = to_size(PhotoSource(_photo_path(name), 640, 480, 30.0).image, *size)
    rng = np.random.default_rng(seed)
    return [np.clip(img + rng.normal(0.0, noise, img.shape), 0, 255).astype(np.uint8)
            for _ in range(warmup + n)], warmup


def _best_overlap(people, mask):
    """The reference person whose mask overlaps `mask` most (None if none)."""
    if not people or mask is None:
        return None
    on = mask > 0.5
    return max(people, key=lambda q: 0 if q.mask is None else int((on & (q.mask > 0.5)).sum()))


def quality_source(tcfg, catalog, pose, ref_pose, frames, start: int, still: bool) -> dict:
    """Fit quality of one source through TryOnPipeline.run_sync (see devtools.tryon_quality)."""
    import time  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    from devtools import tryon_quality as Q  # noqa: PLC0415
    from edge.core.frames import Frame  # noqa: PLC0415
    from edge.tryon.pipeline import TryOnPipeline  # noqa: PLC0415

    pipe = TryOnPipeline(tcfg, [], pose, catalog=catalog)
    prec, cov, frag, raw, tracks, dressed, measured, worst = [0, 0], [0, 0], 0, 0, [], 0, 0, 1.0
    steps: list[float] = []  # ms per dressed frame of fit + render + occlusion/trim + composite (pose excluded)
    groups = None
    if hasattr(pose, "reset"):
        pose.reset()
    ref_pose.reset()
    try:
        for i, img in enumerate(frames):
            now = time.monotonic()
            fr = Frame(image=img.copy(), seq=i, t_capture=now, t_wall=time.time(), source="bench", t_media=i / 30.0)
            ref = ref_pose.process(Frame(image=img.copy(), seq=i, t_capture=now, t_wall=time.time(), source="bench",
                                         t_media=i / 30.0))
            result = pipe.pose.process(fr)
            t0 = time.perf_counter()
            item = pipe.run_sync(fr, result)
            step = (time.perf_counter() - t0) * 1000.0
            if i < start:
                continue
            measured += 1
            layer = item.garment_layer
            if layer is None or layer.empty or item.fit is None:
                continue
            dressed += 1
            steps.append(step)
            person = _best_overlap(ref.people, item.person.mask)
            alpha = Q.layer_to_frame(layer)
            if person is not None and person.mask is not None:
                on, tot = Q.precision_counts(alpha, person.mask)
                prec[0] += on
                prec[1] += tot
                worst = min(worst, on / tot if tot else 1.0)
                if "torso" in item.garment.anchors:
                    c, t = Q.coverage_counts(alpha, Q.torso_region(person.landmarks, person.mask))
                    cov[0] += c
                    cov[1] += t
            if groups is None:
                groups = Q.piece_groups(item.garment)
            ids = pipe.sync_renderer.piece_ids(item.fit.poses)
            for f, r in Q.piece_fragments(alpha, Q.layer_to_frame(layer, "cut"), ids, groups).values():
                frag, raw = max(frag, f), max(raw, r)
            if still:
                tracks.append(Q.anchor_points(item.fit.poses, item.intrinsics, item.garment.anchors,
                                              item.fit.visibility))
    finally:
        pipe.close_sync()
    jit, jit_all = Q.jitter_px(tracks), Q.jitter_px(tracks, seen_only=False)
    res = {"frames": measured, "dressed": dressed, "fit_precision": _r(Q.ratio(*prec)),
           "fit_precision_frame_min": round(worst, 4), "fit_coverage": _r(Q.ratio(*cov)),
           "fragments_max": frag, "fragments_raw_max": raw,
           "step_ms_p50": _r(np.percentile(steps, 50) if steps else None, 2),
           "step_ms_p95": _r(np.percentile(steps, 95) if steps else None, 2)}
    if still:
        res.update({"jitter_px_p50": _r(np.percentile(jit, 50) if len(jit) else None, 3),
                    "jitter_px_p95": _r(np.percentile(jit, 95) if len(jit) else None, 3),
                    "jitter_px_max": _r(jit.max() if len(jit) else None, 3),
                    "jitter_px_p95_all": _r(np.percentile(jit_all, 95) if len(jit_all) else None, 3)})
    return res


def _r(v, nd: int = 4):
    return None if v is None else round(float(v), nd)


def quality(cfg, catalog, pose, skus, photos, clips, n: int, with_prev: bool, size: tuple[int, int] = (640, 480)
            ) -> dict:
    """Fit quality keys (worst over sources and SKUs) and the per-source table, for the current and previous fit;
    step_ms_p50: median over sources of the per-frame cost of fit + render + occlusion/trim + composite on one
    thread (pose excluded), the two fits interleaved source by source. At a size other than 640x480 the keys
    end in _<tag> and the table keys in @<tag>."""
    import numpy as np  # noqa: PLC0415

    ref_pose = reference_pose(cfg)
    sources = [("photo", p) for p in photos] + [("clip", c) for c in clips]
    variants = [("", cfg.tryon)] + ([("_prev", previous_fit(cfg.tryon))] if with_prev else [])
    tag = size_tag(*size)
    at = "" if tag == "640" else f"@{tag}"
    table: dict = {}
    keys: dict = {}
    rows_of: dict[str, list] = {suffix: [] for suffix, _ in variants}
    for kind, name in sources:
        frames, start = quality_frames(kind, name, n, size=size)
        for sku in skus:
            for suffix, tcfg in variants:
                q = quality_source(tcfg.model_copy(update={"default_sku": sku}), catalog, pose, ref_pose, frames,
                                   start, still=kind == "photo")
                table[f"{kind}:{name}/{sku}{suffix}{at}"] = q
                rows_of[suffix].append(q)
                log.info("quality %s:%s %s%s%s: %s", kind, name, sku, suffix, at, q)
    for suffix, rows in rows_of.items():
        vals = lambda key: [q[key] for q in rows if q.get(key) is not None]  # noqa: E731
        k = suffix + ("" if tag == "640" else f"_{tag}")
        keys.update({f"fit_precision{k}": min(vals("fit_precision"), default=None),
                     f"fit_coverage{k}": min(vals("fit_coverage"), default=None),
                     f"fragments_max{k}": max(vals("fragments_max"), default=None),
                     f"fragments_raw_max{k}": max(vals("fragments_raw_max"), default=None),
                     f"jitter_px_p95{k}": max(vals("jitter_px_p95"), default=None),
                     f"jitter_px_p95_all{k}": max(vals("jitter_px_p95_all"), default=None),
                     f"step_ms_p50{k}": _r(np.median(vals("step_ms_p50")), 2),
                     f"dressed_fraction{k}": _r(sum(q["dressed"] for q in rows) / max(1, sum(q["frames"]
                                                                                           for q in rows)))})
    ref_pose.close()
    return {**keys, "quality": table}


def run(args) -> int:
    import json  # noqa: PLC0415
    import os  # noqa: PLC0415
    import platform  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    from edge.tryon.garments import Catalog  # noqa: PLC0415
    from edge.tryon.gl import RendererUnavailable  # noqa: PLC0415

    cfg = _device_config(args.config)
    catalog = Catalog()
    photo = _photo_path(args.photo) if args.photo else ""
    pose, pose_desc = _pose_stage("model" if photo and args.pose == "auto" else args.pose, cfg)
    res: dict = {"pose_stage": pose_desc, "source": args.photo or "synthetic mannequin", "sku": args.sku,
                 "config": args.config or "device_configs/tryon-mirror.toml",
                 "cpu_count": os.cpu_count(),
                 "loadavg_start": round(os.getloadavg()[0], 2), "python": platform.python_version()}
    prev, flat, base = previous_fit(cfg.tryon), flat_material(cfg.tryon), base_renderer(cfg.tryon)
    gest_on, gest_off = with_gestures(cfg.tryon, True), with_gestures(cfg.tryon, False)
    gest_photo = _photo_path(args.gesture_photo) if args.gesture_photo else photo
    res.update({"gestures_shipped": cfg.tryon.gestures.enabled, "gesture_source": args.gesture_photo or res["source"]})
    sizes = [tuple(int(v) for v in z.lower().split("x")) for z in args.sizes.split(",") if z]
    try:
        for w, h in sizes:
            size, tag = f"{w}x{h}", size_tag(w, h)
            stock = render_only(catalog, args.sku, w, h, fast=False, frames=args.stock_frames)
            fast = render_only(catalog, args.sku, w, h, fast=True, frames=args.render_frames)
            fabric = render_only(catalog, args.sku, w, h, fast=True, frames=args.render_frames, materials=True)
            fabric_crop = render_only(catalog, args.sku, w, h, fast=True, frames=args.render_frames, materials=True,
                                      crop=True)
            log.info("%s render-only: stock %.1f fps, fast %.1f fps, fabric %.1f fps, fabric + crop %.1f fps", size,
                     stock["fps"], fast["fps"], fabric["fps"], fabric_crop["fps"])
            res.update({f"render_fps_fabric_{tag}": fabric["fps"], f"render_ms_fabric_{tag}": fabric["ms"],
                        f"render_fps_fabric_crop_{tag}": fabric_crop["fps"],
                        f"render_ms_fabric_crop_{tag}": fabric_crop["ms"]})
            load0 = os.getloadavg()[0]
            g_view = GESTURE_VIEWS.get((w, h), (1.0, 0.5)) if args.gesture_photo == "zidane" else (1.0, 0.5)
            e2e = lambda fps, tc, src=photo, view=(1.0, 0.5): end_to_end(  # noqa: E731
                catalog, pose, w, h, fps, args.seconds, args.sku, src, tc, cfg.models, view)
            # 30 FPS camera, interleaved A G g F P B B P F g G A (skipped variants drop out): load drifts hit all
            # alike. G / g: gestures on / off, on a photo whose hands the hand models find (they track them)
            gest = [] if args.no_gestures else [("gest", gest_on), ("nogest", gest_off)]
            order = [("cur", cfg.tryon)] + gest + ([] if args.no_flat else [("flat", flat)]) + \
                ([] if args.no_prev else [("prev", prev)]) + ([] if args.no_flat else [("base", base)])
            runs: dict[str, list] = {k: [] for k, _ in order}
            for k, tc in order + order[::-1]:
                runs[k].append(e2e(30.0, tc, gest_photo, g_view) if k in ("gest", "nogest") else e2e(30.0, tc))
            lat = _mean_runs(*runs["cur"])
            thr_p = None if args.no_prev else e2e(60.0, prev)
            thr = e2e(60.0, cfg.tryon)
            thr_g = None if args.no_gestures else [e2e(60.0, c, gest_photo, g_view) for c in (gest_on, gest_off)]
            log.info("%s end-to-end (30 fps camera): %.1f fps, m2p p50 %.1f / p95 %.1f ms, render scale %s; capacity "
                     "(60 fps camera) %.1f fps", size, lat["fps"], lat["m2p_p50_ms"], lat["m2p_p95_ms"],
                     lat["render_scale_p50"], thr["fps"])
            res.update({f"render_fps_stock_{tag}": stock["fps"], f"render_fps_fast_{tag}": fast["fps"],
                        f"render_ms_stock_{tag}": stock["ms"], f"render_ms_fast_{tag}": fast["ms"],
                        f"e2e_fps_{tag}": lat["fps"], f"m2p_p50_ms_{tag}": lat["m2p_p50_ms"],
                        f"m2p_p95_ms_{tag}": lat["m2p_p95_ms"], f"e2e_fps_cam60_{tag}": thr["fps"],
                        f"m2p_p50_ms_cam60_{tag}": thr["m2p_p50_ms"], f"m2p_p95_ms_cam60_{tag}": thr["m2p_p95_ms"],
                        f"render_scale_p50_{tag}": lat["render_scale_p50"],
                        f"material_level_mean_{tag}": lat["material_level_mean"],
                        f"garment_coverage_{tag}": fast["coverage"], "gl_renderer": fast["gl_renderer"],
                        f"garment_rendered_{tag}": thr["garment_rendered"] and lat["garment_rendered"],
                        f"loadavg_e2e_{tag}": round((load0 + os.getloadavg()[0]) / 2, 2)})
            for k in ("flat", "base"):
                if k in runs:
                    v = _mean_runs(*runs[k])
                    log.info("%s %s: %.1f fps (30 fps camera), m2p p95 %.1f ms, render scale %s, map level %s", size,
                             k, v["fps"], v["m2p_p95_ms"], v["render_scale_p50"], v["material_level_mean"])
                    res.update({f"e2e_fps_{k}_{tag}": v["fps"], f"m2p_p50_ms_{k}_{tag}": v["m2p_p50_ms"],
                                f"m2p_p95_ms_{k}_{tag}": v["m2p_p95_ms"],
                                f"render_scale_p50_{k}_{tag}": v["render_scale_p50"],
                                f"material_level_mean_{k}_{tag}": v["material_level_mean"],
                                f"e2e_fps_{k}_ratio_{tag}": round(lat["fps"] / max(v["fps"], 1e-9), 3)})
            if not args.no_gestures:
                on, off, hands_run = _mean_runs(*runs["gest"]), _mean_runs(*runs["nogest"]), runs["gest"]
                hands = {k: round(float(np.mean(v)), 3) if (v := [r[k] for r in hands_run if r.get(k) is not None])
                         else None for k in ("hands_run_share", "hands_seen_share", "hands_ms_p50", "hands_ms_p95",
                                             "hands_every_mean")}
                log.info("%s gestures on: %.1f fps, m2p p95 %.1f ms (off: %.1f fps, %.1f ms); hands ran on %.0f %% of "
                         "pose frames (every %s; a hand found in %.0f %%), %.1f ms p50 / %.1f ms p95 (%s); capacity %.1f vs "
                         "%.1f fps", size, on["fps"], on["m2p_p95_ms"], off["fps"], off["m2p_p95_ms"],
                         100 * hands["hands_run_share"], hands["hands_every_mean"],
                         100 * hands["hands_seen_share"], hands["hands_ms_p50"], hands["hands_ms_p95"],
                         hands_run[-1]["hands_reason"], thr_g[0]["fps"], thr_g[1]["fps"])
                res.update({f"e2e_fps_gestures_{tag}": on["fps"], f"m2p_p50_ms_gestures_{tag}": on["m2p_p50_ms"],
                            f"m2p_p95_ms_gestures_{tag}": on["m2p_p95_ms"], f"e2e_fps_no_gestures_{tag}": off["fps"],
                            f"m2p_p95_ms_no_gestures_{tag}": off["m2p_p95_ms"],
                            f"e2e_fps_gestures_ratio_{tag}": round(on["fps"] / max(off["fps"], 1e-9), 3),
                            f"e2e_fps_cam60_gestures_{tag}": thr_g[0]["fps"],
                            f"e2e_fps_cam60_no_gestures_{tag}": thr_g[1]["fps"],
                            f"e2e_fps_cam60_gestures_ratio_{tag}": round(thr_g[0]["fps"] / max(thr_g[1]["fps"], 1e-9),
                                                                         3),
                            **{f"{k}_{tag}": v for k, v in hands.items()}})
            if "prev" in runs:
                lat_p = _mean_runs(*runs["prev"])
                log.info("%s previous fit: %.1f fps (30 fps camera), %.1f fps (60 fps camera)", size, lat_p["fps"],
                         thr_p["fps"])
                res.update({f"e2e_fps_prev_{tag}": lat_p["fps"], f"m2p_p50_ms_prev_{tag}": lat_p["m2p_p50_ms"],
                            f"m2p_p95_ms_prev_{tag}": lat_p["m2p_p95_ms"], f"e2e_fps_cam60_prev_{tag}": thr_p["fps"],
                            f"m2p_p95_ms_cam60_prev_{tag}": thr_p["m2p_p95_ms"],
                            f"e2e_fps_ratio_{tag}": round(lat["fps"] / max(lat_p["fps"], 1e-9), 3),
                            f"e2e_fps_cam60_ratio_{tag}": round(thr["fps"] / max(thr_p["fps"], 1e-9), 3)})
        skus = [s for s in args.quality_skus.split(",") if s]
        if skus:
            if not pose_desc.startswith("model"):
                log.warning("fit quality needs the pose model (segmentation): skipped")
            else:
                table: dict = {}
                for w, h in sizes:  # the quality keys at every size (640x480: unsuffixed)
                    q = quality(cfg, catalog, pose, skus, [p for p in args.quality_photos.split(",") if p],
                                [c for c in args.quality_clips.split(",") if c], args.quality_frames,
                                not args.no_prev, size=(w, h))
                    table.update(q.pop("quality"))
                    res.update(q)
                res["quality"] = table
    except RendererUnavailable as e:
        log.error("%s", e)
        return 2
    res["loadavg_end"] = round(os.getloadavg()[0], 2)
    text = json.dumps(res, indent=1)
    print(text)  # noqa: T201 - the command's output
    if getattr(args, "json", None):
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0
