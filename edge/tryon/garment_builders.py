"""Procedural garments of the built-in catalogue, written as GLB (PBR materials) + anchor JSON.

Dimensions are for the reference body in anchors.DEFAULT_REF (landmark shoulder width 0.36 m, mid-shoulder
to mid-hip 0.50 m, ears 0.15 m apart); the fitter scales them to the shopper.

Tops are lofted cloth surfaces (meshes.grid_mesh): rings from the hem up the body, a shoulder yoke from the
armhole level over the shoulders to the neckline (a superellipse quarter per column: vertical side wall ->
rounded shoulder point -> sloped shoulder line -> neck), then a neck band or collar that rolls over and comes
back down inside. Rolled hems/cuffs turn inward the same way. Sleeves are tapered tubes with a domed cap
centred on the joint, so they stay joined to the armhole whatever the arm does. Folds are small displacements
of the surface (the smooth vertex normals follow them); the per-vertex `_shade` attribute bakes cavity/arm
occlusion and the darker inside of the fabric (multiplies the lit colour, no texture cost). Every grid carries
UVs in metres of fabric (meshes.grid_uv): the catalogue's fabric (materials.py) is mapped at its real scale. A `neck_holdout`
part (shade alpha 0) stands for the wearer's neck: it hides the inside of the back of the collar and lets the
camera image show through the neck opening.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import trimesh

from edge.tryon.anchors import ANCHOR_FORMAT, DEFAULT_REF
from edge.tryon.meshes import (bump, disc, grid_mesh, resample_rows, ring, rod, set_shade, superellipse, tube,
                               vertex_shade)

INSIDE = 0.42  # shade of the inside of the fabric (neck band, turned-up hems)


def _pbr(rgb, metallic, roughness, texture=None, alpha: float = 1.0):
    return trimesh.visual.material.PBRMaterial(
        baseColorFactor=[int(round(255 * c)) for c in rgb] + [int(round(255 * alpha))], metallicFactor=metallic,
        roughnessFactor=roughness, baseColorTexture=texture, doubleSided=True)


def _with_material(mesh: trimesh.Trimesh, mat) -> trimesh.Trimesh:
    uv = getattr(mesh.visual, "uv", None)
    mesh.visual = trimesh.visual.TextureVisuals(uv=uv, material=mat)
    return mesh


# ---------------------------------------------------------------------------------------------------------------
# Torso


@dataclass(frozen=True)
class TorsoSpec:
    hem: float = -0.55  # hem height (torso frame: mid-shoulders = 0, mid-hips = -0.50)
    ease_w: float = 0.0  # extra half-width / half-depth over the tee (a jacket is worn over clothes)
    ease_d: float = 0.0
    y_arm: float = -0.10  # where the straight body ends and the shoulder yoke starts (armhole level)
    p: float = 2.5  # cross-section superellipse exponent (2 = ellipse; larger = squarer sides)
    neck_hw: float = 0.072  # neckline half-width
    neck_front: float = 0.088  # neckline front / back reach from its centre (z)
    neck_back: float = 0.060
    neck_zc: float = -0.008
    hps_y: float = 0.085  # high point shoulder (side of the neck)
    front_drop: float = 0.068  # front neck point below the HPS
    back_drop: float = 0.016
    neck_v: float = 1.6  # front neckline shape: larger = deeper V at the centre front
    slope: float = 0.40  # shoulder line drop per metre outward (~22 deg)
    shoulder_out: float = 0.052  # shoulder point outside the armhole wall (the seam sits on the top of the arm)
    collar: str = "rib"  # "rib" (tee neck band) or "shirt" (stand + fall)
    band: float = 0.017  # rib band height
    folds: float = 1.0  # drape fold amplitude scale
    placket: bool = False  # front opening with a raised placket (jacket)
    waistband: float = 0.0  # height of a hem waistband with a seam on top (0 = none)
    n_cols: int = 64  # columns around; rows below. ~5k triangles: llvmpipe pays per triangle, keep it lean
    n_body: int = 18
    n_yoke: int = 12


def _cols(spec: TorsoSpec) -> np.ndarray:
    """Column angles; a jacket gets extra columns at the placket edges so its seams stay crisp."""
    th = np.linspace(-np.pi, np.pi, spec.n_cols, endpoint=False) + np.pi / spec.n_cols
    if spec.placket:
        extra = np.array([-0.075, -0.06, -0.045, 0.045, 0.06, 0.075])
        th = np.sort(np.concatenate([th[np.min(np.abs(th[:, None] - extra[None]), 1) > 0.02], extra]))
    return th


def _section(spec: TorsoSpec, y):
    """Half-width, half-depth and centre z of the body cross-section at height y (below the yoke)."""
    ys = [-0.70, -0.55, -0.45, -0.33, -0.20, -0.10]
    a = np.interp(y, ys, [0.180, 0.177, 0.172, 0.168, 0.182, 0.180]) + spec.ease_w
    b = np.interp(y, ys, [0.113, 0.112, 0.108, 0.106, 0.118, 0.114]) + spec.ease_d
    z0 = np.interp(y, ys, [-0.002, -0.002, 0.0, 0.004, 0.014, 0.010])
    return a, b, z0


def _ring(spec: TorsoSpec, th, y, inset: float = 0.0):
    a, b, z0 = _section(spec, y)
    sx, sz = superellipse(th, spec.p)
    return np.stack([(a - inset) * sx, np.full_like(th, y), z0 + (b - inset) * sz], -1)


def _neckline(spec: TorsoSpec, th):
    c = np.cos(th)
    sx, sz = superellipse(th, 2.3)
    r_z = np.where(c > 0, spec.neck_front, spec.neck_back)
    y = spec.hps_y - spec.front_drop * np.clip(c, 0, 1) ** spec.neck_v - spec.back_drop * np.clip(-c, 0, 1) ** 2
    return np.stack([spec.neck_hw * sx, y, spec.neck_zc + r_z * sz], -1)


def _yoke(spec: TorsoSpec, th, A, N, n_rows: int):
    """Rows from the armhole-level ring A up over the shoulders to the neckline N (superellipse quarters)."""
    s2 = np.sin(th) ** 2
    c = np.cos(th)
    # tangent slope at the neckline: shoulder line at the sides, steeper over the upper chest and upper back
    slope = spec.slope + (1.0 - spec.slope) * np.clip(c, 0, 1) ** 2 + (0.75 - spec.slope) * np.clip(-c, 0, 1) ** 2
    n = 2.2 + 1.8 * s2 ** 2  # squarer at the shoulder point
    hA = np.hypot(A[:, 0], A[:, 2] - spec.neck_zc)
    hN = np.hypot(N[:, 0], N[:, 2] - spec.neck_zc)
    C = A.copy()
    C[:, 0] += np.sign(A[:, 0]) * spec.shoulder_out * s2 ** 2  # shoulder point out over the top of the arm
    C[:, 1] = N[:, 1] - slope * (hA - hN)
    Q = A + N - C
    phi = np.linspace(0.0, np.pi / 2, 120)[:, None, None]
    e = 2.0 / n[None, :, None]
    curves = Q[None] + (C - N)[None] * np.cos(phi) ** e + (C - A)[None] * np.sin(phi) ** e
    return resample_rows(curves, n_rows + 1, bias=0.35)[1:]


def _radial(P, zc=0.0):
    d = np.stack([P[..., 0], np.zeros_like(P[..., 0]), P[..., 2] - zc], -1)
    return d / np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-9)


def _torso(spec: TorsoSpec):
    th = _cols(spec)
    rows, shade = [], []

    def add(P, s):
        rows.append(P)
        shade.append(np.broadcast_to(np.asarray(s, float), P.shape[:1]).copy())

    # rolled hem: inside facing (dark) -> fold -> outside
    for dy, inset, s in ((0.024, 0.004, INSIDE), (0.006, 0.0045, INSIDE * 0.9), (0.0, 0.0025, 0.6)):
        P = _ring(spec, th, spec.hem + dy, inset)
        if dy == 0.0:
            P[:, 1] -= 0.0015
        add(P, s)
    # body: hem -> armhole level
    ys = np.concatenate([[spec.hem + 0.003, spec.hem + 0.008], np.linspace(spec.hem + 0.025, spec.y_arm, spec.n_body)])
    if spec.waistband:
        wb = spec.hem + spec.waistband
        ys = np.unique(np.concatenate([ys[(ys < wb - 0.012) | (ys > wb + 0.012)], [wb - 0.004, wb, wb + 0.004]]))
    body = np.stack([_ring(spec, th, y) for y in ys])
    # folds: soft vertical drape below the chest, compression ripples at the waist sides, arm shadows
    Y = body[..., 1]
    T = np.broadcast_to(th, Y.shape)
    side = np.abs(np.sin(T))
    hang = np.clip((-0.22 - Y) / (-0.22 - spec.hem), 0, 1) ** 1.3
    drape = (0.6 * np.sin(6 * T + 0.7 + 2.0 * Y) + 0.4 * np.sin(11 * T + 2.1)) * (0.5 + 0.5 * np.cos(2 * T) ** 2)
    ripple = np.sin(2 * np.pi * Y / 0.055 + 1.3 * np.sin(3 * T)) * side ** 4 * bump(Y, -0.42, -0.26, 0.06)
    disp = spec.folds * (0.006 * drape * hang + 0.0016 * ripple)
    if spec.waistband:
        disp = disp * (1 - bump(Y, spec.hem, wb, 0.01)) + 0.0025 * bump(Y, spec.hem + 0.01, wb - 0.008, 0.006)
    if spec.placket:
        pl = bump(T, -0.06, 0.06, 0.012)
        disp = disp * (1 - pl) + 0.0025 * pl
    body = body + _radial(body) * disp[..., None]
    s = 1.0 + 26.0 * disp - 0.22 * side ** 6 * bump(Y, -0.42, -0.10, 0.08)
    if spec.waistband:
        s -= 0.28 * bump(Y, wb - 0.002, wb + 0.002, 0.003)
    if spec.placket:
        s -= 0.3 * (bump(T, 0.06, 0.06, 0.014) + bump(T, -0.06, -0.06, 0.014))
    for P, sv in zip(body, s):
        add(P, sv)
    # shoulder yoke
    A, N = body[-1], _neckline(spec, th)
    yoke = _yoke(spec, th, A, N, spec.n_yoke)
    ys_y = np.linspace(0, 1, len(yoke))[:, None]
    ys_side = np.abs(np.sin(th))[None]
    ysh = 1.0 - 0.22 * ys_side ** 6 * (1 - ys_y) ** 2  # arm shadow fades over the shoulder
    if spec.placket:
        ysh = ysh - 0.3 * (bump(th, 0.06, 0.06, 0.014) + bump(th, -0.06, -0.06, 0.014))[None]
    for P, sv in zip(yoke, ysh):
        add(P, sv)
    # neck band / collar, rolling over to the inside
    d_in = -_radial(N, spec.neck_zc)
    up = np.array([0.0, 1.0, 0.0])
    if spec.collar == "rib":
        h = spec.band
        lean = up + 0.35 * d_in
        for t, inset, sv in ((0.06, 0.0004, 0.62), (0.22, 0.001, 0.9), (0.6, 0.002, 0.92), (1.0, 0.0032, 0.9), (1.12, 0.0058, 0.78),
                             (1.0, 0.0085, 0.6), (0.3, 0.009, INSIDE), (-0.9, 0.0095, INSIDE * 0.85)):
            add(N + lean * (t * h) + d_in * inset, sv)
    P = np.stack(rows)
    mesh = grid_mesh(P, np.clip(np.stack(shade), 0.0, 1.0))
    if spec.collar == "shirt":
        mesh = _join(mesh, _shirt_collar(N, d_in))
    return mesh, P


def _join(a: trimesh.Trimesh, b: trimesh.Trimesh) -> trimesh.Trimesh:
    """Two grid meshes as one (their vertex normals, fabric UVs and shade kept)."""
    m = trimesh.Trimesh(np.concatenate([a.vertices, b.vertices]),
                        np.concatenate([a.faces, b.faces + len(a.vertices)]),
                        vertex_normals=np.concatenate([a.vertex_normals, b.vertex_normals]), process=False)
    m.visual = trimesh.visual.TextureVisuals(uv=np.concatenate([a.visual.uv, b.visual.uv]))
    sa, sb = vertex_shade(a), vertex_shade(b)
    if sa is not None and sb is not None:
        set_shade(m, np.concatenate([sa, sb]))
    return m


def _shirt_collar(N, d_in) -> trimesh.Trimesh:
    """Stand up along the neck from the neckline, fold, fall back down outside over the neckline seam.

    A separate grid, ordered so its normals face the neck on the stand and away from the body on the fall (the
    side you see)."""
    rows, shade = [], []

    def add(P, s):
        rows.append(P)
        shade.append(np.broadcast_to(np.asarray(s, float), P.shape[:1]).copy())

    up = np.array([0.0, 1.0, 0.0])
    front = np.clip(-d_in[:, 2], 0, 1)[:, None]  # 1 at the centre front
    lean = up + 0.2 * d_in
    for t, inset, sv in ((0.0, 0.0, 0.6), (0.012, 0.003, 0.7), (0.022, 0.0045, 0.8)):
        add(N + lean * t + d_in * inset, sv)
    top = N + lean * 0.026
    add(top + d_in * 0.0005, 0.9)
    fall = 0.034 + 0.016 * front ** 3
    out = 0.014 + 0.02 * front ** 2
    for t in (0.2, 0.45, 0.7, 0.9, 1.0):
        add(top - up * (fall * t) - d_in * (out * t ** 1.5 + 0.004), 1.0 - 0.05 * t)
    edge = top - up * fall - d_in * (out + 0.004)
    add(edge - up * 0.0015 + d_in * 0.0025, 0.62)
    add(edge - up * 0.0 + d_in * 0.005, INSIDE)
    add(top - up * (fall * 0.55) - d_in * (out * 0.4), INSIDE * 0.8)
    P = np.stack(rows)[::-1]
    return grid_mesh(P, np.clip(np.stack(shade)[::-1], 0.0, 1.0))


def _surface_z(P: np.ndarray, th: np.ndarray, y: float) -> float:
    """Front surface z of the torso grid at height y (centre-front column)."""
    j = int(np.argmin(np.abs(th)))
    col = P[:, j]
    k = [i for i in range(1, len(col)) if col[i, 2] > 0.03 and col[i - 1, 1] <= y <= col[i, 1]]
    if not k:
        return float(col[:, 2].max())
    i = k[0]
    t = (y - col[i - 1, 1]) / max(col[i, 1] - col[i - 1, 1], 1e-9)
    return float(col[i - 1, 2] + t * (col[i, 2] - col[i - 1, 2]))


def _neck_holdout(spec: TorsoSpec) -> trimesh.Trimesh:
    """The wearer's neck as a holdout (shade alpha 0): hides the inside of the collar behind it."""
    th = np.linspace(-np.pi, np.pi, 24, endpoint=False)
    ys = np.array([-0.06, 0.05, 0.24])
    rx, rz = spec.neck_hw - 0.016, 0.056
    P = np.stack([np.stack([rx * np.sin(th), np.full_like(th, y), spec.neck_zc - 0.006 + rz * np.cos(th)], -1)
                  for y in ys])
    m = grid_mesh(P)
    return set_shade(m, np.zeros((len(m.vertices), 4)))


