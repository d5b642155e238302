"""Garments: the built-in procedural catalogue (GLB + anchor metadata) and loading of any GLB/OBJ + anchor JSON.

A garment model is a GLB/OBJ whose nodes are *parts*; each part is authored in the canonical frame of one
body anchor (see `anchors.ANCHORS`, docs/TRYON.md). The anchor JSON next to the model (`name.json` for `name.glb`)
names each part's anchor, the reference body measurements the model was made for, and which body
segments it covers (uncovered arms/hands can occlude it).
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.core.paths import cache_dir as project_cache_dir
from edge.tryon.anchors import ANCHOR_FORMAT, ANCHORS, DEFAULT_REF
from edge.tryon.materials import FABRICS, fabric_maps, fabric_spec

log = logging.getLogger(__name__)

BUILTIN_CATALOG = Path(__file__).with_name("catalog") / "catalog.json"
BUILDER_VERSION = 7  # bump when a builder's geometry changes (cache key)
HEX_RE = re.compile(r"^#?[0-9a-fA-F]{6}$")  # a swatch colour: #rrggbb


class CatalogError(ValueError):
    """The catalogue or a garment's anchor metadata is invalid."""


@dataclass
class Colour:
    name: str
    hex: str

    @property
    def rgba(self) -> tuple[float, float, float, float]:
        h = self.hex.lstrip("#")
        return int(h[0:2], 16) / 255, int(h[2:4], 16) / 255, int(h[4:6], 16) / 255, 1.0


@dataclass
class GarmentPart:
    """One rigid piece of a garment, in its anchor's canonical frame."""

    name: str
    anchor: str
    mesh: object  # trimesh.Trimesh
    base_color: tuple[float, float, float, float]
    metallic: float
    roughness: float
    texture: np.ndarray | None = None  # HxWx3/4 uint8 base-colour texture (needs mesh UVs)
    tint: bool = True  # the colour picker recolours this part
    fabric: str = ""  # materials.FABRICS name when the fabric's maps are applied (apply_fabric)
    normal_texture: np.ndarray | None = None  # HxWx3 uint8 tangent-space normal map (fabric weave + folds)
    rough_texture: np.ndarray | None = None  # HxWx3 uint8 roughness multiplier (R = G), B = 1


@dataclass
class Garment:
    sku: str
    name: str
    category: str
    parts: list[GarmentPart]
    ref: dict[str, float]
    covers: set[str]
    sizes: list[str] = field(default_factory=list)
    colours: list[Colour] = field(default_factory=list)
    size_chart: dict[str, tuple[float, float]] = field(default_factory=dict)  # size -> shoulder width range (m)
    source: str = ""

    def colour(self, name: str = "") -> Colour | None:
        for c in self.colours:
            if c.name == name:
                return c
        return self.colours[0] if self.colours else None

    @property
    def anchors(self) -> set[str]:
        return {p.anchor for p in self.parts}


@dataclass
class CatalogEntry:
    sku: str
    name: str
    category: str
    sizes: list[str]
    colours: list[Colour]
    size_chart: dict[str, tuple[float, float]]
    builder: str = ""
    model: str = ""  # path to a GLB/OBJ (relative to the catalogue file)
    anchors: str = ""  # path to the anchor JSON; default: model path with .json
    fabric: str = ""  # materials.FABRICS name of the garment's tint parts ("" = the model's own materials)

    def to_public(self) -> dict:
        """What the mirror page needs (no file paths)."""
        return {"sku": self.sku, "name": self.name, "category": self.category, "sizes": self.sizes,
                "colours": [{"name": c.name, "hex": c.hex} for c in self.colours]}


