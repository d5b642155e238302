"""Garment renderer: one reused pyrender OffscreenRenderer (EGL) with a fixed light rig; RGBA + depth.

GL contexts are bound to the creating thread: create, use and close a GarmentRenderer on ONE thread
(the pipeline's render thread). Per frame only node poses, colour factors and the rig's light values change.
Fast path (default): MSAA off + fixed light-loop shaders (edge/tryon/shaders.py). Stock: 4x MSAA, stock shaders.
Fabric parts carry the materials.py maps (albedo, normal, roughness: glTF semantics, pyrender's own shader path).
The rig follows the scene (`match_scene`, lighting.py). Per frame only the garment's projected bounding box is
rendered (`crop`), at a render scale that adapts to the measured render time (`adaptive_scale`).
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from prometheus_client import Gauge

from edge.core.paths import cache_dir
from edge.tryon.garments import Colour, Garment
from edge.tryon.gl import load_pyrender, make_offscreen_renderer
from edge.tryon.intrinsics import Intrinsics
from edge.tryon.lighting import NEUTRAL, LightEstimator, SceneLight
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
KEY_COLOUR = np.array([1.0, 0.99, 0.97])
SCENE_FILL = 0.35  # scene-matched rig: fill irradiance (the neutral rig's fill gives ~0.7 at 2 m)
SCENE_FILL_DISTANCE = 50.0  # m: far enough to act as a directional light
FILL_COLOUR = np.array([1.0, 0.95, 0.88])
TORSO_SCALE_STEP = 0.004  # silhouette factors re-uploaded when one changes by this much (~0.5 px on a torso)
# crop: the render target is the garment's projected box plus a margin, sized in steps of CROP_STEP render pixels;
# it is kept while the box fits and the target is at most CROP_SLACK times the needed area (fewer reallocations)
CROP_MARGIN_PX = 4
CROP_STEP = 32
CROP_SLACK = 1.6
# adaptive scale: EMA of the render time; a change waits ADAPT_HOLD frames; scales are multiples of SCALE_STEP
ADAPT_EMA = 0.15
ADAPT_HOLD = 12
ADAPT_UP = 0.6  # scale up when the EMA is below this fraction of the budget
ADAPT_UP_HOLD = 60  # frames at a level before stepping back up (no flicker between two levels)
SCALE_STEP = 0.05
# below min_scale the fabric maps are the next knob: 0 = all maps, 1 = albedo pattern only (no normal / roughness
# map: ~2/3 of the maps' cost), 2 = flat colour; detail comes back first when there is time again
MATERIAL_LEVELS = 2
MIN_SCALE_LINES = 480  # min_scale holds at this frame height; taller frames keep its number of rendered lines

LIGHT_EVERY = 2  # the scene light is estimated on every 2nd frame (smoothed over ~0.5 s anyway)

RENDER_SCALE = Gauge("edge_tryon_render_scale", "render scale of the garment layer (adaptive)")
MATERIAL_LEVEL = Gauge("edge_tryon_material_level", "fabric map level: 0 all maps, 1 albedo only, 2 flat (adaptive)")


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
    scale: float = 1.0  # render scale used for this layer
    crop: tuple[int, int, int, int] | None = None  # x, y, w, h of the frame region rendered (None = whole frame)

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
        fresh = rr._main_fb is None or rr._main_fb_dims != (rr.viewport_width, rr.viewport_height)
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
    """Offscreen garment renderer for a fixed camera (intrinsics) and frame size.

    render_scale: the largest render scale (the start); with adaptive_scale the scale moves between min_scale and
    it to keep the measured render time near budget_ms (min_scale applies at 480 lines: at 1280x720 the floor is
    min_scale x 480 / 720, the same number of rendered lines). crop: render only the garment's projected bounding box.
    materials: fabric maps on (False: flat colour, as before); material_lod: with adaptive_scale, at min_scale and
    still over budget, step the maps down (set_material_level). lighting: a LightEstimator for match_scene (None:
    the neutral rig).
    """

    def __init__(self, intr: Intrinsics, msaa: int = 0, fixed_light_shaders: bool = True,
                 shader_cache_dir: str | Path = "", render_scale: float = 1.0, znear: float = 0.05,
                 zfar: float = 20.0, materials: bool = True, crop: bool = False, adaptive_scale: bool = False,
                 min_scale: float = 0.5, budget_ms: float = 16.0, lighting: LightEstimator | None = None,
                 material_lod: bool = False):
        self.pyrender = pr = load_pyrender()
        self.intr = intr
        self.frame_size = (intr.height, intr.width)
        self.max_scale = float(render_scale)
        # min_scale is the floor at 480 lines: a larger frame may go down to the same number of rendered lines
        self.min_scale = min(float(min_scale) * min(1.0, MIN_SCALE_LINES / intr.height), self.max_scale)
        self.scale = self.max_scale
        self.adaptive, self.budget_ms, self.crop = adaptive_scale, float(budget_ms), crop
        self.materials = materials
        self.lighting = lighting
        self._ema: float | None = None
        self._since_change = 0
        self.material_level = 0
        self.material_lod = material_lod
        self._fabric_mats: list[tuple[object, tuple]] = []  # (material, its fabric textures) for the LOD
        rw, rh = self._full_render_size(self.scale)
        self.scene = pr.Scene(bg_color=[0.0, 0.0, 0.0, 0.0], ambient_light=[AMBIENT] * 3)
        s = self.scale
        self.cam = pr.IntrinsicsCamera(intr.fx * s, intr.fy * s, intr.cx * s, intr.cy * s, znear=znear, zfar=zfar)
        self.znear = znear
        self.scene.add(self.cam, pose=np.eye(4))  # camera at the origin looking down -z (OpenGL)
        # the fixed rig: exactly RIG lights (the fast shaders hard-code these counts). A soft key from the front,
        # above and to one side models the cloth (folds, shoulder and side fall-off); a weak warm fill from the
        # other side keeps the shadow side readable; little ambient so the inside of the fabric reads dark.
        self.key = pr.DirectionalLight(color=KEY_COLOUR.tolist(), intensity=KEY_INTENSITY)
        self.key_node = self.scene.add(self.key, pose=_key_pose(KEY_AZIMUTH_DEG, KEY_ELEVATION_DEG))
        fill = np.eye(4)
        fill[:3, 3] = FILL_POSITION
        self.fill = pr.PointLight(color=FILL_COLOUR.tolist(), intensity=FILL_INTENSITY)
        self.fill_node = self.scene.add(self.fill, pose=fill)
        assert RIG == {"directional": 1, "point": 1, "spot": 0}
        # the shader dir first: a failure (unwritable cache) must not leave a GL context behind
        sdir = None
        if fixed_light_shaders:
            sdir = fixed_light_shader_dir(shader_cache_dir or cache_dir() / "tryon" / "shaders")
        self.r = make_offscreen_renderer(rw, rh)
        self.fast_shaders = fixed_light_shaders
        if sdir is not None:
            self.r._renderer._program_cache = pr.shader_program.ShaderProgramCache(shader_dir=str(sdir))
        self.msaa = msaa
        if msaa != 4:
            set_msaa(self.r, msaa)
        self._nodes: list[tuple[object, str]] = []  # (node, anchor)
        self._boxes: list[np.ndarray] = []  # per node: the 8 corners of its mesh's bounding box (part frame)
        self._tint_materials: list = []
        self._textures: dict[str, tuple] = {}  # fabric -> (albedo, normal, roughness) pyrender Textures (shared)
        self._deformable: list[tuple[object, np.ndarray, np.ndarray, np.ndarray]] = []  # torso primitives
        self._torso_scale: np.ndarray | None = None  # the factors the uploaded torso vertices carry
        self.garment: Garment | None = None
        self.colour: Colour | None = None
        self.light: SceneLight = NEUTRAL
        RENDER_SCALE.set(self.scale)
        log.info("garment renderer %dx%d (render %dx%d) msaa=%d fixed_light_shaders=%s materials=%s crop=%s "
                 "adaptive_scale=%s (%.2f..%.2f, %.1f ms)", intr.width, intr.height, rw, rh, msaa,
                 fixed_light_shaders, materials, crop, adaptive_scale, self.min_scale, self.max_scale, budget_ms)

    def set_garment(self, garment: Garment, colour: Colour | None = None) -> None:
        """Replace the garment's meshes in the scene (uploads happen on the next render)."""
        pr = self.pyrender
        for node, _ in self._nodes:
            self.scene.remove_node(node)
        self._nodes, self._boxes, self._tint_materials, self._deformable, self._torso_scale = [], [], [], [], None
        self._fabric_mats = []
        for part in garment.parts:
            fabric = part.fabric if self.materials else ""
            mat = pr.MetallicRoughnessMaterial(
                baseColorFactor=list(part.base_color), metallicFactor=part.metallic, roughnessFactor=part.roughness,
                baseColorTexture=None if fabric or (part.fabric and not self.materials) else part.texture,
                doubleSided=True, alphaMode="OPAQUE")
            mesh = pr.Mesh.from_trimesh(part.mesh, material=mat, smooth=True)
            shade = vertex_shade(part.mesh)  # baked cavity / inside-of-fabric shade; alpha 0 = holdout
            for prim in mesh.primitives:
                if shade is not None:
                    prim.color_0 = shade
                if fabric:  # shared textures, set after from_trimesh (which deep-copies its material)
                    self._fabric_mats.append((prim.material, self._fabric_textures(part)))
                elif part.fabric:  # materials off: the flat look of earlier releases, no UVs uploaded
                    prim.texcoord_0 = None
            node = self.scene.add(mesh, name=part.name, pose=np.eye(4))
            self._nodes.append((node, part.anchor))
            self._boxes.append(_box_corners(np.asarray(part.mesh.bounds, float)))
            if part.anchor == "torso":  # the silhouette fit scales these per level (deform)
                for prim in mesh.primitives:
                    rest = [a for a in (prim.tangents, prim.texcoord_0, prim.texcoord_1, prim.color_0) if a is not None]
                    self._deformable.append((prim, np.asarray(prim.positions, np.float32).copy(),
                                             np.asarray(prim.normals, np.float32).copy(),
                                             np.hstack(rest).astype(np.float32) if rest else None))
            if part.tint:  # from_trimesh deep-copies the material: recolour the primitives' own copies
                self._tint_materials.extend(prim.material for prim in mesh.primitives)
        self.garment = garment
        self.set_material_level(self.material_level)
        self.set_colour(colour or garment.colour())

    def set_material_level(self, level: int) -> None:
        """Fabric map level: 0 = albedo + normal + roughness maps, 1 = albedo pattern only, 2 = flat colour."""
        self.material_level = int(min(max(level, 0), MATERIAL_LEVELS))
        for m, (albedo, normal, rough) in self._fabric_mats:
            m.baseColorTexture = albedo if self.material_level < 2 else None
            m.normalTexture = normal if self.material_level < 1 else None
            m.metallicRoughnessTexture = rough if self.material_level < 1 else None
        MATERIAL_LEVEL.set(self.material_level)

    def _fabric_textures(self, part) -> tuple:
        """The part's fabric maps as pyrender Textures, made once per fabric and shared by every part."""
        if part.fabric not in self._textures:
            pr = self.pyrender
            self._textures[part.fabric] = tuple(
                pr.Texture(source=np.ascontiguousarray(img), source_channels="RGB")
                for img in (part.texture, part.normal_texture, part.rough_texture))
        return self._textures[part.fabric]

    def set_colour(self, colour: Colour | None) -> None:
        self.colour = colour
        if colour is not None:
            for m in self._tint_materials:
                m.baseColorFactor = srgb_to_linear(colour.rgba)

    def set_scene_light(self, light: SceneLight | None) -> None:
        """Set the rig from a scene estimate: ambient colour and level, the key light's colour, level and direction,
        the fill tinted like the ambient, from the side away from the key. Still 1 directional + 1 point light.
        (The constructor's rig, used while no estimate is set, is the neutral rig of earlier releases.)"""
        light = light or NEUTRAL
        self.light = light
        self.scene.ambient_light = AMBIENT * np.asarray(light.ambient, float)
        key = KEY_COLOUR * np.asarray(light.key, float)
        peak = float(key.max())
        self.key.color = key / max(peak, 1e-6)
        self.key.intensity = KEY_INTENSITY * peak
        self.scene.set_pose(self.key_node, _pose_toward(light.direction))
        fill = FILL_COLOUR * np.asarray(light.ambient, float)
        fpeak = float(fill.max())
        self.fill.color = fill / max(fpeak, 1e-6)
        # the fill as a far point light (a directional light in effect, the same at any garment distance) from the
        # side away from the key, low: the key's side gradient reads, the shadow side stays readable
        d = np.array([-light.direction[0], 0.25, max(light.direction[2], 0.3)])
        pose = np.eye(4)
        pose[:3, 3] = d / np.linalg.norm(d) * SCENE_FILL_DISTANCE
        self.scene.set_pose(self.fill_node, pose)
        self.fill.intensity = SCENE_FILL * fpeak * SCENE_FILL_DISTANCE ** 2

    def match_scene(self, image_bgr: np.ndarray, mask: np.ndarray | None, landmarks: np.ndarray | None,
                    t: float) -> SceneLight | None:
        """Light the garment like the camera frame around the person (lighting.LightEstimator, smoothed)."""
        if self.lighting is None:
            return None
        light = self.lighting.update(image_bgr, mask, landmarks, t)
        self.set_scene_light(light)
        return light

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

    # -- drawing ----------------------------------------------------------------------------------------------
    def _full_render_size(self, scale: float) -> tuple[int, int]:
        return max(16, round(self.intr.width * scale)), max(16, round(self.intr.height * scale))

    def _pose_nodes(self, poses: dict[str, np.ndarray]) -> bool:
        any_visible = False
        for node, anchor in self._nodes:
            pose = poses.get(anchor)
            node.mesh.is_visible = pose is not None
            if pose is not None:
                self.scene.set_pose(node, pose)
                any_visible = True
        return any_visible

    def projected_box(self, poses: dict[str, np.ndarray]) -> tuple[float, float, float, float] | None:
        """(u0, v0, u1, v1) frame pixels containing every visible part: the projection of each part's bounding
        box at its pose (exact bound for a box in front of the camera); None if a box reaches behind the near
        plane (render the whole frame)."""
        intr = self.intr
        grow = 1.0 if self._torso_scale is None else max(1.0, float(np.max(self._torso_scale)))
        us, vs = [], []
        for (node, anchor), corners in zip(self._nodes, self._boxes):
            pose = poses.get(anchor)
            if pose is None:
                continue
            c = corners
            if anchor == "torso" and grow > 1.0:
                c = c * np.array([grow, 1.0, 1.0])
            p = c @ pose[:3, :3].T + pose[:3, 3]
            depth = -p[:, 2]
            if float(depth.min()) < self.znear * 1.01:
                return None
            us.append(intr.fx * p[:, 0] / depth + intr.cx)
            vs.append(intr.cy - intr.fy * p[:, 1] / depth)
        if not us:
            return None
        u, v = np.concatenate(us), np.concatenate(vs)
        return float(u.min()), float(v.min()), float(u.max()), float(v.max())

    def _plan(self, poses) -> tuple[int, int, int, int, int, int] | None:
        """(x0, y0, cw, ch, rw, rh): the frame region to render and the render target size; None if the garment is
        entirely outside the frame."""
        H, W = self.frame_size
        s = self.scale
        full_w, full_h = self._full_render_size(s)
        box = self.projected_box(poses) if self.crop else None
        if box is None:
            return 0, 0, W, H, full_w, full_h
        u0, v0, u1, v1 = box
        u0, v0 = max(0.0, u0 - CROP_MARGIN_PX), max(0.0, v0 - CROP_MARGIN_PX)
        u1, v1 = min(float(W), u1 + CROP_MARGIN_PX), min(float(H), v1 + CROP_MARGIN_PX)
        if u1 <= u0 or v1 <= v0:
            return None
        need_w = min(full_w, CROP_STEP * math.ceil((u1 - u0) * s / CROP_STEP))
        need_h = min(full_h, CROP_STEP * math.ceil((v1 - v0) * s / CROP_STEP))
        cur_w, cur_h = self.r.viewport_width, self.r.viewport_height
        if not (need_w <= cur_w <= full_w and need_h <= cur_h <= full_h and cur_w * cur_h <= CROP_SLACK * need_w
                * need_h):
            cur_w, cur_h = need_w, need_h
        cw = W if cur_w >= full_w else min(W, round(cur_w / s))
        ch = H if cur_h >= full_h else min(H, round(cur_h / s))
        x0 = int(min(max(round((u0 + u1) / 2 - cw / 2), 0), W - cw))
        y0 = int(min(max(round((v0 + v1) / 2 - ch / 2), 0), H - ch))
        return x0, y0, cw, ch, cur_w, cur_h

    def _draw(self, plan, flags, seg_node_map=None):
        """Render the planned region; colour (RGBA or seg) and depth at frame resolution for that region."""
        x0, y0, cw, ch, rw, rh = plan
        sx, sy = rw / cw, rh / ch
        intr = self.intr
        self.cam.fx, self.cam.fy = intr.fx * sx, intr.fy * sy
        self.cam.cx, self.cam.cy = (intr.cx - x0) * sx, (intr.cy - y0) * sy
        self.r.viewport_width, self.r.viewport_height = rw, rh
        color, depth = self.r.render(self.scene, flags=flags, seg_node_map=seg_node_map)
        return color, depth

    def render(self, poses: dict[str, np.ndarray]) -> RenderOutput:
        """Render the garment with each part at its anchor pose (parts whose anchor is missing are hidden)."""
        t0 = time.perf_counter()
        h, w = self.frame_size
        plan = self._plan(poses) if self._pose_nodes(poses) else None
        if plan is None:
            return RenderOutput(np.zeros((0, 0, 4), np.uint8), np.zeros((0, 0), np.float32), (0, 0, 0, 0), (h, w),
                                scale=self.scale)
        x0, y0, cw, ch, rw, rh = plan
        color, depth = self._draw(plan, self.pyrender.RenderFlags.RGBA)
        if (color.shape[0], color.shape[1]) != (ch, cw):  # render scale < 1
            color = cv2.resize(np.ascontiguousarray(color), (cw, ch), interpolation=cv2.INTER_LINEAR)
            depth = cv2.resize(np.ascontiguousarray(depth), (cw, ch), interpolation=cv2.INTER_NEAREST)
        alpha = np.ascontiguousarray(color[..., 3])
        x, y, bw, bh = cv2.boundingRect(alpha)
        rgba = np.ascontiguousarray(color[y:y + bh, x:x + bw])
        d = np.ascontiguousarray(depth[y:y + bh, x:x + bw])
        d[rgba[..., 3] == 0] = 0.0  # holdouts (the neck inside the collar) write depth but no colour
        ms = (time.perf_counter() - t0) * 1000
        out = RenderOutput(rgba, d, (x + x0, y + y0, bw, bh) if bw else (0, 0, 0, 0), (h, w), ms, scale=self.scale,
                           crop=(x0, y0, cw, ch))
        self._adapt(ms)
        return out

    def _adapt(self, ms: float) -> None:
        """Move the render scale toward the budget (EMA of the render time): to the scale whose expected cost
        (~ scale^2, shaded pixels) meets it, at least one SCALE_STEP, then wait ADAPT_HOLD frames for new timings.
        At min_scale and still over budget, the fabric maps step down (set_material_level); with time to spare
        they come back before the scale goes up, each step up after ADAPT_UP_HOLD frames at a level."""
        if not self.adaptive:
            return
        self._ema = ms if self._ema is None else (1 - ADAPT_EMA) * self._ema + ADAPT_EMA * ms
        self._since_change += 1
        if self._since_change < ADAPT_HOLD:
            return
        s, ema, budget = self.scale, self._ema, self.budget_ms
        up = ema < ADAPT_UP * budget and self._since_change >= ADAPT_UP_HOLD
        if (ema > budget and s <= self.min_scale + 1e-6 and self.material_lod and self._fabric_mats
                and self.material_level < MATERIAL_LEVELS):
            self._material_step(+1, ema)
            return
        if up and self.material_level > 0:
            self._material_step(-1, ema)
            return
        if ema > budget and s > self.min_scale:
            new = max(self.min_scale, min(s - SCALE_STEP, s * math.sqrt(budget / ema)))
        elif up and s < self.max_scale:
            new = min(self.max_scale, max(s + SCALE_STEP, s * math.sqrt(0.8 * budget / ema)))
        else:
            return
        if new > self.min_scale + 1e-9:  # multiples of SCALE_STEP, or the floor itself
            new = min(self.max_scale, max(self.min_scale, round(new / SCALE_STEP) * SCALE_STEP))
        if abs(new - s) < 1e-6:
            return
        log.debug("render scale %.2f -> %.2f (render %.1f ms, budget %.1f ms)", s, new, ema, budget)
        self.scale, self._since_change = new, 0
        self._ema *= (new / s) ** 2  # expected cost at the new scale
        RENDER_SCALE.set(new)

    def _material_step(self, step: int, ema: float) -> None:
        log.debug("fabric map level %d -> %d (render %.1f ms, budget %.1f ms)", self.material_level,
                  self.material_level + step, ema, self.budget_ms)
        self.set_material_level(self.material_level + step)
        self._since_change = 0

    def piece_ids(self, poses: dict[str, np.ndarray]) -> np.ndarray:
        """Full-frame uint8 map of which garment part is frontmost (1 + index in garment.parts, 0 = none), by a
        segmentation render of the same scene (measurement only: an extra render)."""
        pr = self.pyrender
        h, w = self.frame_size
        ids = np.zeros((h, w), np.uint8)
        seg_map = {node: (i + 1, i + 1, i + 1) for i, (node, _) in enumerate(self._nodes)}
        plan = self._plan(poses) if self._pose_nodes(poses) else None
        if plan is None:
            return ids
        x0, y0, cw, ch, _, _ = plan
        color, _ = self._draw(plan, pr.RenderFlags.SEG, seg_node_map=seg_map)
        sub = np.ascontiguousarray(color[..., 0])
        if sub.shape != (ch, cw):
            sub = cv2.resize(sub, (cw, ch), interpolation=cv2.INTER_NEAREST)
        ids[y0:y0 + ch, x0:x0 + cw] = sub
        return ids

    def close(self) -> None:
        try:
            self.r.delete()
        except Exception:  # noqa: BLE001 - context may already be gone at interpreter exit
            log.debug("renderer delete failed", exc_info=True)


