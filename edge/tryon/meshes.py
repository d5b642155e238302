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