# ---------------------------------------------------------------------------------------------------------------
# Sleeves


@dataclass(frozen=True)
class SleeveSpec:
    length: float = 0.15  # along the bone from the joint (outer side; the inner side is `slant` shorter)
    r_top: float = 0.062
    r_end: float = 0.060
    cap: float = 0.026  # dome height above the joint (under the torso's shoulder)
    flare: float = 0.012  # the sleeve end stands off the arm (outward shift of its centre)
    slant: float = 0.03
    flat: float = 1.05  # z/x radius ratio
    cuff: float = 0.0  # cuff band height (0 = rolled hem only)
    cuff_r: float = 0.0  # cuff radius (0 = r_end)
    hem: bool = True  # rolled hem at the end (else a thin open rim: it sits inside the next segment)
    folds: float = 1.0
    n_cols: int = 28
    n_rows: int = 10


def _sleeve(spec: SleeveSpec, side: str) -> trimesh.Trimesh:
    """Tapered sleeve in its segment frame (origin at the joint, -y toward the next joint)."""
    s = 1.0 if side == "left" else -1.0  # +x is outward for the left arm, inward for the right
    th = np.linspace(-np.pi, np.pi, spec.n_cols, endpoint=False) + np.pi / spec.n_cols
    sx, sz = np.sin(th), np.cos(th)
    u = s * sx  # 1 = outer side of the arm, -1 = the side facing the body
    inner = np.clip(-u, 0, 1)
    rows, shade = [], []

    def add(r, y, sv, rz=None, xc=0.0):
        rz = r * spec.flat if rz is None else rz
        rows.append(np.stack([xc + r * sx, np.broadcast_to(y, th.shape), rz * sz], -1))
        shade.append(np.broadcast_to(np.asarray(sv, float), th.shape).copy())

    # domed cap over the joint (inside the torso except for the round of the shoulder)
    for ph in np.linspace(0.18, np.pi / 2, 6)[:-1]:
        add(spec.r_top * np.sin(ph) ** 0.8, spec.cap * np.cos(ph), 1.0)
    end = -spec.length + spec.slant * (1 - u) / 2
    cuff_r = spec.cuff_r or spec.r_end
    body_end = end + (spec.cuff if spec.cuff else 0.0)
    n = spec.n_rows
    for k in range(n):
        t = k / (n - 1)
        y = t * body_end
        r = spec.r_top + (spec.r_end - spec.r_top) * t
        fold = spec.folds * 0.0022 * np.sin(4 * th + 9 * t) * inner * np.sin(np.pi * t)
        add(r + fold, y, 1.0 - 0.2 * inner * (1 - t) + 20 * fold, xc=s * spec.flare * t ** 1.5)
    xe = s * spec.flare
    if spec.cuff:
        add(cuff_r + 0.001, body_end - 0.004, 0.7, xc=xe)
        for t in np.linspace(0.25, 1.0, 3):
            add(cuff_r + 0.0015, body_end - spec.cuff * t, 0.97, xc=xe)
    if spec.hem:
        add(cuff_r - 0.001, end - 0.0015, 0.62, xc=xe)
        add(cuff_r - 0.004, end + 0.004, 0.55, xc=xe)
        add(cuff_r - 0.0045, end + 0.022, 0.6, xc=xe)
    else:
        add(cuff_r - 0.002, end - 0.001, 0.6, xc=xe)
        add(cuff_r - 0.004, end + 0.01, INSIDE, xc=xe)
    P = np.stack(rows)[::-1]  # rows listed top-down: reverse so the outside normals point out
    return grid_mesh(P, np.clip(np.stack(shade)[::-1], 0, 1))


