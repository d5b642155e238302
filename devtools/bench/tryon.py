"""`edge bench tryon [--json PATH]`: render-only FPS (stock pyrender vs fast path) and end-to-end mirror FPS and
motion-to-photon latency at 640x480 and 1280x720.

Render-only: one renderer per config on this thread, the fitted garment moving through a pose cycle.
End-to-end: the threaded TryOnPipeline (capture -> pose -> fit+render -> occlusion+composite) fed by a paced
camera stand-in. e2e_fps_* / m2p_*: with a 30 FPS camera (the deployed rate; 30.0 = every camera frame is
shown); *_cam60_*: the same with a 60 FPS camera (spare capacity, includes the heavier capture load).
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


class PhotoSource:
    """A still photo, centre-cropped to WxH, delivered as a paced camera stream."""

    def __init__(self, path: str, width: int, height: int, fps: float):
        import cv2  # noqa: PLC0415
        img = cv2.imread(path, cv2.IMREAD_COLOR)
        if img is None:
            raise SystemExit(f"cannot read photo {path}")
        s = max(width / img.shape[1], height / img.shape[0])
        img = cv2.resize(img, (round(img.shape[1] * s), round(img.shape[0] * s)), interpolation=cv2.INTER_AREA)
        y0, x0 = (img.shape[0] - height) // 2, (img.shape[1] - width) // 2
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


def render_only(catalog, sku: str, w: int, h: int, fast: bool, frames: int, warmup: int = 8) -> dict:
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
    r = GarmentRenderer(intr, msaa=0 if fast else 4, fixed_light_shaders=fast)
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


def end_to_end(catalog, pose, w: int, h: int, camera_fps: float, seconds: float, sku: str, photo: str = "",
               tcfg=None) -> dict:
    import time  # noqa: PLC0415

    import numpy as np  # noqa: PLC0415

    from edge.tryon.config import TryOnConfig  # noqa: PLC0415
    from devtools.mannequin import MannequinSource  # noqa: PLC0415
    from edge.tryon.pipeline import TryOnPipeline  # noqa: PLC0415

    src = PhotoSource(photo, w, h, camera_fps) if photo else MannequinSource(w, h, fps=camera_fps, n_cycle=24)
    tcfg = (tcfg or TryOnConfig()).model_copy(update={"default_sku": sku})
    pipe = TryOnPipeline(tcfg, src, pose, catalog=catalog).start()
    try:
        if pipe.wait_frame(-1, timeout=60) is None:
            raise RuntimeError("the pipeline produced no frame")
        time.sleep(1.5)  # warm-up (shader compile, first uploads)
        pipe.m2p_ms.clear()
        n0, t0 = pipe.frames_out, time.monotonic()
        time.sleep(seconds)
        n1, t1 = pipe.frames_out, time.monotonic()
        m2p = np.asarray(pipe.m2p_ms)
        rendered = pipe.latest().meta.get("tryon", {}).get("rendered")
    finally:
        pipe.stop()
    return {"fps": round((n1 - n0) / (t1 - t0), 1), "m2p_p50_ms": round(float(np.percentile(m2p, 50)), 1),
            "m2p_p95_ms": round(float(np.percentile(m2p, 95)), 1), "frames": int(n1 - n0),
            "renderer": pipe.renderer_status, "garment_rendered": bool(rendered)}


def run(args) -> int:
    import json  # noqa: PLC0415
    import os  # noqa: PLC0415
    import platform  # noqa: PLC0415

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
    try:
        for size in args.sizes.split(","):
            w, h = (int(v) for v in size.lower().split("x"))
            tag = {480: "640", 720: "720"}.get(h, f"{w}x{h}")
            stock = render_only(catalog, args.sku, w, h, fast=False, frames=args.stock_frames)
            fast = render_only(catalog, args.sku, w, h, fast=True, frames=args.render_frames)
            log.info("%s render-only: stock %.1f fps, fast %.1f fps", size, stock["fps"], fast["fps"])
            lat = end_to_end(catalog, pose, w, h, 30.0, args.seconds, args.sku, photo, cfg.tryon)
            thr = end_to_end(catalog, pose, w, h, 60.0, args.seconds, args.sku, photo, cfg.tryon)
            log.info("%s end-to-end (30 fps camera): %.1f fps, m2p p50 %.1f / p95 %.1f ms; capacity (60 fps camera) "
                     "%.1f fps", size, lat["fps"], lat["m2p_p50_ms"], lat["m2p_p95_ms"], thr["fps"])
            res.update({f"render_fps_stock_{tag}": stock["fps"], f"render_fps_fast_{tag}": fast["fps"],
                        f"render_ms_stock_{tag}": stock["ms"], f"render_ms_fast_{tag}": fast["ms"],
                        f"e2e_fps_{tag}": lat["fps"], f"m2p_p50_ms_{tag}": lat["m2p_p50_ms"],
                        f"m2p_p95_ms_{tag}": lat["m2p_p95_ms"], f"e2e_fps_cam60_{tag}": thr["fps"],
                        f"m2p_p50_ms_cam60_{tag}": thr["m2p_p50_ms"], f"m2p_p95_ms_cam60_{tag}": thr["m2p_p95_ms"],
                        f"garment_coverage_{tag}": fast["coverage"], "gl_renderer": fast["gl_renderer"],
                        f"garment_rendered_{tag}": thr["garment_rendered"] and lat["garment_rendered"]})
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