class Catalog:
    """Garment catalogue: entries from JSON, models built (procedural) or loaded (files) on demand, cached."""

    def __init__(self, path: str | Path = "", cache_dir: str | Path = ""):
        self.path = Path(path) if path else BUILTIN_CATALOG
        self.cache_dir = Path(cache_dir) if cache_dir else project_cache_dir() / "tryon" / "garments"
        self.entries = _parse_catalog(self.path)
        self._loaded: dict[str, Garment] = {}
        self.broken: dict[str, str] = {}  # sku -> why its model did not load (not retried)

    def skus(self) -> list[str]:
        """SKUs in catalogue order, without those whose model failed to load."""
        return [s for s in self.entries if s not in self.broken]

    def entry(self, sku: str) -> CatalogEntry:
        try:
            return self.entries[sku]
        except KeyError:
            raise CatalogError(f"unknown SKU {sku!r}; catalogue {self.path} has {sorted(self.entries)}") from None

    def load(self, sku: str) -> Garment:
        """The garment for `sku` (built into the cache on first use). CatalogError if its model does not load; that
        SKU is then `broken` and is not tried again."""
        if sku in self.broken:
            raise CatalogError(self.broken[sku])
        if sku not in self._loaded:
            e = self.entry(sku)
            try:
                self._loaded[sku] = self._load(e)
            except Exception as ex:  # noqa: BLE001 - trimesh raises many kinds on a corrupt or missing file
                msg = str(ex) if isinstance(ex, CatalogError) else (
                    f"{self.path}: {sku}: cannot load its model ({type(ex).__name__}: {ex})")
                self.broken[sku] = msg
                log.error("garment %s is unavailable: %s", sku, msg)
                raise CatalogError(msg) from ex
        return self._loaded[sku]

    def mark_broken(self, sku: str, why: str) -> None:
        """Leave `sku` out from now on, as if its model had not loaded (it loaded but cannot be shown: `why`)."""
        if sku not in self.broken:
            self.broken[sku] = why
            self._loaded.pop(sku, None)
            log.error("garment %s is unavailable: %s", sku, why)

    def _load(self, e: CatalogEntry) -> Garment:
        if e.builder:
            model = self.build(e)
            anchors = model.with_suffix(".json")
        else:
            model = (self.path.parent / e.model).resolve()
            anchors = (self.path.parent / e.anchors).resolve() if e.anchors else model.with_suffix(".json")
        g = load_garment(model, anchors)
        g.sku, g.name, g.category = e.sku, e.name, e.category
        g.sizes, g.colours, g.size_chart = e.sizes, e.colours, e.size_chart
        if e.fabric:
            apply_fabric(g, e.fabric)
        return g

    def build(self, e: CatalogEntry) -> Path:
        """Build a procedural garment's GLB + anchor JSON into the cache (once per builder version)."""
        from edge.tryon import garment_builders  # noqa: PLC0415
        key = hashlib.sha1(f"{e.builder}:{BUILDER_VERSION}".encode()).hexdigest()[:10]
        out = self.cache_dir / f"{e.builder}-{key}.glb"
        if not (out.exists() and out.with_suffix(".json").exists()):
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            garment_builders.build_to(e.builder, out)
            log.info("built garment %s -> %s (%d bytes)", e.builder, out, out.stat().st_size)
        return out


