"""720p rendering (issue 14 item 6): rendering only the garment's projected bounding box gives the same layer as the
whole frame; the adaptive render scale moves with the measured render time (real EGL renders)."""
from __future__ import annotations

import numpy as np
import pytest

from edge.tryon.fitting import BodyFitter
from edge.tryon.intrinsics import Intrinsics
from edge.tryon.renderer import ADAPT_HOLD, GarmentRenderer
from devtools.mannequin import render_person

INTR = Intrinsics.from_hfov(1280, 720, 60.0)


def _full(out):
    a = np.zeros(out.frame_size + (4,), np.uint8)
    d = np.zeros(out.frame_size, np.float32)
    x, y, w, h = out.bbox
    a[y:y + h, x:x + w] = out.rgba
    d[y:y + h, x:x + w] = out.depth
    return a, d


@pytest.mark.parametrize("sku,kw,scale", [("TEE-001", {"yaw_deg": 25}, 1.0), ("JKT-002", {"cross_right_forearm": True}, 1.0),
                                          ("BNE-004", {}, 1.0), ("TEE-001", {"x_offset": 0.5}, 0.5)])
def test_cropped_render_matches_the_whole_frame(catalog, tryon_cache, sku, kw, scale):
    g = catalog.load(sku)
    p = render_person(INTR, **kw)
    fit = BodyFitter(INTR, smoothing=None).fit(p.person_pose(), 0.0, g.ref)
    outs = []
    for crop in (False, True):
        r = GarmentRenderer(INTR, shader_cache_dir=tryon_cache / "shaders", render_scale=scale, crop=crop)
        try:
            r.set_garment(g)
            outs.append(r.render(fit.poses))
            if crop:
                box = r.projected_box(fit.poses)
        finally:
            r.close()
    full, cropped = outs
    assert cropped.crop[2] * cropped.crop[3] < 0.6 * 1280 * 720, "only the garment's region was rendered"
    x, y, w, h = full.bbox
    assert w > 0 and box[0] <= x + 1 and box[1] <= y + 1 and box[2] >= x + w - 1 and box[3] >= y + h - 1, \
        "the projected box contains the garment"
    (a0, d0), (a1, d1) = _full(full), _full(cropped)
    assert abs(cropped.bbox[0] - x) <= 1 and abs(cropped.bbox[2] - w) <= 2
    if scale == 1.0:  # same pixel grid: the same pixels up to float rounding of the shifted projection
        same = (np.abs(a0.astype(int) - a1).max(-1) <= 2).mean()
        assert same > 0.999
        cov = (a0[..., 3] > 0) & (a1[..., 3] > 0)
        assert np.abs(d0[cov] - d1[cov]).max() < 1e-3
    else:  # another grid at half scale (the crop starts at a whole frame pixel): the same coverage
        c0, c1 = a0[..., 3] > 127, a1[..., 3] > 127
        assert (c0 ^ c1).sum() < 0.03 * c0.sum()


def test_garment_out_of_frame_renders_nothing(catalog, tryon_cache):
    g = catalog.load("TEE-001")
    fit = BodyFitter(INTR, smoothing=None).fit(render_person(INTR).person_pose(), 0.0, g.ref)
    away = {k: v.copy() for k, v in fit.poses.items()}
    for v in away.values():
        v[0, 3] += 5.0  # 5 m to the side: outside the field of view
    r = GarmentRenderer(INTR, shader_cache_dir=tryon_cache / "shaders", crop=True)
    try:
        r.set_garment(g)
        assert not r.render(fit.poses).empty
        assert r.render(away).empty
    finally:
        r.close()


def test_adaptive_scale_and_material_level_hold_the_budget(catalog, tryon_cache):
    g = catalog.load("TEE-001")
    p = render_person(INTR)
    fit = BodyFitter(INTR, smoothing=None).fit(p.person_pose(), 0.0, g.ref)
    r = GarmentRenderer(INTR, shader_cache_dir=tryon_cache / "shaders", render_scale=0.9, min_scale=0.5,
                        crop=True, adaptive_scale=True, budget_ms=0.01, material_lod=True)  # no render is this fast
    try:
        r.set_garment(g)
        mats = [prim.material for node, _ in r._nodes for prim in node.mesh.primitives
                if prim.material.normalTexture is not None]
        assert mats, "the fabric parts start with all their maps"
        seen = []
        for _ in range(60):
            r.render(fit.poses)
            seen.append((r.scale, r.material_level))  # both as set after this frame's timing
        scales = [sc for sc, _ in seen]
        assert r.min_scale == pytest.approx(0.5 * 480 / 720), "min_scale holds at 480 lines"
        assert scales[0] == 0.9 and scales[-1] == r.min_scale, "an impossible budget walks the scale to the floor"
        assert r.render(fit.poses).scale == r.min_scale
        assert all(b <= a for a, b in zip(scales, scales[1:]))
        changes = [i for i in range(1, len(seen)) if seen[i] != seen[i - 1]]
        assert all(b - a >= ADAPT_HOLD for a, b in zip(changes, changes[1:])), "changes wait for new timings"
        assert max(lv for sc, lv in seen if sc > r.min_scale) == 0, "the maps go only once the scale is at its floor"
        assert r.material_level == 2 and all(m.normalTexture is None and m.baseColorTexture is None for m in mats)
        out = r.render(fit.poses)
        assert out.rgba.shape[:2] == (out.bbox[3], out.bbox[2])  # upsampled to frame pixels
        r.budget_ms = 1e6  # every render is far under this: the maps come back first, then the scale
        back = []
        for _ in range(240):
            r.render(fit.poses)
            back.append((r.scale, r.material_level))
        assert back[-1] == (0.9, 0)
        first_up = next(i for i, (sc, _) in enumerate(back) if sc > r.min_scale)
        assert all(lv == 0 for _, lv in back[first_up:]), "detail is restored before the scale goes up"
        assert all(m.normalTexture is not None and m.metallicRoughnessTexture is not None for m in mats)
    finally:
        r.close()


def test_material_lod_off_keeps_the_maps(catalog, tryon_cache):
    g = catalog.load("TEE-001")
    fit = BodyFitter(INTR, smoothing=None).fit(render_person(INTR).person_pose(), 0.0, g.ref)
    r = GarmentRenderer(INTR, shader_cache_dir=tryon_cache / "shaders", render_scale=0.6, crop=True,
                        adaptive_scale=True, budget_ms=0.01, material_lod=False)
    try:
        r.set_garment(g)
        for _ in range(40):
            r.render(fit.poses)
        assert r.scale == r.min_scale and r.material_level == 0
    finally:
        r.close()
