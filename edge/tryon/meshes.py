"""Procedural garment geometry (trimesh): tubes with elliptical cross-sections, rims, discs.

All shapes are built in an anchor's canonical frame (metres, +y up, +z forward, +x the wearer's left).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import trimesh


def tube(ys: np.ndarray, half_w: Callable, half_d: Callable, n_theta: int = 48, z0: Callable | float = 0.0,
         x0: Callable | float = 0.0) -> trimesh.Trimesh:
    """Open tube along y with an elliptical cross-section (half_w(y) along x, half_d(y) along z), UVs in [0,1]."""
    ys = np.asarray(ys, float)
    theta = np.linspace(0.0, 2 * np.pi, n_theta + 1)  # duplicated seam column so UVs wrap cleanly
    T, Y = np.meshgrid(theta, ys)
    a = np.vectorize(half_w)(Y) if callable(half_w) else np.full_like(Y, half_w)
    b = np.vectorize(half_d)(Y) if callable(half_d) else np.full_like(Y, half_d)
    zc = np.vectorize(z0)(Y) if callable(z0) else np.full_like(Y, z0)
    xc = np.vectorize(x0)(Y) if callable(x0) else np.full_like(Y, x0)
    verts = np.stack([xc + a * np.sin(T), Y, zc + b * np.cos(T)], axis=-1).reshape(-1, 3)
    n_c = n_theta + 1
    i, j = np.meshgrid(np.arange(len(ys) - 1), np.arange(n_theta), indexing="ij")
    p00 = (i * n_c + j).ravel()
    p01 = (i * n_c + j + 1).ravel()
    p10 = ((i + 1) * n_c + j).ravel()
    p11 = ((i + 1) * n_c + j + 1).ravel()
    faces = np.concatenate([np.stack([p00, p01, p10], 1), np.stack([p01, p11, p10], 1)])
    span = ys.max() - ys.min() or 1.0
    uv = np.stack([T / (2 * np.pi), (Y - ys.min()) / span], axis=-1).reshape(-1, 2)
    m = trimesh.Trimesh(verts, faces, process=False)
    m.visual = trimesh.visual.TextureVisuals(uv=uv)
    return m


def ring(center, radius: float, minor: float, normal=(0, 0, 1), n_major: int = 32, n_minor: int = 8) -> trimesh.Trimesh:
    """Torus (a glasses rim) centred at `center` whose hole faces along `normal`."""
    m = trimesh.creation.torus(major_radius=radius, minor_radius=minor, major_sections=n_major,
                               minor_sections=n_minor)
    m.apply_transform(trimesh.geometry.align_vectors([0, 0, 1], normal))
    m.apply_translation(center)
    return m


def rod(p0, p1, radius: float, sections: int = 8) -> trimesh.Trimesh:
    """Cylinder between two points."""
    return trimesh.creation.cylinder(radius=radius, segment=np.array([p0, p1], float), sections=sections)


def disc(center, radius: float, thickness: float, normal=(0, 0, 1), sections: int = 32) -> trimesh.Trimesh:
    """Thin closed cylinder (a lens or a button)."""
    m = trimesh.creation.cylinder(radius=radius, height=thickness, sections=sections)
    m.apply_transform(trimesh.geometry.align_vectors([0, 0, 1], normal))
    m.apply_translation(center)
    return m


def smoothstep(e0: float, e1: float, x: float) -> float:
    t = min(max((x - e0) / (e1 - e0), 0.0), 1.0)
    return t * t * (3 - 2 * t)


# ---------------------------------------------------------------------------------------------------------------
# Lofted cloth surfaces: a grid of closed rings (rows) with a per-vertex shade.

SHADE_ATTR = "_shade"  # glTF custom vertex attribute (RGBA uint8): multiplies the lit colour; alpha 0 = holdout


def superellipse(theta: np.ndarray, p: float) -> tuple[np.ndarray, np.ndarray]:
    """(x, z) of a unit superellipse |x|^p + |z|^p = 1 at angle theta (0 = +z front, pi/2 = +x wearer's left)."""
    s, c = np.sin(theta), np.cos(theta)
    e = 2.0 / p
    return np.sign(s) * np.abs(s) ** e, np.sign(c) * np.abs(c) ** e


def grid_faces(n_rows: int, n_cols: int, closed: bool = True) -> np.ndarray:
    """Triangles of a row-major vertex grid; rows are rings (wrapping columns when closed).

    With rows going up (+y) and columns counter-clockwise seen from above (+z toward +x), normals point out."""
    nc = n_cols if closed else n_cols - 1
    i, j = np.meshgrid(np.arange(n_rows - 1), np.arange(nc), indexing="ij")
    j1 = (j + 1) % n_cols
    p00, p01 = i * n_cols + j, i * n_cols + j1
    p10, p11 = (i + 1) * n_cols + j, (i + 1) * n_cols + j1
    return np.concatenate([np.stack([p00, p01, p10], -1).reshape(-1, 3),
                           np.stack([p01, p11, p10], -1).reshape(-1, 3)])


def grid_mesh(points: np.ndarray, shade: np.ndarray | None = None, closed: bool = True) -> trimesh.Trimesh:
    """Mesh from a (rows, cols, 3) grid of rings; `shade` (rows, cols) grey or (rows, cols, 4) RGBA in [0, 1]."""
    R, C, _ = points.shape
    m = trimesh.Trimesh(points.reshape(-1, 3), grid_faces(R, C, closed), process=False)
    if shade is not None:
        set_shade(m, shade.reshape(R * C, -1))
    return m


def set_shade(mesh: trimesh.Trimesh, shade: np.ndarray) -> trimesh.Trimesh:
    """Store a per-vertex shade (grey (n,) / (n,1) or RGBA (n,4), 0..1) as the `_shade` vertex attribute."""
    s = np.asarray(shade, float)
    if s.ndim == 1:
        s = s[:, None]
    if s.shape[1] == 1:
        s = np.concatenate([np.repeat(s, 3, 1), np.ones((len(s), 1))], 1)
    mesh.vertex_attributes[SHADE_ATTR] = np.clip(np.round(s * 255), 0, 255).astype(np.uint8)
    return mesh


def vertex_shade(mesh) -> np.ndarray | None:
    """The mesh's per-vertex shade as float RGBA (n, 4), or None."""
    s = getattr(mesh, "vertex_attributes", {}).get(SHADE_ATTR) if hasattr(mesh, "vertex_attributes") else None
    if s is None or len(s) != len(mesh.vertices):
        return None
    s = np.asarray(s)
    s = s.astype(np.float32) / 255.0 if s.dtype.kind in "ui" else s.astype(np.float32)
    if s.ndim == 1:
        s = s[:, None]
    if s.shape[1] < 4:
        s = np.concatenate([np.repeat(s[:, :1], 3, 1), np.ones((len(s), 1), np.float32)], 1)
    return np.ascontiguousarray(s[:, :4])


def resample_rows(curves: np.ndarray, n: int, bias: float = 0.0) -> np.ndarray:
    """Resample per-column polylines (samples, cols, 3) at n arc-length fractions shared by all columns.

    bias > 0 packs rows toward the middle of the curve (a shoulder's corner)."""
    seg = np.linalg.norm(np.diff(curves, axis=0), axis=-1)
    s = np.concatenate([np.zeros((1, curves.shape[1])), np.cumsum(seg, 0)])
    s /= np.maximum(s[-1:], 1e-12)
    f = np.linspace(0.0, 1.0, n)
    if bias:
        f = f - bias * np.sin(2 * np.pi * f) / (2 * np.pi)
    out = np.empty((n, curves.shape[1], 3))
    for j in range(curves.shape[1]):
        for k in range(3):
            out[:, j, k] = np.interp(f, s[:, j], curves[:, j, k])
    return out


def bump(x, lo: float, hi: float, edge: float):
    """1 inside [lo, hi], smoothly 0 outside (ramps `edge` wide)."""
    x = np.asarray(x, float)
    t0 = np.clip((x - (lo - edge)) / edge, 0, 1)
    t1 = np.clip(((hi + edge) - x) / edge, 0, 1)
    return (t0 * t0 * (3 - 2 * t0)) * (t1 * t1 * (3 - 2 * t1))