# ---------------------------------------------------------------------------------------------------------------
# Catalogue builders

TEE = TorsoSpec()
JACKET = replace(TEE, hem=-0.65, ease_w=0.022, ease_d=0.024, neck_hw=0.080, neck_front=0.092, neck_back=0.066,
                 hps_y=0.088, front_drop=0.085, neck_v=5.0, collar="shirt", folds=0.7, placket=True, waistband=0.05, n_cols=60)


def build_tee():
    mat = _pbr((0.13, 0.19, 0.35), 0.0, 0.86)
    hold = _pbr((0.0, 0.0, 0.0), 0.0, 1.0)
    torso, _ = _torso(TEE)
    parts = {"torso": _with_material(torso, mat), "neck_holdout": _with_material(_neck_holdout(TEE), hold)}
    for side in ("left", "right"):
        parts[f"sleeve_{side}"] = _with_material(_sleeve(SleeveSpec(), side), mat)
    anchors = {"torso": "torso", "neck_holdout": "torso", "sleeve_left": "left_upper_arm",
               "sleeve_right": "right_upper_arm"}
    # short sleeves: the bare part of the upper arm hangs beside the shirt, so only forearms and hands occlude
    meta = {"name": "Crew-neck tee", "category": "top", "covers": ["torso", "left_upper_arm", "right_upper_arm"],
            "tint": {"neck_holdout": False}}
    return parts, anchors, meta


