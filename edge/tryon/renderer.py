"""Garment renderer: one reused pyrender OffscreenRenderer (EGL) with a fixed light rig; RGBA + depth.

GL contexts are bound to the creating thread: create, use and close a GarmentRenderer on ONE thread
(the pipeline's render thread). Per frame only node poses (and colour factors) change.
Fast path (default): MSAA off + fixed light-loop shaders (edge/tryon/shaders.py). Stock: 4x MSAA, stock shaders.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from edge.core.paths import cache_dir
from edge.tryon.garments import Colour, Garment
from edge.tryon.gl import load_pyrender, make_offscreen_renderer
from edge.tryon.intrinsics import Intrinsics
from edge.tryon.meshes import vertex_shade
from edge.tryon.shaders import RIG, fixed_light_shader_dir
from edge.tryon.silhouette import deform

log = logging.getLogger(__name__)

# light rig (camera space: x right, y up, the camera looks down -z). Swatch colours are sRGB; with these values a
# surface facing the camera at ~2 m is lit to about 1.0 (it shows the swatch colour), the sides fall to ~0.3-0.45.
AMBIENT = 0.10
KEY_INTENSITY = 3.2  # directional; /pi in the BRDF
KEY_ELEVATION_DEG = 40.0  # from above
KEY_AZIMUTH_DEG = 30.0  # from the camera's right (the wearer's left in the mirrored view)
FILL_POSITION = (-1.0, 0.35, 0.5)  # point light left of the camera (metres)
FILL_INTENSITY = 5.0
TORSO_SCALE_STEP = 0.004  # silhouette factors re-uploaded when one changes by this much (~0.5 px on a torso)


@dataclass
class RenderOutput:
    """Render cropped to the garment's bounding box (frame pixel coordinates).

    rgba: premultiplied RGBA uint8 (RGB order), contiguous and writable (occlusion edits it in place);
    depth: float32 metres along the view axis, 0 where empty.
    """

    rgba: np.ndarray
    depth: np.ndarray
    bbox: tuple[int, int, int, int]  # x, y, w, h
    frame_size: tuple[int, int]  # (h, w)
    render_ms: float = 0.0
    cut: np.ndarray | None = None  # bool (h, w) of the bbox: garment pixels removed by body parts in front

    @property
    def empty(self) -> bool:
        return self.bbox[2] == 0 or self.bbox[3] == 0


def set_msaa(r, samples: int) -> None:
    """Reallocate pyrender's (hard-coded 4x) multisample attachments with `samples` (pyrender==0.1.45 internals)."""
    from OpenGL.GL import (GL_DEPTH_COMPONENT24, GL_RENDERBUFFER, GL_RGBA,  # noqa: PLC0415
                           glBindRenderbuffer, glRenderbufferStorageMultisample)
    rr = r._renderer
    orig = rr._configure_main_framebuffer

    def configure():
        fresh = rr._main_fb is None
        orig()
        if fresh:
            glBindRenderbuffer(GL_RENDERBUFFER, rr._main_cb_ms)
            glRenderbufferStorageMultisample(GL_RENDERBUFFER, samples, GL_RGBA, rr.viewport_width,
                                             rr.viewport_height)
            glBindRenderbuffer(GL_RENDERBUFFER, rr._main_db_ms)
            glRenderbufferStorageMultisample(GL_RENDERBUFFER, samples, GL_DEPTH_COMPONENT24, rr.viewport_width,
                                             rr.viewport_height)
    rr._configure_main_framebuffer = configure


