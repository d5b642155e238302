"""Garment catalogue: built GLBs carry PBR materials and anchor metadata; user GLB/OBJ + anchor JSON load alike."""
from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import trimesh

from edge.tryon.anchors import ANCHOR_FORMAT, ANCHORS
from edge.tryon.garments import Catalog, CatalogError, load_garment


def _gltf_json(glb: bytes) -> dict:
    assert glb[:4] == b"glTF"
    length, ctype = struct.unpack("<I4s", glb[12:20])
    assert ctype == b"JSON"
    return json.loads(glb[20:20 + length])


def test_builtin_catalogue_has_at_least_three_garments_with_pbr_glbs(catalog):
    assert len(catalog.skus()) >= 3
    textured = 0
    for sku in catalog.skus():
        e = catalog.entry(sku)
        assert e.sizes and e.colours
        glb = catalog.build(e)
        assert glb.stat().st_size < 300_000
        doc = _gltf_json(glb.read_bytes())
        for m in doc["materials"]:
            pbr = m["pbrMetallicRoughness"]
            assert {"baseColorFactor", "metallicFactor", "roughnessFactor"} <= set(pbr)
        meta = json.loads(glb.with_suffix(".json").read_text())
        assert meta["format"] == ANCHOR_FORMAT
        g = catalog.load(sku)
        assert g.parts and g.anchors <= set(ANCHORS)
        textured += any(p.texture is not None for p in g.parts)  # fabric maps are applied on load (materials.py)
        assert {p.name for p in g.parts} == {p["node"] for p in meta["parts"]}
    assert textured >= 1


def test_tee_has_sleeves_on_the_arms_and_jacket_covers_forearms(catalog):
    tee = catalog.load("TEE-001")
    assert {"torso", "left_upper_arm", "right_upper_arm"} <= tee.anchors
    jacket = catalog.load("JKT-002")
    assert {"left_forearm", "right_forearm"} <= jacket.anchors and "left_forearm" in jacket.covers
    metal = [p for p in jacket.parts if p.name == "buttons"][0]
    assert metal.metallic > 0.5 and not metal.tint


def test_user_obj_with_anchor_json_loads_the_same_way(tmp_path):
    box = trimesh.creation.box(extents=(0.2, 0.1, 0.05))
    box.apply_translation((0, 0.12, 0.05))
    obj = tmp_path / "visor.obj"
    box.export(obj)
    (tmp_path / "visor.json").write_text(json.dumps({
        "format": ANCHOR_FORMAT, "name": "Visor", "default_anchor": "head",
        "ref": {"ear_width": 0.16}, "parts": []}))
    g = load_garment(obj)
    assert [p.anchor for p in g.parts] == ["head"] and g.ref["ear_width"] == 0.16
    np.testing.assert_allclose(g.parts[0].mesh.bounds.mean(0), (0, 0.12, 0.05), atol=1e-6)
    cat = tmp_path / "catalog.json"
    cat.write_text(json.dumps({"garments": [{"sku": "VIS-1", "name": "Visor", "model": "visor.obj",
                                             "sizes": ["one size"], "colours": [{"name": "blue", "hex": "#0000ff"}]}]}))
    loaded = Catalog(cat, cache_dir=tmp_path / "cache").load("VIS-1")
    assert loaded.sku == "VIS-1" and loaded.colour().rgba == (0.0, 0.0, 1.0, 1.0)


def test_user_glb_roundtrip_keeps_parts_and_pbr(tmp_path, catalog):
    src = catalog.build(catalog.entry("GLS-003"))
    g = load_garment(src)
    lenses = [p for p in g.parts if p.name == "lenses"][0]
    assert lenses.anchor == "eyes" and not lenses.tint and lenses.roughness == pytest.approx(0.05)


def test_bad_anchor_metadata_is_a_clear_error(tmp_path):
    trimesh.creation.box().export(tmp_path / "x.glb")
    (tmp_path / "x.json").write_text(json.dumps({"format": ANCHOR_FORMAT, "default_anchor": "elbow"}))
    with pytest.raises(CatalogError, match="unknown anchor 'elbow'"):
        load_garment(tmp_path / "x.glb")
    with pytest.raises(CatalogError, match="unknown SKU"):
        Catalog(cache_dir=tmp_path).entry("NOPE")