def _box_corners(bounds: np.ndarray) -> np.ndarray:
    """The 8 corners of an axis-aligned box (2, 3) -> (8, 3), grown by 2 % (and 2 mm) for the smooth normals'
    rounding and the silhouette deform's fade."""
    lo, hi = bounds
    c, half = (lo + hi) / 2, (hi - lo) / 2 * 1.02 + 0.002
    signs = np.array([[i, j, k] for i in (-1, 1) for j in (-1, 1) for k in (-1, 1)], float)
    return c + signs * half


def _pose_toward(direction) -> np.ndarray:
    """Pose of a directional light shining from `direction` (unit vector toward the light, camera space): its +z
    axis (pyrender lights shine along -z)."""
    z = np.asarray(direction, float)
    z = z / max(np.linalg.norm(z), 1e-9)
    up = np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.99 else np.array([1.0, 0.0, 0.0])
    x = np.cross(up, z)
    x /= np.linalg.norm(x)
    pose = np.eye(4)
    pose[:3, :3] = np.stack([x, np.cross(z, x), z], 1)
    return pose


def _key_pose(azimuth_deg: float, elevation_deg: float) -> np.ndarray:
    pose = np.eye(4)
    pose[:3, :3] = _rot_y(azimuth_deg) @ _rot_x(-elevation_deg)
    return pose


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
    """GarmentRenderer from a TryOnConfig (render and lighting sections) for the given intrinsics."""
    r, li = cfg.render, cfg.lighting
    lighting = (LightEstimator(li.time_constant_s, li.strength, every=LIGHT_EVERY) if li.enabled and li.strength > 0
                else None)
    return GarmentRenderer(intr, msaa=r.msaa, fixed_light_shaders=r.fixed_light_shaders,
                           shader_cache_dir=r.shader_cache_dir, render_scale=r.render_scale, znear=r.znear,
                           zfar=r.zfar, materials=r.materials, crop=r.crop, adaptive_scale=r.adaptive_scale,
                           min_scale=r.min_scale, budget_ms=r.budget_ms, lighting=lighting, material_lod=r.material_lod)
