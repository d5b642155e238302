"""Procedural fabric materials: tileable albedo pattern, tangent-space normal map (weave + folds) and roughness.

Everything is generated here from fixed seeds (no third-party textures): the same fabric gives the same bytes on
every device. A fabric is one square tile of `FabricSpec.tile_m` metres; garment UVs are in metres of fabric
(meshes.grid_uv) and are divided by the tile size when the garment is loaded (`apply_fabric`), so a weave has
its real size on every garment. Maps follow glTF (baseColorTexture sRGB multiplied by the colour factor,
normalTexture tangent space with +y = +v, OpenGL convention); the roughness map carries the roughness
multiplier in its R and G channels (glTF reads G, pyrender 0.1.45 reads R) and 1 in B (the part's metallic factor
applies unchanged in glTF; pyrender reads metallic from G, i.e. the factor times 0.8..1).

Tiling: every pattern is a periodic function of the tile (sums of integer-frequency cosines or noise filtered in
the Fourier domain), so tiles join without seams; mipmaps (made on upload) average the sub-pixel weave away at a
distance, as a real weave disappears at 2 m.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

TEX_SIZE = 256  # texels per tile side
WEAVE_TILT_DEG = 18.0  # 95th-percentile surface tilt of a weave of depth 1
FOLD_TILT_DEG = 10.0  # ... of folds of depth 1


@dataclass(frozen=True)
class FabricSpec:
    """A fabric: how big one tile is, its roughness, and the strength of each pattern component."""

    name: str
    tile_m: float  # side of one texture tile in metres of fabric
    roughness: float  # roughness factor (the map multiplies it by 0.8..1); the part keeps its metallic factor
    weave: str = "jersey"  # weave generator: jersey | twill | rib | smooth
    weave_depth: float = 1.0  # normal strength of the weave relief
    fold_depth: float = 1.0  # normal strength of the fold/crease relief
    fold_wavelength_m: float = 0.03  # typical crease spacing
    fold_ridged: bool = False  # sharp creases (stiff fabric) instead of soft undulation
    mottle: float = 0.05  # albedo variation of the yarn (heather / slub)
    seed: int = 0


FABRICS: dict[str, FabricSpec] = {
    # single jersey (tees): fine knit loops (wales ~1.1 mm), heathered yarn, soft low folds
    "jersey": FabricSpec("jersey", tile_m=0.10, roughness=0.86, weave="jersey", weave_depth=0.8, fold_depth=0.45,
                         fold_wavelength_m=0.05, mottle=0.05, seed=11),
    # 3/1 twill denim: diagonal ribs (~1.6 mm), vertical slub streaks of the warp, crisp creases
    "denim": FabricSpec("denim", tile_m=0.10, roughness=0.78, weave="twill", weave_depth=1.0, fold_depth=0.8,
                        fold_wavelength_m=0.04, fold_ridged=True, mottle=0.09, seed=23),
    # 1x1 rib knit (beanies, cuffs): chunky wales (~5 mm) of V stitches, deep grooves
    "knit": FabricSpec("knit", tile_m=0.06, roughness=0.95, weave="rib", weave_depth=2.0, fold_depth=0.5,
                       fold_wavelength_m=0.02, mottle=0.04, seed=37),
    # polished acetate / lacquered metal (eyewear frames): nearly smooth, faint polishing marks
    "acetate": FabricSpec("acetate", tile_m=0.04, roughness=0.40, weave="smooth", weave_depth=0.2,
                          fold_depth=0.0, mottle=0.03, seed=41),
}


class FabricError(ValueError):
    """Unknown fabric name."""


@dataclass(frozen=True)
class FabricMaps:
    """One fabric's texture tile: albedo (sRGB RGB uint8), normal (RGB uint8), roughness/metallic (RGB uint8)."""

    spec: FabricSpec
    albedo: np.ndarray
    normal: np.ndarray
    rough_metal: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.albedo.nbytes + self.normal.nbytes + self.rough_metal.nbytes


def fabric_spec(name: str) -> FabricSpec:
    try:
        return FABRICS[name]
    except KeyError:
        raise FabricError(f"unknown fabric {name!r}; known: {sorted(FABRICS)}") from None


