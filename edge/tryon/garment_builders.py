"""Procedural garments of the built-in catalogue, written as GLB (PBR materials) + anchor JSON.

Dimensions are for the reference body in garments.DEFAULT_REF (landmark shoulder width 0.36 m, mid-shoulder
to mid-hip 0.50 m, ears 0.15 m apart); the fitter scales them to the shopper.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import trimesh
from PIL import Image

from edge.tryon.garments import ANCHOR_FORMAT, DEFAULT_REF
from edge.tryon.meshes import disc, ring, rod, tube


def _interp(ys, vals):
    return lambda y: float(np.interp(y, ys, vals))


def _pbr(rgb, metallic, roughness, texture: Image.Image | None = None):
    return trimesh.visual.material.PBRMaterial(
        baseColorFactor=[int(255 * c) for c in rgb] + [255], metallicFactor=metallic, roughnessFactor=roughness,
        baseColorTexture=texture, doubleSided=True)


def _with_material(mesh: trimesh.Trimesh, mat) -> trimesh.Trimesh:
    uv = getattr(mesh.visual, "uv", None)
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, material=mat)
    return mesh


def _knit_texture(size: int = 128) -> Image.Image:
    """Light ribbed-knit pattern (multiplied by the colour factor, so it tints)."""
    yy, xx = np.mgrid[0:size, 0:size]
    rib = 0.5 + 0.5 * np.cos(2 * np.pi * xx / 8.0)
    stitch = 0.5 + 0.5 * np.cos(2 * np.pi * (yy + 2 * np.abs(((xx % 8) - 4))) / 6.0)
    v = 205 + 30 * rib + 20 * stitch
    band = (yy < size * 0.28)  # folded cuff: slightly darker
    v = np.where(band, v * 0.85, v)
    return Image.fromarray(np.clip(np.stack([v] * 3, -1), 0, 255).astype(np.uint8))


def _torso(extra_w: float, extra_d: float, bottom: float, n_theta: int = 64) -> trimesh.Trimesh:
    ys = np.concatenate([np.linspace(bottom, 0.02, 28), np.linspace(0.03, 0.075, 8)])
    w = _interp([bottom, -0.35, -0.12, 0.02, 0.045, 0.075],
                [0.185 + extra_w, 0.178 + extra_w, 0.195 + extra_w, 0.205 + extra_w, 0.15 + extra_w, 0.078])
    d = _interp([bottom, -0.35, -0.12, 0.02, 0.045, 0.075],
                [0.11 + extra_d, 0.105 + extra_d, 0.12 + extra_d, 0.10 + extra_d, 0.085 + extra_d, 0.06])
    return tube(ys, w, d, n_theta=n_theta, z0=_interp([bottom, -0.12, 0.075], [0.0, 0.012, 0.0]))


def _sleeve(top: float, bottom: float, r_top: float, r_bottom: float) -> trimesh.Trimesh:
    ys = np.linspace(bottom, top, 10)
    r = _interp([bottom, top], [r_bottom, r_top])
    return tube(ys, r, r, n_theta=32)


def build_tee():
    mat = _pbr((0.13, 0.19, 0.35), 0.0, 0.85)
    parts = {"torso": _with_material(_torso(0.0, 0.0, -0.56), mat)}
    for side in ("left", "right"):
        parts[f"sleeve_{side}"] = _with_material(_sleeve(0.05, -0.13, 0.072, 0.062), mat)
    anchors = {"torso": "torso", "sleeve_left": "left_upper_arm", "sleeve_right": "right_upper_arm"}
    # short sleeves: the bare part of the upper arm hangs beside the shirt, so only forearms and hands occlude
    meta = {"name": "Crew-neck tee", "category": "top", "covers": ["torso", "left_upper_arm", "right_upper_arm"],
            "tint": {}}
    return parts, anchors, meta


def build_jacket():
    mat = _pbr((0.25, 0.22, 0.18), 0.0, 0.7)
    dark = _pbr((0.05, 0.05, 0.05), 0.8, 0.3)
    parts = {"torso": _with_material(_torso(0.02, 0.022, -0.64), mat)}
    collar = tube(np.linspace(0.05, 0.12, 4), _interp([0.05, 0.12], [0.10, 0.088]),
                  _interp([0.05, 0.12], [0.085, 0.075]), n_theta=40, z0=-0.005)
    parts["collar"] = _with_material(collar, mat)
    buttons = [disc((0.0, y, 0.145 if y > -0.2 else 0.135), 0.01, 0.006) for y in (-0.08, -0.2, -0.32, -0.44)]
    parts["buttons"] = _with_material(trimesh.util.concatenate(buttons), dark)
    for side in ("left", "right"):
        parts[f"sleeve_{side}_upper"] = _with_material(_sleeve(0.05, -0.30, 0.078, 0.066), mat)
        parts[f"sleeve_{side}_lower"] = _with_material(_sleeve(0.04, -0.25, 0.066, 0.056), mat)
    anchors = {"torso": "torso", "collar": "torso", "buttons": "torso",
               "sleeve_left_upper": "left_upper_arm", "sleeve_right_upper": "right_upper_arm",
               "sleeve_left_lower": "left_forearm", "sleeve_right_lower": "right_forearm"}
    meta = {"name": "Field jacket", "category": "top", "tint": {"buttons": False},
            "covers": ["torso", "left_upper_arm", "right_upper_arm", "left_forearm", "right_forearm"]}
    return parts, anchors, meta


def build_glasses():
    frame_mat = _pbr((0.1, 0.1, 0.1), 0.7, 0.35)
    lens_mat = _pbr((0.08, 0.1, 0.12), 0.0, 0.05)
    zf, dx, r = 0.10, 0.034, 0.025
    pieces = [ring((-dx, 0.0, zf), r, 0.0035), ring((dx, 0.0, zf), r, 0.0035),
              rod((-dx + r, 0.004, zf), (dx - r, 0.004, zf), 0.0025)]
    for s in (-1, 1):
        pieces.append(rod((s * (dx + r), 0.0, zf), (s * 0.078, 0.004, 0.0), 0.0025))
    lenses = [disc((-dx, 0.0, zf - 0.001), r - 0.001, 0.002), disc((dx, 0.0, zf - 0.001), r - 0.001, 0.002)]
    parts = {"frame": _with_material(trimesh.util.concatenate(pieces), frame_mat),
             "lenses": _with_material(trimesh.util.concatenate(lenses), lens_mat)}
    anchors = {"frame": "head", "lenses": "head"}
    meta = {"name": "Round glasses", "category": "eyewear", "covers": ["head"], "tint": {"lenses": False}}
    return parts, anchors, meta


def build_beanie():
    tex = _knit_texture()
    mat = _pbr((0.6, 0.12, 0.1), 0.0, 0.95, texture=tex)
    ys = np.linspace(0.02, 0.175, 18)
    # ellipsoidal dome over the skull; the first rows form the folded cuff
    rad = lambda y: 0.098 * np.sqrt(max(0.0, 1 - ((y - 0.02) / 0.158) ** 2)) + 0.003  # noqa: E731
    dome = tube(ys, rad, lambda y: rad(y) * 1.12, n_theta=48, z0=0.012)
    parts = {"beanie": _with_material(dome, mat)}
    meta = {"name": "Rib beanie", "category": "headwear", "covers": ["head"], "tint": {}}
    return parts, {"beanie": "head"}, meta


BUILDERS = {"tee": build_tee, "jacket": build_jacket, "glasses": build_glasses, "beanie": build_beanie}


def build_to(builder: str, out: Path) -> None:
    """Write `<out>.glb` and the anchor JSON `<out>.json`."""
    try:
        fn = BUILDERS[builder]
    except KeyError:
        raise ValueError(f"unknown garment builder {builder!r}; known: {sorted(BUILDERS)}") from None
    parts, anchors, meta = fn()
    scene = trimesh.Scene()
    for name, mesh in parts.items():
        scene.add_geometry(mesh, node_name=name, geom_name=name)
    out = Path(out)
    tmp = out.with_suffix(".glb.tmp")
    tmp.write_bytes(scene.export(file_type="glb"))
    tint = meta.pop("tint")
    anchor_meta = {"format": ANCHOR_FORMAT, "units": "m", "ref": dict(DEFAULT_REF), "default_anchor": "torso",
                   "parts": [{"node": n, "anchor": anchors[n], "tint": tint.get(n, True)} for n in parts], **meta}
    out.with_suffix(".json").write_text(json.dumps(anchor_meta, indent=1))
    tmp.replace(out)
