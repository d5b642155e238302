"""The fast path's fixed light-loop shaders render pixel-identically to pyrender's stock shaders (fixed rig)."""
from __future__ import annotations

import numpy as np
import pytest

from edge.tryon.fitting import BodyFitter
from edge.tryon.intrinsics import Intrinsics
from devtools.mannequin import render_person
from edge.tryon.renderer import GarmentRenderer
from edge.tryon.shaders import fixed_light_shader_dir, stock_shader_dir


def test_fixed_shader_differs_only_in_loop_bounds(tryon_cache):
    d = fixed_light_shader_dir(tryon_cache / "shaders")
    stock = (stock_shader_dir() / "mesh.frag").read_text().splitlines()
    fixed = (d / "mesh.frag").read_text().splitlines()
    diff = [(a.strip(), b.strip()) for a, b in zip(stock, fixed) if a != b]
    assert len(stock) == len(fixed) and len(diff) == 3
    assert {b for _, b in diff} == {"for (int i = 0; i < 1; i++) {", "for (int i = 0; i < 0; i++) {"}


@pytest.mark.parametrize("msaa", [0, 4])
def test_fixed_shaders_pixel_identical_to_stock(catalog, tryon_cache, msaa):
    intr = Intrinsics.from_hfov(320, 240, 60.0)
    fast = GarmentRenderer(intr, msaa=msaa, fixed_light_shaders=True, shader_cache_dir=tryon_cache / "shaders")
    stock = GarmentRenderer(intr, msaa=msaa, fixed_light_shaders=False)
    try:
        for sku, kw in (("TEE-001", {"yaw_deg": 20}), ("BNE-004", {}), ("JKT-002", {"cross_right_forearm": True})):
            g = catalog.load(sku)
            p = render_person(intr, **kw)
            fit = BodyFitter(intr, smoothing=None).fit(p.person_pose(), 0.0, g.ref)
            outs = []
            for r in (fast, stock):
                r.set_garment(g)
                outs.append(r.render(fit.poses))
            a, b = outs
            assert a.bbox == b.bbox and a.bbox[2] > 0
            assert np.array_equal(a.rgba, b.rgba), f"{sku}: max diff {np.abs(a.rgba.astype(int) - b.rgba).max()}"
            assert np.array_equal(a.depth, b.depth)
    finally:
        fast.close()
        stock.close()
