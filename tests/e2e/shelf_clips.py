"""Short shelf clips for the end-to-end facing runs: the procedural shelf of devtools.shelf_scenario (textured packs,
back panel, shelf edges, sensor noise) as an MJPG AVI, with chosen facings emptied at chosen media times."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from devtools import shelf_scenario as ss

FPS = 5.0


def write_clip(path: Path, seconds: float, empty_at: dict[str, float] | None = None, fps: float = FPS) -> Path:
    """`seconds` of the full shelf at `fps`; each facing of `empty_at` has no packs from that media time on."""
    scene = ss.ShelfScene([], seconds, [])  # no scripted visits: nobody in front
    rng = np.random.default_rng(7)
    noise = [rng.integers(0, 7, (ss.H, ss.W, 3), dtype=np.uint8) for _ in range(6)]
    empty_at = empty_at or {}
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (ss.W, ss.H))
    try:
        for i in range(int(round(seconds * fps))):
            t = i / fps
            counts = {fid: (0 if t >= empty_at.get(fid, math.inf) else 4, 0) for fid in ss.facing_ids()}
            vw.write(cv2.add(scene.shelf(counts), noise[i % len(noise)]))
    finally:
        vw.release()
    if not path.exists() or path.stat().st_size == 0:
        raise RuntimeError(f"OpenCV could not write {path} (no MJPG writer?)")
    return path


def facings_toml(table: str, ids: list[str], *, camera: str | None = None, persistence_s: float = 2.0) -> str:
    """A planogram TOML section under `table` (e.g. "analytics" or "cameras.analytics") for these facings of the
    scene, with short timers so a clip of seconds shows state changes."""
    lines = [f"[{table}.planogram]"]
    if camera is not None:
        lines.append(f'camera = "{camera}"')
    lines += [f"persistence_s = {persistence_s}", "stable_frames = 3", "clear_s = 0.6", "measure_every_s = 0.0",
              f"back_panel_region = {[list(p) for p in ss.PANEL_REGION]}", ""]
    for fid in ids:
        lines += [f"[[{table}.planogram.facings]]", f'id = "{fid}"', f'sku = "SKU-{fid}"',
                  f"polygon = {[list(p) for p in ss.facing_polygon(fid)]}", ""]
    return "\n".join(lines) + "\n"
