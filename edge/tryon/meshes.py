"""Procedural garment geometry (trimesh): tubes with elliptical cross-sections, rims, discs.

All shapes are built in an anchor's canonical frame (metres, +y up, +z forward, +x the wearer's left).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import trimesh


def tube(ys: np.ndarray, half_w: Callable, half_d: Callable, n_theta: int = 48, z0: Callable | float = 0.0,
         x0: Callable | float = 0.0) -> trimesh.Trimesh:
    """Open tube along y with an elliptical cross-section (half_w(y) along x, half_d(y) along z); UVs in metres of
    fabric (grid_mesh), the seam at the back."""
    ys = np.asarray(ys, float)
    theta = np.linspace(-np.pi, np.pi, n_theta, endpoint=False) + np.pi / n_theta
    T, Y = np.meshgrid(theta, ys)
    a = np.vectorize(half_w)(Y) if callable(half_w) else np.full_like(Y, half_w)
    b = np.vectorize(half_d)(Y) if callable(half_d) else np.full_like(Y, half_d)
    zc = np.vectorize(z0)(Y) if callable(z0) else np.full_like(Y, z0)
    xc = np.vectorize(x0)(Y) if callable(x0) else np.full_like(Y, x0)
    return grid_mesh(np.stack([xc + a * np.sin(T), Y, zc + b * np.cos(T)], axis=-1))


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

SEAM_WELD_COS = 0.9  # coincident vertices more than ~50 degrees apart keep their own normals
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
    """Mesh from a (rows, cols, 3) grid of rings; `shade` (rows, cols) grey or (rows, cols, 4) RGBA in [0, 1].

    Carries UVs in metres of fabric (grid_uv). A closed grid gets its first column duplicated as a seam (the UVs
    jump there), with the smooth normals of the closed surface, so the seam shows no crease."""
    R, C, _ = points.shape
    m = trimesh.Trimesh(points.reshape(-1, 3), grid_faces(R, C, closed), process=False)
    sh = None if shade is None else np.asarray(shade, float).reshape(R, C, -1)
    if closed:
        normals = np.asarray(m.vertex_normals).reshape(R, C, 3)
        points = np.concatenate([points, points[:, :1]], 1)
        normals = np.concatenate([normals, normals[:, :1]], 1)
        sh = None if sh is None else np.concatenate([sh, sh[:, :1]], 1)
        m = trimesh.Trimesh(points.reshape(-1, 3), grid_faces(R, C + 1, closed=False),
                            vertex_normals=normals.reshape(-1, 3), process=False)
    m.visual = trimesh.visual.TextureVisuals(uv=grid_uv(points))
    if sh is not None:
        set_shade(m, sh.reshape(len(m.vertices), -1))
    return m


def grid_uv(points: np.ndarray) -> np.ndarray:
    """UVs in metres of fabric for a (rows, cols, 3) grid: u = arc length along each row from its middle column
    (the front centre of the builders' rings), v = arc length up each column from the first row. The weave runs
    along the rows and columns (grain vertical on tops and sleeves)."""
    du = np.linalg.norm(np.diff(points, axis=1), axis=-1)
    u = np.concatenate([np.zeros((points.shape[0], 1)), np.cumsum(du, 1)], 1)
    u -= u[:, points.shape[1] // 2: points.shape[1] // 2 + 1]
    dv = np.linalg.norm(np.diff(points, axis=0), axis=-1)
    v = np.concatenate([np.zeros((1, points.shape[1])), np.cumsum(dv, 0)], 0)
    return np.stack([u, v], -1).reshape(-1, 2)


def weld_seam_normals(mesh: trimesh.Trimesh) -> np.ndarray:
    """Smooth vertex normals with the vertices that were split only for their UVs (same position, normals within
    ~50 degrees) sharing one normal, so a texture seam shows no crease; sets and returns mesh.vertex_normals."""
    n = np.asarray(mesh.vertex_normals, float)
    _, inv = np.unique(np.round(np.asarray(mesh.vertices) * 1e6).astype(np.int64), axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    acc = np.zeros((inv.max() + 1, 3))
    np.add.at(acc, inv, n)
    out = acc[inv]
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    keep = np.einsum("ij,ij->i", out, n) < SEAM_WELD_COS  # a real crease (a collar on its neckline) stays sharp
    out[keep] = n[keep]
    mesh.vertex_normals = out
    return out


def front_first(mesh: trimesh.Trimesh) -> trimesh.Trimesh:
    """Reorder the faces so those facing +z (forward in every anchor frame: toward a mirror's camera) are drawn
    first: the back of the garment then fails the early depth test instead of being shaded and overdrawn (on
    llvmpipe about a third less render time with the fabric maps). In place; call before setting normals."""
    order = np.argsort(-np.asarray(mesh.face_normals)[:, 2], kind="stable")
    mesh.faces = np.asarray(mesh.faces)[order]
    return mesh


def planar_uv(vertices: np.ndarray) -> np.ndarray:
    """UVs in metres for a mesh without any: its vertices projected on the plane of its two longest box extents
    (small rigid parts such as eyewear frames)."""
    v = np.asarray(vertices, float)
    ext = np.ptp(v, axis=0)
    a, b = np.argsort(ext)[::-1][:2]
    return np.stack([v[:, a] - v[:, a].min(), v[:, b] - v[:, b].min()], -1)


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