def build_jacket():
    mat = _pbr((0.25, 0.22, 0.18), 0.0, 0.78)
    dark = _pbr((0.05, 0.05, 0.05), 0.8, 0.3)
    hold = _pbr((0.0, 0.0, 0.0), 0.0, 1.0)
    torso, grid = _torso(JACKET)
    parts = {"torso": _with_material(torso, mat), "neck_holdout": _with_material(_neck_holdout(JACKET), hold)}
    th = _cols(JACKET)
    buttons = [disc((0.0, y, _surface_z(grid, th, y) + 0.003), 0.0095, 0.005, sections=16)
               for y in (-0.05, -0.17, -0.29, -0.41, -0.53)]
    parts["buttons"] = _with_material(trimesh.util.concatenate(buttons), dark)
    upper = SleeveSpec(length=0.31, r_top=0.074, r_end=0.064, cap=0.044, slant=0.0, hem=False, folds=1.3,
                       n_rows=12)
    lower = SleeveSpec(length=0.245, r_top=0.063, r_end=0.055, cap=0.035, slant=0.0, cuff=0.045, cuff_r=0.050,
                       folds=1.0, n_rows=10)
    for side in ("left", "right"):
        parts[f"sleeve_{side}_upper"] = _with_material(_sleeve(upper, side), mat)
        parts[f"sleeve_{side}_lower"] = _with_material(_sleeve(lower, side), mat)
    anchors = {"torso": "torso", "neck_holdout": "torso", "buttons": "torso",
               "sleeve_left_upper": "left_upper_arm", "sleeve_right_upper": "right_upper_arm",
               "sleeve_left_lower": "left_forearm", "sleeve_right_lower": "right_forearm"}
    meta = {"name": "Field jacket", "category": "top", "tint": {"buttons": False, "neck_holdout": False},
            "covers": ["torso", "left_upper_arm", "right_upper_arm", "left_forearm", "right_forearm"]}
    return parts, anchors, meta