def _parse_catalog(path: Path) -> dict[str, CatalogEntry]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as ex:
        raise CatalogError(f"{path}: cannot read catalogue: {ex}") from None
    if not isinstance(data, dict) or not isinstance(data.get("garments", []), list):
        raise CatalogError(f"{path}: expected an object with a 'garments' list")
    entries: dict[str, CatalogEntry] = {}
    for i, g in enumerate(data.get("garments", [])):
        if not isinstance(g, dict):
            raise CatalogError(f"{path}: garments[{i}]: expected an object, got {g!r}"[:300])
        try:
            sku = g["sku"]
            if not isinstance(sku, str) or not sku:
                raise CatalogError(f"{path}: garments[{i}].sku: expected a non-empty string, got {sku!r}")
            if sku in entries:
                raise CatalogError(f"{path}: garments[{i}]: duplicate SKU {sku!r}")
            if bool(g.get("builder")) == bool(g.get("model")):
                raise CatalogError(f"{path}: garments[{i}] ({sku}): give exactly one of 'builder' or 'model'")
            chart = _size_chart(g.get("size_chart", {}), f"{path}: garments[{i}].size_chart ({sku})")
            fabric = g.get("fabric", "")
            if not isinstance(fabric, str) or (fabric and fabric not in FABRICS):
                raise CatalogError(f"{path}: garments[{i}].fabric ({sku}): unknown fabric {fabric!r}; use one of "
                                   f"{sorted(FABRICS)} (or leave the key out to keep the model's own materials)")
            colours = [Colour(c["name"], c["hex"]) for c in g.get("colours", [])]
            for c in colours:
                if not isinstance(c.name, str) or not c.name or not isinstance(c.hex, str) or not HEX_RE.match(c.hex):
                    raise CatalogError(f"{path}: garments[{i}].colours ({sku}): expected a name and a hex "
                                       f"'#rrggbb', got {c.name!r}: {c.hex!r}")
                c.hex = "#" + c.hex.lstrip("#")  # the page uses it as a CSS colour
            entries[sku] = CatalogEntry(
                sku=sku, name=g.get("name", sku), category=g.get("category", "top"), sizes=list(g.get("sizes", [])),
                colours=colours, size_chart=chart,
                builder=g.get("builder", ""), model=g.get("model", ""), anchors=g.get("anchors", ""), fabric=fabric)
        except (KeyError, TypeError) as ex:
            what = f"missing key {ex}" if isinstance(ex, KeyError) else f"wrong type ({ex})"
            raise CatalogError(f"{path}: garments[{i}]: {what}") from None
    if not entries:
        raise CatalogError(f"{path}: no garments")
    return entries


def _size_chart(chart, where: str) -> dict[str, tuple[float, float]]:
    """{size: (lo, hi)} shoulder widths in metres, lo < hi; CatalogError naming `where` otherwise."""
    if not isinstance(chart, dict):
        raise CatalogError(f"{where}: expected {{size: [lo, hi]}}, got {chart!r}"[:300])
    out = {}
    for k, v in chart.items():
        try:
            if not (isinstance(v, list) and len(v) == 2):
                raise TypeError
            lo, hi = float(v[0]), float(v[1])
        except (TypeError, ValueError):
            raise CatalogError(f"{where}[{k!r}]: expected [lo, hi] in metres, got {v!r}"[:300]) from None
        if not lo < hi:
            raise CatalogError(f"{where}[{k!r}]: expected lo < hi, got {v!r}")
        out[k] = (lo, hi)
    return out


def apply_fabric(garment: Garment, fabric: str) -> None:
    """Give the garment's tint parts (its cloth) the fabric's maps and roughness, in place. Their UVs (metres of
    fabric; planar for parts without UVs) become tile coordinates. A part with its own base-colour texture (a
    print) keeps its material."""
    from edge.tryon.meshes import planar_uv  # noqa: PLC0415

    spec, maps = fabric_spec(fabric), fabric_maps(fabric)
    for p in garment.parts:
        if not p.tint or p.fabric:
            continue
        if p.texture is not None:
            log.info("%s: part %s keeps its own base-colour texture (fabric %s not applied)", garment.sku, p.name,
                     fabric)
            continue
        uv = getattr(p.mesh.visual, "uv", None)
        uv_m = planar_uv(p.mesh.vertices) if uv is None or len(uv) != len(p.mesh.vertices) else np.asarray(uv)
        _set_uv(p.mesh, uv_m / spec.tile_m)
        p.fabric, p.roughness = fabric, spec.roughness
        p.texture, p.normal_texture, p.rough_texture = maps.albedo, maps.normal, maps.rough_metal