@functools.lru_cache(maxsize=16)
def fabric_maps(name: str, size: int = TEX_SIZE) -> FabricMaps:
    """The fabric's maps (generated once per process; deterministic)."""
    spec = fabric_spec(name)
    rng = np.random.default_rng(spec.seed)
    px_m = spec.tile_m / size  # metres per texel
    weave_h, weave_albedo = _WEAVES[spec.weave](size, px_m, rng)
    folds = _fold_height(size, px_m, spec, rng) if spec.fold_depth > 0 else np.zeros((size, size))
    # each relief is scaled to a slope: weave_depth / fold_depth = tan of the 95th-percentile tilt in units of
    # WEAVE_TILT / FOLD_TILT, so the parameters read as "how strongly the surface leans"
    height = (spec.weave_depth * _to_slope(weave_h, px_m, WEAVE_TILT_DEG)
              + spec.fold_depth * _to_slope(folds, px_m, FOLD_TILT_DEG))
    normal = _normal_from_height(height, px_m)
    mottle = _band_noise(size, rng, lo=2.0, hi=10.0, aniso=4.0 if spec.weave == "twill" else 1.0)
    albedo_lin = np.clip(weave_albedo * (1.0 + spec.mottle * mottle), 0.0, 1.0)
    # crease valleys read a little darker (fibres in shadow), ridges lighter
    if spec.fold_depth > 0:
        curv = _laplacian(folds) / (px_m ** 2)
        albedo_lin *= np.clip(1.0 - 0.004 * spec.fold_depth * curv / max(np.abs(curv).std(), 1e-9), 0.9, 1.04)
    albedo_lin = np.clip(albedo_lin / max(albedo_lin.max(), 1e-6), 0.0, 1.0)
    rough = np.clip(0.93 + 0.07 * _band_noise(size, rng, lo=4.0, hi=24.0) - 0.05 * (weave_albedo < 0.8), 0.8, 1.0)
    maps = FabricMaps(spec, _srgb8(albedo_lin), _encode_normal(normal), _rough_metal8(rough))
    log.debug("fabric %s: %dx%d tile of %.0f mm", name, size, size, spec.tile_m * 1000)
    return maps


def apply_fabric(uv_m: np.ndarray | None, spec: FabricSpec) -> np.ndarray | None:
    """Garment UVs in metres of fabric -> texture coordinates of the fabric's tile."""
    return None if uv_m is None else np.asarray(uv_m, np.float64) / spec.tile_m


# ---------------------------------------------------------------------------------------------------------------
# weaves: (height in metres, albedo multiplier in linear units) on the tile's texel grid; all periodic in the tile


def _grid(size: int):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    return xx, yy


def _periods(size: int, px_m: float, pitch_m: float) -> int:
    """Whole number of repeats per tile closest to the wanted pitch (keeps the pattern tileable)."""
    return max(1, int(round(size * px_m / pitch_m)))


def _weave_jersey(size: int, px_m: float, rng):
    """Single jersey face: columns (wales) of V-shaped loops; the gaps between wales are shadowed."""
    xx, yy = _grid(size)
    nw = _periods(size, px_m, 0.0011)  # wales
    nc = _periods(size, px_m, 0.0009)  # courses
    u = xx * nw / size  # wale coordinate
    v = yy * nc / size
    fu = u - np.floor(u) - 0.5  # -0.5..0.5 across a wale
    # a loop leg leans left in the left half of a wale and right in the right half: V shapes stacked upward
    leg = np.abs(fu) * 2.0
    phase = v + 0.35 * leg
    loop = 0.5 + 0.5 * np.cos(2 * np.pi * phase)
    h = 0.00012 * (1.0 - leg ** 2) * (0.6 + 0.4 * loop)
    albedo = 0.86 + 0.14 * (1.0 - leg ** 4) * (0.7 + 0.3 * loop)
    return h, albedo


def _weave_twill(size: int, px_m: float, rng):
    """3/1 twill: warp floats over three weft picks, stepping one per pick: diagonal ribs at ~63 degrees."""
    xx, yy = _grid(size)
    n = _periods(size, px_m, 0.0016)  # rib spacing across the fabric
    diag = (2 * xx + yy) * n / size  # a period of 2n along x and n along y keeps it tileable
    rib = 0.5 + 0.5 * np.cos(2 * np.pi * diag)
    # individual warp yarns (vertical), a little uneven
    nwarp = _periods(size, px_m, 0.0005)
    yarn = 0.5 + 0.5 * np.cos(2 * np.pi * xx * nwarp / size)
    slub = _band_noise(size, rng, lo=1.0, hi=6.0, aniso=12.0)  # long vertical streaks of uneven dye
    h = 0.00010 * rib ** 1.5 + 0.00003 * yarn
    albedo = (0.80 + 0.12 * rib) * (1.0 + 0.06 * slub) * (0.96 + 0.04 * yarn)
    return h, albedo


def _weave_rib(size: int, px_m: float, rng):
    """1x1 rib knit: raised knit wales of stacked V stitches between sunken purl columns."""
    xx, yy = _grid(size)
    nw = _periods(size, px_m, 0.005)  # a knit + purl pair
    nc = _periods(size, px_m, 0.0035)  # stitch rows
    u = xx * nw / size
    fu = u - np.floor(u)  # 0..1 across a pair; the knit wale is the middle half
    wale = np.clip(np.cos(2 * np.pi * (fu - 0.5)), 0, 1)  # 1 on the knit wale, 0 in the purl groove
    side = np.sign(fu - 0.5)
    phase = yy * nc / size + 0.45 * np.abs(fu - 0.5) * 2
    stitch = 0.5 + 0.5 * np.cos(2 * np.pi * phase) * side
    h = 0.0010 * wale ** 0.7 * (0.8 + 0.2 * stitch)
    albedo = 0.66 + 0.34 * wale ** 0.5 * (0.85 + 0.15 * stitch)
    return h, albedo