# ---------------------------------------------------------------------------------------------------------------
# Head items. Reference head (anchors.DEFAULT_REF): ear landmarks 0.15 apart, eye landmarks 0.063 apart, the eye
# line 0.015 above and 0.085 in front of the ear landmarks; eye line to crown EYE_TO_CROWN.

EYE_TO_CROWN = 0.115
BEANIE_BRIM = 0.40  # brim above the eye line, as a fraction of the eye-to-crown distance (just above the brows)


def build_glasses():
    """Round glasses in the `eyes` frame: origin mid-eyes (nose bridge), lens centres on the eye landmarks
    (x = ±eye_width/2, slightly in front of them), bridge over the nose, temples back to the ears."""
    frame_mat = _pbr((0.1, 0.1, 0.1), 0.7, 0.35)
    lens_mat = _pbr((0.08, 0.1, 0.12), 0.0, 0.05)
    ref = DEFAULT_REF
    dx, r, zf = ref["eye_width"] / 2, 0.021, 0.010
    ear_x, ear_y, ear_z = ref["ear_width"] / 2, -ref["eye_height"], -ref["eye_depth"]
    pieces = [ring((-dx, 0.0, zf), r, 0.0025), ring((dx, 0.0, zf), r, 0.0025),
              rod((-dx + r, 0.005, zf + 0.002), (0.0, 0.007, zf + 0.003), 0.002),
              rod((0.0, 0.007, zf + 0.003), (dx - r, 0.005, zf + 0.002), 0.002)]
    for s in (-1, 1):
        hinge = (s * (dx + r + 0.002), 0.004, zf - 0.002)
        knee = (s * (ear_x + 0.002), ear_y + 0.012, ear_z + 0.005)  # over the ear
        tip = (s * (ear_x - 0.004), ear_y - 0.012, ear_z - 0.022)  # hooked down behind it
        pieces += [rod((s * (dx + r - 0.001), 0.002, zf), hinge, 0.0025), rod(hinge, knee, 0.002),
                   rod(knee, tip, 0.002)]
    lenses = [disc((-dx, 0.0, zf - 0.001), r - 0.001, 0.002), disc((dx, 0.0, zf - 0.001), r - 0.001, 0.002)]
    parts = {"frame": _with_material(trimesh.util.concatenate(pieces), frame_mat),
             "lenses": _with_material(trimesh.util.concatenate(lenses), lens_mat)}
    anchors = {"frame": "eyes", "lenses": "eyes"}
    meta = {"name": "Round glasses", "category": "eyewear", "covers": ["head"], "tint": {"lenses": False}}
    return parts, anchors, meta