def _set_uv(mesh, uv: np.ndarray) -> None:
    import trimesh  # noqa: PLC0415
    mat = getattr(mesh.visual, "material", None)
    mesh.visual = trimesh.visual.TextureVisuals(uv=np.asarray(uv, np.float64), material=mat)


def load_anchor_meta(path: Path) -> dict:
    """Read and check an anchor JSON (see docs/TRYON.md, 'Garment format')."""
    try:
        meta = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as ex:
        raise CatalogError(f"{path}: cannot read anchor metadata: {ex}") from None
    if meta.get("format") != ANCHOR_FORMAT:
        raise CatalogError(f"{path}: 'format' must be {ANCHOR_FORMAT!r}")
    default = meta.get("default_anchor", "torso")
    for a in [default] + [p.get("anchor", default) for p in meta.get("parts", [])]:
        if a not in ANCHORS:
            raise CatalogError(f"{path}: unknown anchor {a!r}; use one of {ANCHORS}")
    return meta


def load_garment(model_path: str | Path, anchors_path: str | Path | None = None) -> Garment:
    """Load a GLB/OBJ + anchor JSON into a Garment (parts in their anchor frames, PBR material values)."""
    import trimesh  # noqa: PLC0415

    from edge.tryon.meshes import front_first, weld_seam_normals  # noqa: PLC0415
    model_path = Path(model_path)
    meta = load_anchor_meta(Path(anchors_path) if anchors_path else model_path.with_suffix(".json"))
    scene = trimesh.load(str(model_path), force="scene")
    by_name = {p["node"]: p for p in meta.get("parts", []) if "node" in p}
    default_anchor = meta.get("default_anchor", "torso")
    parts = []
    for node in scene.graph.nodes_geometry:
        transform, geom_name = scene.graph[node]
        mesh = scene.geometry[geom_name].copy()
        mesh.apply_transform(transform)
        front_first(mesh)  # the side facing the camera is drawn first (early depth test culls the back)
        if getattr(mesh.visual, "uv", None) is not None:
            weld_seam_normals(mesh)  # vertices split for their UVs keep one smooth normal
        spec = by_name.get(node) or by_name.get(geom_name) or {}
        parts.append(_part_from_mesh(node, mesh, spec.get("anchor", default_anchor), bool(spec.get("tint", True))))
    if not parts:
        raise CatalogError(f"{model_path}: no meshes")
    ref = {**DEFAULT_REF, **meta.get("ref", {})}
    covers = set(meta.get("covers", [])) or {p.anchor for p in parts}
    return Garment(sku=meta.get("sku", model_path.stem), name=meta.get("name", model_path.stem),
                   category=meta.get("category", "top"), parts=parts, ref=ref, covers=covers,
                   source=str(model_path))


def _part_from_mesh(name: str, mesh, anchor: str, tint: bool) -> GarmentPart:
    mat = getattr(mesh.visual, "material", None)
    if mat is not None and hasattr(mat, "to_pbr") and not hasattr(mat, "metallicFactor"):
        mat = mat.to_pbr()
    base, metallic, rough, tex = (0.8, 0.8, 0.8, 1.0), 0.0, 0.8, None
    if mat is not None:
        if getattr(mat, "baseColorFactor", None) is not None:
            f = np.asarray(mat.baseColorFactor, float)
            base = tuple((f / 255.0 if f.max() > 1.0 or f.dtype.kind in "ui" else f).tolist())
        metallic = float(mat.metallicFactor) if getattr(mat, "metallicFactor", None) is not None else 0.0
        rough = float(mat.roughnessFactor) if getattr(mat, "roughnessFactor", None) is not None else 0.8
        img = getattr(mat, "baseColorTexture", None)
        if img is not None and getattr(mesh.visual, "uv", None) is not None:
            tex = np.asarray(img.convert("RGB"))
    return GarmentPart(name=name, anchor=anchor, mesh=mesh, base_color=base, metallic=metallic, roughness=rough,
                       texture=tex, tint=tint)
