"""Fabric materials (edge/tryon/materials.py): deterministic tileable maps, the catalogue's `fabric` field, UVs in
metres on the garment meshes, and real EGL renders showing the maps (albedo pattern, normal map, roughness) on the
fast path."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from edge.tryon import materials as M
from edge.tryon.fitting import BodyFitter
from edge.tryon.garments import Catalog, CatalogError
from edge.tryon.meshes import grid_mesh, weld_seam_normals
from devtools.mannequin import render_person


def _digest(maps: M.FabricMaps) -> str:
    return hashlib.sha256(maps.albedo.tobytes() + maps.normal.tobytes() + maps.rough_metal.tobytes()).hexdigest()


@pytest.mark.parametrize("name", ["jersey", "denim", "knit"])
def test_fabric_maps_are_deterministic_small_and_tileable(name):
    a = M.fabric_maps(name)
    M.fabric_maps.cache_clear()
    b = M.fabric_maps(name)
    assert _digest(a) == _digest(b), "same fabric, same bytes"
    assert a.albedo.shape == a.normal.shape == a.rough_metal.shape == (M.TEX_SIZE, M.TEX_SIZE, 3)
    assert a.nbytes <= 3 * 256 * 256 * 3
    n = M.decode_normal(a.normal)
    assert n[..., 2].min() > 0.3, "tangent-space normals face out of the surface"
    tilt = np.degrees(np.arccos(n[..., 2]))
    assert 3.0 < np.percentile(tilt, 95) < 45.0, "visible relief, not a crumpled surface"
    # tileable: the step across the tile's wrap (last column -> first) is no larger than the largest step between
    # neighbouring columns (rows) inside the tile, i.e. no seam
    for img in (a.albedo[..., 0].astype(float), n[..., 0], n[..., 1]):
        wrap_x = np.abs(img[:, 0] - img[:, -1]).mean()
        wrap_y = np.abs(img[0] - img[-1]).mean()
        assert wrap_x <= 1.05 * np.abs(np.diff(img, axis=1)).mean(0).max() + 1e-9
        assert wrap_y <= 1.05 * np.abs(np.diff(img, axis=0)).mean(1).max() + 1e-9
    rough = a.rough_metal[..., 0] / 255.0
    assert np.array_equal(a.rough_metal[..., 0], a.rough_metal[..., 1])  # R (pyrender) = G (glTF)
    assert 0.8 <= rough.min() and rough.max() <= 1.0
    # the albedo multiplies the swatch colour: mostly near 1, so the garment still shows its colour
    assert 0.8 < (a.albedo[..., 0] / 255.0).mean() <= 1.0


def test_fabrics_differ():
    digests = {name: _digest(M.fabric_maps(name)) for name in M.FABRICS}
    assert len(set(digests.values())) == len(digests)


def test_every_builtin_garment_has_a_fabric_with_maps(catalog):
    for sku in catalog.skus():
        e = catalog.entry(sku)
        assert e.fabric in M.FABRICS, sku
        g = catalog.load(sku)
        cloth = [p for p in g.parts if p.tint]
        assert cloth and all(p.fabric == e.fabric for p in cloth), sku
        for p in cloth:
            assert p.texture is not None and p.normal_texture is not None and p.rough_texture is not None
            uv = np.asarray(p.mesh.visual.uv)
            assert uv.shape == (len(p.mesh.vertices), 2) and np.isfinite(uv).all()
    assert {catalog.entry(s).fabric for s in catalog.skus()} >= {"jersey", "denim", "knit"}


def test_unknown_fabric_is_an_error_naming_the_key(tmp_path):
    cat = tmp_path / "catalog.json"
    cat.write_text(json.dumps({"garments": [{"sku": "X-1", "builder": "tee", "fabric": "silk",
                                             "colours": [{"name": "red", "hex": "#ff0000"}]}]}))
    with pytest.raises(CatalogError, match=r"garments\[0\]\.fabric .*unknown fabric 'silk'.*jersey"):
        Catalog(cat, cache_dir=tmp_path / "cache")


def test_grid_uvs_are_metres_of_fabric_and_the_seam_keeps_smooth_normals():
    r = 0.2
    th = np.linspace(-np.pi, np.pi, 48, endpoint=False) + np.pi / 48
    ys = np.linspace(0.0, 0.3, 7)
    P = np.stack([np.stack([r * np.sin(th), np.full_like(th, y), r * np.cos(th)], -1) for y in ys])
    m = grid_mesh(P)
    uv = np.asarray(m.visual.uv).reshape(len(ys), len(th) + 1, 2)
    circumference = 48 * 2 * r * np.sin(np.pi / 48)  # the polygon's perimeter
    np.testing.assert_allclose(uv[:, -1, 0] - uv[:, 0, 0], circumference, rtol=1e-9)
    np.testing.assert_allclose(uv[-1, :, 1], 0.3, rtol=1e-9)  # v = arc length up the column
    assert abs(uv[0, len(th) // 2, 0]) < 1e-12  # u = 0 at the front centre
    # the seam column duplicates the first one: same position, and (welded on load) the same normal
    v = np.asarray(m.vertices).reshape(len(ys), len(th) + 1, 3)
    np.testing.assert_allclose(v[:, 0], v[:, -1])
    m2 = m.copy()
    m2.vertex_normals  # noqa: B018 - fresh per-face-fan normals differ at the seam ...
    n = weld_seam_normals(m2).reshape(len(ys), len(th) + 1, 3)
    np.testing.assert_allclose(n[:, 0], n[:, -1], atol=1e-9)  # ... welded, they agree
    np.testing.assert_allclose(n[3, 0], [np.sin(th[0]), 0, np.cos(th[0])], atol=0.02)


def _torso_pixels(out, p, intr):
    from edge.pose.types import LM
    import cv2
    uv = intr.project(p.cam)
    quad = uv[[LM["left_shoulder"], LM["right_shoulder"], LM["right_hip"], LM["left_hip"]]]
    c = quad.mean(0)
    m = np.zeros((intr.height, intr.width), np.uint8)
    cv2.fillConvexPoly(m, np.round(c + 0.6 * (quad - c)).astype(np.int32), 1)
    x, y, w, h = out.bbox
    full = np.zeros((intr.height, intr.width, 4), np.uint8)
    full[y:y + h, x:x + w] = out.rgba
    return full[m.astype(bool)]


def test_fabric_render_shows_weave_and_folds_and_keeps_the_colour(catalog, tryon_cache):
    from edge.tryon.intrinsics import Intrinsics
    from edge.tryon.renderer import GarmentRenderer

    intr = Intrinsics.from_hfov(1280, 720, 60.0)
    g = catalog.load("TEE-001")
    p = render_person(intr)
    fit = BodyFitter(intr, smoothing=None).fit(p.person_pose(), 0.0, g.ref)
    outs = {}
    for name, kw in (("flat", {"materials": False}), ("fabric", {}), ("no_normal_map", {})):
        r = GarmentRenderer(intr, shader_cache_dir=tryon_cache / "shaders", crop=True, **kw)
        try:
            r.set_garment(g)
            if name == "no_normal_map":
                for node, _ in r._nodes:
                    for prim in node.mesh.primitives:
                        if prim.material.normalTexture is not None:
                            prim.material.normalTexture = None
            outs[name] = r.render(fit.poses)
            if name == "fabric":  # the fast path: fabric parts carry all three maps, UVs uploaded
                torso = [n for n, _ in r._nodes if n.name == "torso"][0]
                mat = torso.mesh.primitives[0].material
                assert mat.baseColorTexture is not None and mat.normalTexture is not None
                assert mat.metallicRoughnessTexture is not None
                assert torso.mesh.primitives[0].texcoord_0 is not None
        finally:
            r.close()
    px = {k: _torso_pixels(o, p, intr) for k, o in outs.items()}
    assert all((v[:, 3] == 255).all() for v in px.values())

    def detail(v):  # pixel-to-pixel variation of the luminance over the torso (weave, creases)
        return float(np.abs(np.diff(v[:, :3].astype(float).mean(1))).mean())

    assert detail(px["fabric"]) > 1.5 * detail(px["flat"]), "the fabric maps add visible texture"
    assert detail(px["fabric"]) > 1.15 * detail(px["no_normal_map"]), "the normal map adds shading detail"
    # the swatch colour still reads: mean colour within 15 % of the flat material's, same hue order
    mf, mm = px["flat"][:, :3].astype(float).mean(0), px["fabric"][:, :3].astype(float).mean(0)
    np.testing.assert_allclose(mm, mf, rtol=0.15)
    assert np.argmax(mm) == np.argmax(mf) == 2  # navy: blue dominates (RGB order)
