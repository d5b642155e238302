"""Typed config of the try-on mirror ([tryon] in a device TOML)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from edge.core.config_base import StrictModel


class CameraIntrinsics(StrictModel):
    """Pinhole intrinsics of the mirror camera. Give fx/fy/cx/cy (from `calibration.camera_cli`) or hfov_deg.

    width/height: the resolution the intrinsics were measured at; they are rescaled to the frame size at run time.
    0 for fx means "derive from hfov_deg"; 0 for cx/cy means the image centre.
    """

    fx: float = Field(0.0, ge=0)
    fy: float = Field(0.0, ge=0)
    cx: float = Field(0.0, ge=0)
    cy: float = Field(0.0, ge=0)
    width: int = Field(0, ge=0, le=7680)
    height: int = Field(0, ge=0, le=4320)
    hfov_deg: float = Field(60.0, gt=10, lt=170)

    @model_validator(mode="after")
    def _pairs(self):
        if (self.fx > 0) != (self.fy > 0):
            raise ValueError("give both fx and fy (or neither, to use hfov_deg)")
        if self.fx > 0 and (self.width == 0 or self.height == 0):
            raise ValueError("fx/fy need the calibration resolution: set width and height")
        return self


class RenderSection(StrictModel):
    msaa: Literal[0, 4] = 0  # llvmpipe: 4x costs ~2.5x; 0 is the fast path
    fixed_light_shaders: bool = True  # fast path: light loops with constant bounds (pixel-identical)
    shader_cache_dir: str = ""  # "" = <cache>/tryon/shaders
    render_scale: float = Field(1.0, gt=0.1, le=1.0)  # render at a fraction of the frame size, then upscale
    znear: float = Field(0.05, gt=0)
    zfar: float = Field(20.0, gt=0)


class SmoothingSection(StrictModel):
    """One-Euro filter on the fitted joints (metres, camera space)."""

    enabled: bool = True
    min_cutoff: float = Field(0.8, gt=0)  # Hz: lower = steadier when still
    beta: float = Field(1.5, ge=0)  # per m/s of joint speed: higher = less lag when moving
    d_cutoff: float = Field(0.5, gt=0)  # Hz of the speed estimate: lower = sensor noise does not open the filter


class FitSection(StrictModel):
    """How the garment is fitted to the shopper (docs/TRYON.md "Fit to the body's outline").

    All off = the rigid fit of earlier releases (world landmarks + one translation, no silhouette, no trim).
    """

    align_2d: bool = True  # body joints reproject onto the 2D landmarks (depth order from the world landmarks)
    silhouette: bool = True  # torso widths (chest, waist, hem) follow the person's segmentation mask
    trim: bool = True  # clip the garment to the person's silhouette (soft edge) and drop floating fragments
    trim_dilate_px: int = Field(2, ge=0, le=20)  # how far the garment may reach past the mask edge (px)
    fragment_min_fraction: float = Field(0.02, ge=0, le=0.5)  # visible garment islands smaller than this
    # fraction of the largest one are dropped (slivers left by occlusion and trimming)
    max_widen: float = Field(1.25, ge=1.0, le=2.0)  # silhouette width factor limits against the landmark fit
    max_narrow: float = Field(0.75, gt=0.3, le=1.0)


class PageSection(StrictModel):
    """The local mirror page (served on the runtime's HTTP server under /mirror)."""

    title: str = "Virtual mirror"
    jpeg_quality: int = Field(80, ge=10, le=100)
    max_stream_fps: float = Field(30.0, gt=0, le=120)
    show_stats: bool = True  # FPS and motion-to-photon in a corner of the page


class SessionSection(StrictModel):
    absence_timeout_s: float = Field(3.0, gt=0)  # no person for this long ends a try-on session
    min_duration_s: float = Field(1.0, ge=0)  # shorter sessions are not reported


class TryOnConfig(StrictModel):
    enabled: bool = False
    catalog: str = ""  # path to a catalogue JSON; "" = the built-in edge/tryon/catalog/catalog.json
    garment_cache_dir: str = ""  # generated GLBs; "" = <cache>/tryon/garments
    default_sku: str = "TEE-001"
    default_colour: str = ""  # "" = the garment's first colour
    camera: CameraIntrinsics = CameraIntrinsics()
    render: RenderSection = RenderSection()
    smoothing: SmoothingSection = SmoothingSection()
    fit: FitSection = FitSection()
    occlusion: bool = True  # arms/hands in front of the garment hide it (segmentation mask + arm landmarks)
    mirror_view: bool = True  # flip the composited frame horizontally for display
    min_visibility: float = Field(0.5, ge=0, le=1)  # shoulders/hips below this: no garment is drawn
    page: PageSection = PageSection()
    session: SessionSection = SessionSection()