class GarmentRenderer:
    """Offscreen garment renderer for a fixed camera (intrinsics) and frame size."""

    def __init__(self, intr: Intrinsics, msaa: int = 0, fixed_light_shaders: bool = True,
                 shader_cache_dir: str | Path = "", render_scale: float = 1.0, znear: float = 0.05,
                 zfar: float = 20.0):
        self.pyrender = pr = load_pyrender()
        self.intr = intr
        self.frame_size = (intr.height, intr.width)
        rw, rh = max(16, round(intr.width * render_scale)), max(16, round(intr.height * render_scale))
        self.rintr = intr.scaled(rw, rh)
        self.scene = pr.Scene(bg_color=[0.0, 0.0, 0.0, 0.0], ambient_light=[AMBIENT] * 3)
        cam = pr.IntrinsicsCamera(self.rintr.fx, self.rintr.fy, self.rintr.cx, self.rintr.cy, znear=znear, zfar=zfar)
        self.scene.add(cam, pose=np.eye(4))  # camera at the origin looking down -z (OpenGL)
        # the fixed rig: exactly RIG lights (the fast shaders hard-code these counts). A soft key from the front,
        # above and to one side models the cloth (folds, shoulder and side fall-off); a weak warm fill from the
        # other side keeps the shadow side readable; little ambient so the inside of the fabric reads dark.
        key = np.eye(4)
        key[:3, :3] = _rot_y(KEY_AZIMUTH_DEG) @ _rot_x(-KEY_ELEVATION_DEG)
        self.scene.add(pr.DirectionalLight(color=[1.0, 0.99, 0.97], intensity=KEY_INTENSITY), pose=key)
        fill = np.eye(4)
        fill[:3, 3] = FILL_POSITION
        self.scene.add(pr.PointLight(color=[1.0, 0.95, 0.88], intensity=FILL_INTENSITY), pose=fill)
        assert RIG == {"directional": 1, "point": 1, "spot": 0}
        self.r = make_offscreen_renderer(rw, rh)
        self.fast_shaders = fixed_light_shaders
        if fixed_light_shaders:
            sdir = fixed_light_shader_dir(shader_cache_dir or cache_dir() / "tryon" / "shaders")
            self.r._renderer._program_cache = pr.shader_program.ShaderProgramCache(shader_dir=str(sdir))
        self.msaa = msaa
        if msaa != 4:
            set_msaa(self.r, msaa)
        self._nodes: list[tuple[object, str]] = []  # (node, anchor)
        self._tint_materials: list = []
        self._deformable: list[tuple[object, np.ndarray, np.ndarray, np.ndarray]] = []  # torso primitives
        self._torso_scale: np.ndarray | None = None  # the factors the uploaded torso vertices carry
        self.garment: Garment | None = None
        self.colour: Colour | None = None
        log.info("garment renderer %dx%d (render %dx%d) msaa=%d fixed_light_shaders=%s", intr.width, intr.height,
                 rw, rh, msaa, fixed_light_shaders)

    def set_garment(self, garment: Garment, colour: Colour | None = None) -> None:
        """Replace the garment's meshes in the scene (uploads happen on the next render)."""
        pr = self.pyrender
        for node, _ in self._nodes:
            self.scene.remove_node(node)
        self._nodes, self._tint_materials, self._deformable, self._torso_scale = [], [], [], None
        for part in garment.parts:
            mat = pr.MetallicRoughnessMaterial(
                baseColorFactor=list(part.base_color), metallicFactor=part.metallic, roughnessFactor=part.roughness,
                baseColorTexture=part.texture, doubleSided=True, alphaMode="OPAQUE")
            mesh = pr.Mesh.from_trimesh(part.mesh, material=mat, smooth=True)
            shade = vertex_shade(part.mesh)  # baked cavity / inside-of-fabric shade; alpha 0 = holdout
            if shade is not None:
                for prim in mesh.primitives:
                    prim.color_0 = shade
            node = self.scene.add(mesh, name=part.name, pose=np.eye(4))
            self._nodes.append((node, part.anchor))
            if part.anchor == "torso":  # the silhouette fit scales these per level (deform)
                for prim in mesh.primitives:
                    rest = [a for a in (prim.tangents, prim.texcoord_0, prim.texcoord_1, prim.color_0) if a is not None]
                    self._deformable.append((prim, np.asarray(prim.positions, np.float32).copy(),
                                             np.asarray(prim.normals, np.float32).copy(),
                                             np.hstack(rest).astype(np.float32) if rest else None))
            if part.tint:  # from_trimesh deep-copies the material: recolour the primitives' own copies
                self._tint_materials.extend(prim.material for prim in mesh.primitives)
        self.garment = garment
        self.set_colour(colour or garment.colour())

    def set_colour(self, colour: Colour | None) -> None:
        self.colour = colour
        if colour is not None:
            for m in self._tint_materials:
                m.baseColorFactor = srgb_to_linear(colour.rgba)

    def set_torso_scale(self, scale: np.ndarray | None) -> None:
        """Deform the torso parts by per-level lateral factors (silhouette.TorsoSilhouette.update; None = as
        modelled) for the next renders: re-uploads their vertices and normals (on the render thread)."""
        if scale is None and self._torso_scale is None:
            return
        if (scale is not None and self._torso_scale is not None
                and float(np.abs(scale - self._torso_scale).max()) < TORSO_SCALE_STEP):
            return  # a still shopper: no re-upload for sub-pixel changes
        from OpenGL.GL import GL_ARRAY_BUFFER, glBindBuffer, glBufferSubData  # noqa: PLC0415
        current = False
        for prim, pos, nrm, rest in self._deformable:
            p, n = (pos, nrm) if scale is None else deform(pos, nrm, scale)
            prim.positions, prim.normals = p, n  # used when the primitive is (re)uploaded
            if prim._vaid is None or not prim._buffers:  # not uploaded yet (pyrender==0.1.45 internals)
                continue
            if not current:
                self.r._platform.make_current()
                current = True
            data = np.ascontiguousarray(np.hstack([p, n] + ([rest] if rest is not None else [])), np.float32)
            glBindBuffer(GL_ARRAY_BUFFER, prim._buffers[0])
            glBufferSubData(GL_ARRAY_BUFFER, 0, data.nbytes, data)
        self._torso_scale = None if scale is None else np.array(scale, copy=True)

    def render(self, poses: dict[str, np.ndarray]) -> RenderOutput:
        """Render the garment with each part at its anchor pose (parts whose anchor is missing are hidden)."""
        import time  # noqa: PLC0415
        t0 = time.perf_counter()
        any_visible = False
        for node, anchor in self._nodes:
            pose = poses.get(anchor)
            node.mesh.is_visible = pose is not None
            if pose is not None:
                self.scene.set_pose(node, pose)
                any_visible = True
        h, w = self.frame_size
        if not any_visible:
            return RenderOutput(np.zeros((0, 0, 4), np.uint8), np.zeros((0, 0), np.float32), (0, 0, 0, 0), (h, w))
        color, depth = self.r.render(self.scene, flags=self.pyrender.RenderFlags.RGBA)
        if (color.shape[0], color.shape[1]) != (h, w):  # render_scale < 1
            color = cv2.resize(np.ascontiguousarray(color), (w, h), interpolation=cv2.INTER_LINEAR)
            depth = cv2.resize(np.ascontiguousarray(depth), (w, h), interpolation=cv2.INTER_NEAREST)
        alpha = np.ascontiguousarray(color[..., 3])
        x, y, bw, bh = cv2.boundingRect(alpha)
        rgba = np.ascontiguousarray(color[y:y + bh, x:x + bw])
        d = np.ascontiguousarray(depth[y:y + bh, x:x + bw])
        d[rgba[..., 3] == 0] = 0.0  # holdouts (the neck inside the collar) write depth but no colour
        return RenderOutput(rgba, d, (x, y, bw, bh), (h, w), (time.perf_counter() - t0) * 1000)

    def piece_ids(self, poses: dict[str, np.ndarray]) -> np.ndarray:
        """Full-frame uint8 map of which garment part is frontmost (1 + index in garment.parts, 0 = none), by a
        segmentation render of the same scene (measurement only: an extra render)."""
        pr = self.pyrender
        seg_map = {}
        for i, (node, anchor) in enumerate(self._nodes):
            pose = poses.get(anchor)
            node.mesh.is_visible = pose is not None
            if pose is not None:
                self.scene.set_pose(node, pose)
            seg_map[node] = (i + 1, i + 1, i + 1)
        color, _ = self.r.render(self.scene, flags=pr.RenderFlags.SEG, seg_node_map=seg_map)
        ids = np.ascontiguousarray(color[..., 0])
        h, w = self.frame_size
        if ids.shape != (h, w):
            ids = cv2.resize(ids, (w, h), interpolation=cv2.INTER_NEAREST)
        return ids

    def close(self) -> None:
        try:
            self.r.delete()
        except Exception:  # noqa: BLE001 - context may already be gone at interpreter exit
            log.debug("renderer delete failed", exc_info=True)


def srgb_to_linear(rgba) -> np.ndarray:
    """Swatch colour (sRGB hex) -> linear base-colour factor (glTF), so a fully lit surface shows the swatch."""
    c = np.asarray(rgba, np.float64)
    rgb = np.where(c[:3] <= 0.04045, c[:3] / 12.92, ((c[:3] + 0.055) / 1.055) ** 2.4)
    return np.concatenate([rgb, c[3:4]]).astype(np.float32)


def _rot_x(deg):
    a = np.radians(deg)
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


def _rot_y(deg):
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def renderer_from_config(cfg, intr: Intrinsics) -> GarmentRenderer:
    """GarmentRenderer from a TryOnConfig (render section) for the given intrinsics."""
    r = cfg.render
    return GarmentRenderer(intr, msaa=r.msaa, fixed_light_shaders=r.fixed_light_shaders,
                           shader_cache_dir=r.shader_cache_dir, render_scale=r.render_scale, znear=r.znear,
                           zfar=r.zfar)