def build_beanie():
    """Rib beanie in the `head` frame (origin mid-ears): an ellipsoidal dome over the crown, its folded cuff's
    lower edge BEANIE_BRIM of the eye-to-crown distance above the eye line, as wide as the skull at the ears."""
    ref = DEFAULT_REF
    y_eye = ref["eye_height"]
    yb = y_eye + BEANIE_BRIM * EYE_TO_CROWN  # brim
    top = y_eye + EYE_TO_CROWN + 0.012  # crown + knit + a little slack
    yc, W, D, zc = 0.045, 0.081, 0.106, -0.004  # widest level, half-width, half-depth, centre (skull + knit)
    H = top - yc
    cuff = 0.030
    a0 = math.asin((yb + cuff - yc) / H)
    ang = np.linspace(a0, math.pi / 2, 16)
    dome_y = yc + H * np.sin(ang)
    ys = np.concatenate([[yb, yb + 0.002], np.linspace(yb + 0.006, yb + cuff - 0.002, 4), [yb + cuff], dome_y[1:]])
    prof = lambda y: math.sqrt(max(0.0, 1 - ((y - yc) / H) ** 2))  # noqa: E731

    def grow(y):  # the cuff stands off the dome; its lower edge rolls in
        if y < yb + 0.001:
            return 0.002
        return 0.006 if y <= yb + cuff + 1e-9 else 0.0

    half_w = lambda y: W * prof(y) + grow(y) + 0.0015  # noqa: E731
    half_d = lambda y: D * prof(y) + grow(y) + 0.0015  # noqa: E731
    mat = _pbr((0.6, 0.12, 0.1), 0.0, 0.95)  # the rib knit itself is the catalogue's fabric (materials.py)
    dome = tube(ys, half_w, half_d, n_theta=48, z0=zc)
    # the folded cuff reads a little darker (double layer, its fold in shadow); the rolled-in lower edge darkest
    row_y = dome.vertices[:, 1]
    set_shade(dome, np.where(row_y < yb + 0.0015, 0.7, np.where(row_y <= yb + cuff + 1e-9, 0.88, 1.0)))
    # the wearer's skull as a holdout (shade alpha 0): hides the inside of the back of the beanie, which a camera
    # below the head would otherwise see through the opening, over the forehead
    skull = trimesh.creation.icosphere(subdivisions=3)
    skull.apply_scale((W - 0.005, H - 0.010, D - 0.006))
    skull.apply_translation((0.0, yc, zc))
    skull = set_shade(skull, np.zeros((len(skull.vertices), 4)))
    parts = {"beanie": _with_material(dome, mat), "head_holdout": _with_material(skull, _pbr((0, 0, 0), 0.0, 1.0))}
    meta = {"name": "Rib beanie", "category": "headwear", "covers": ["head"], "tint": {"head_holdout": False}}
    return parts, {"beanie": "head", "head_holdout": "head"}, meta


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
    tmp.write_bytes(scene.export(file_type="glb", include_normals=False))  # smooth normals made on load
    tint = meta.pop("tint")
    anchor_meta = {"format": ANCHOR_FORMAT, "units": "m", "ref": dict(DEFAULT_REF), "default_anchor": "torso",
                   "parts": [{"node": n, "anchor": anchors[n], "tint": tint.get(n, True)} for n in parts], **meta}
    out.with_suffix(".json").write_text(json.dumps(anchor_meta, indent=1))
    tmp.replace(out)