def _weave_smooth(size: int, px_m: float, rng):
    """A polished surface: faint directional polishing marks."""
    h = 0.000004 * _band_noise(size, rng, lo=6.0, hi=40.0, aniso=8.0).T
    return h, np.ones((size, size))


_WEAVES = {"jersey": _weave_jersey, "twill": _weave_twill, "rib": _weave_rib, "smooth": _weave_smooth}


# ---------------------------------------------------------------------------------------------------------------
# helpers


def _band_noise(size: int, rng, lo: float, hi: float, aniso: float = 1.0) -> np.ndarray:
    """Tileable band-pass noise (unit std): white noise filtered to `lo`..`hi` cycles per tile; aniso > 1 stretches
    features vertically (lower vertical frequencies), as slubs run along the warp."""
    f = np.fft.fftfreq(size) * size
    fy, fx = np.meshgrid(f, f, indexing="ij")
    r = np.hypot(fx, fy * aniso)
    band = np.exp(-0.5 * ((np.log(np.maximum(r, 1e-9)) - np.log(np.sqrt(lo * hi))) / (0.5 * np.log(hi / lo) + 0.3))
                  ** 2)
    band[0, 0] = 0.0
    spec = np.fft.fft2(rng.standard_normal((size, size))) * band
    out = np.real(np.fft.ifft2(spec))
    return out / max(out.std(), 1e-12)


def _fold_height(size: int, px_m: float, spec: FabricSpec, rng) -> np.ndarray:
    """Creases and soft folds (relative height), tileable: band-passed noise around the fabric's crease wavelength, folded
    into sharp ridges for stiff fabrics; mostly horizontal (compression wrinkles), as worn fabric bunches."""
    cycles = size * px_m / spec.fold_wavelength_m
    n = _band_noise(size, rng, lo=cycles * 0.7, hi=cycles * 1.4, aniso=0.6)  # aniso < 1: horizontal creases
    if spec.fold_ridged:
        n = 1.0 - 2.0 * np.abs(np.tanh(0.8 * n))  # thin ridges where the noise crosses zero
    return n  # scaled to its slope by the caller


def _to_slope(h: np.ndarray, px_m: float, tilt_deg: float) -> np.ndarray:
    """Scale a height field so the 95th percentile of its slope is tan(tilt_deg)."""
    g = np.hypot(np.roll(h, -1, 1) - np.roll(h, 1, 1), np.roll(h, -1, 0) - np.roll(h, 1, 0)) / (2 * px_m)
    p95 = float(np.percentile(g, 95))
    return h if p95 <= 0 else h * (np.tan(np.radians(tilt_deg)) / p95)


def _laplacian(h: np.ndarray) -> np.ndarray:
    return (np.roll(h, 1, 0) + np.roll(h, -1, 0) + np.roll(h, 1, 1) + np.roll(h, -1, 1) - 4 * h)


def _normal_from_height(h: np.ndarray, px_m: float) -> np.ndarray:
    """Tangent-space normals of a periodic height field. Image row 0 is the top of the tile (v = 1; pyrender
    flips textures on upload), so +v is -row."""
    dhdu = (np.roll(h, -1, 1) - np.roll(h, 1, 1)) / (2 * px_m)
    dhdv = -(np.roll(h, -1, 0) - np.roll(h, 1, 0)) / (2 * px_m)
    n = np.stack([-dhdu, -dhdv, np.ones_like(h)], -1)
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def _encode_normal(n: np.ndarray) -> np.ndarray:
    return np.clip(np.round((n * 0.5 + 0.5) * 255), 0, 255).astype(np.uint8)


def decode_normal(img: np.ndarray) -> np.ndarray:
    """uint8 normal map -> unit vectors (for tests and tools)."""
    n = img.astype(np.float64) / 255.0 * 2.0 - 1.0
    return n / np.linalg.norm(n, axis=-1, keepdims=True)


def _srgb8(lin: np.ndarray) -> np.ndarray:
    s = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * np.power(np.clip(lin, 0, 1), 1 / 2.4) - 0.055)
    g = np.clip(np.round(s * 255), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(g[..., None], 3, -1))


def _rough_metal8(rough: np.ndarray) -> np.ndarray:
    """R = G = roughness multiplier (pyrender reads R, glTF G), B = 1 (the part's metallic factor applies)."""
    r = np.clip(np.round(rough * 255), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.stack([r, r, np.full_like(r, 255)], -1))
