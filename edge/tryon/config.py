"""Typed config of the try-on mirror ([tryon] in a device TOML)."""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from edge.core.config_base import StrictModel
from edge.hands.config import HandsConfig


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
    materials: bool = True  # fabric maps (albedo pattern, normal map, roughness); false = flat colour
    crop: bool = True  # render only the garment's projected bounding box (not the whole frame)
    adaptive_scale: bool = True  # lower the render scale (down to min_scale, up to render_scale) to hold budget_ms
    min_scale: float = Field(0.5, gt=0.1, le=1.0)  # at 480 lines; taller frames: the same number of lines
    budget_ms: float = Field(16.0, gt=0)  # render time per frame (wall, beside the pose thread) the adaptive scale
    # aims at: about half a 30 FPS frame interval
    material_lod: bool = False  # at min_scale and still over budget, drop the normal/roughness maps, then the albedo


class LightingSection(StrictModel):
    """Scene-matched lighting of the garment (edge/tryon/lighting.py)."""

    enabled: bool = True  # estimate ambient colour, exposure and the key light's side from the camera frame
    strength: float = Field(1.0, ge=0, le=1)  # 0 = the fixed neutral rig, 1 = the estimate
    time_constant_s: float = Field(0.5, gt=0)  # smoothing of the estimate over time


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


Rect = tuple[float, float, float, float]


def _check_rect(v: Rect, what: str) -> Rect:
    x0, y0, x1, y1 = v
    if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
        raise ValueError(f"{what} {list(v)}: give [x0, y0, x1, y1] of the picture, each in 0..1, x0 < x1, y0 < y1")
    return v


class SwatchRegion(StrictModel):
    """A colour the shopper picks by pointing at it: `rect` [x0, y0, x1, y1] as fractions of what the mirror
    shows (`swatch_space`: the part of the picture on screen, or the whole displayed picture; after the mirror
    flip, origin top left); `colour` a colour name or an index into the shown garment's colours. The page draws
    its swatches over these rects (docs/TRYON.md "Gestures")."""

    colour: str | int
    rect: Rect

    @field_validator("rect")
    @classmethod
    def _rect_ok(cls, v: Rect) -> Rect:
        return _check_rect(v, "rect")


def _default_swatches() -> list[SwatchRegion]:
    """Four swatches in a column at the right edge of the screen's picture, colours 0..3 of the shown garment."""
    return [SwatchRegion(colour=i, rect=(0.84, round(0.18 + 0.15 * i, 2), 0.98, round(0.31 + 0.15 * i, 2)))
            for i in range(4)]


class SwipeSection(StrictModel):
    """A swipe: the palm centre moves sideways relative to the shoulders (walking moves both, so it is no
    swipe). Distances in shoulder widths, speeds in shoulder widths per second."""

    min_distance: float = Field(0.7, gt=0, le=5, description="sideways travel of one stroke")
    start_speed: float = Field(1.6, gt=0, description="a stroke starts above this sideways speed")
    end_speed: float = Field(0.6, gt=0, description="... and ends below this one (hysteresis: < start_speed)")
    max_vertical: float = Field(0.6, ge=0, le=2, description="vertical travel / sideways travel at most")
    min_duration_s: float = Field(0.06, ge=0)
    max_duration_s: float = Field(0.9, gt=0)
    open_hand: bool = Field(True, description="only an open hand swipes (grasping, adjusting clothes does not)")

    @model_validator(mode="after")
    def _hysteresis(self):
        if self.end_speed >= self.start_speed:
            raise ValueError(f"end_speed ({self.end_speed}) must be below start_speed ({self.start_speed})")
        return self


class HoldSection(StrictModel):
    hold_ms: float = Field(800.0, ge=100, le=10000, description="how long the hand must hold")
    grace_ms: float = Field(200.0, ge=0, le=2000, description="a lost or misread hand for up to this long does "
                            "not restart the hold")
    still_speed: float = Field(0.35, gt=0, description="(open palm) palm speed below this, in shoulder widths/s")
    still_range: float = Field(0.15, gt=0, description="(open palm) and the palm centre within this (shoulder "
                               "widths, both ways) over the last 0.3 s")


class GesturesSection(StrictModel):
    """Hand gestures drive the mirror (docs/TRYON.md "Gestures"): swipes change the garment, pointing at a swatch
    picks its colour, an open palm held still saves the look. Needs `[models.hand_detector]` /
    `[models.hand_landmarks]` built (`edge models build`)."""

    enabled: bool = False
    zone: Rect = Field((0.1, 0.0, 0.9, 1.0), description="[x0, y0, x1, y1] of the displayed picture the shopper's "
                       "shoulder centre must be in for hands to run")
    min_shoulder_width: float = Field(0.12, ge=0, le=1, description="shoulder width / picture width at least "
                                      "(the shopper is close enough)")
    every_n: int = Field(1, ge=1, le=30, description="hands run on every N-th pose frame at most")
    budget_ms: float = Field(40.0, ge=0, le=1000, description="pose + hands time allowed per frame: hands skip a "
                             "frame whose pose step leaves less than their usual time (0: no budget)")
    min_rate_hz: float = Field(8.0, ge=0, le=60, description="hands run at least this often while the shopper is "
                               "in the zone, even over budget (0: never over budget)")
    yield_to_picture: bool = Field(True, description="while the mirror drops more than 3 % of the camera's frames "
                                   "or its motion-to-photon p95 is over m2p_budget_ms, hands skip more frames (one "
                                   "more every second, up to every 6th, never below min_rate_hz); back one step per "
                                   "3 s of keeping up")
    m2p_budget_ms: float = Field(80.0, gt=0, le=2000, description="the mirror's motion-to-photon p95 target "
                                 "(yield_to_picture)")
    cooldown_s: float = Field(1.0, ge=0, le=10, description="no gesture fires this long after one did")
    swipe_left: Literal["prev_garment", "next_garment"] = "prev_garment"
    swipe_right: Literal["prev_garment", "next_garment"] = "next_garment"
    swipe: SwipeSection = SwipeSection()
    point: HoldSection = HoldSection()
    palm: HoldSection = HoldSection(hold_ms=1200.0)
    swatches: list[SwatchRegion] = Field(default_factory=_default_swatches)
    swatch_space: Literal["screen", "picture"] = Field(
        "screen", description="screen: swatch rects are fractions of the part of the picture the mirror page shows "
        "between its top bar and its controls (the page reports it; a portrait screen crops a landscape camera's "
        "sides), so they stay on screen; picture: fractions of the whole displayed picture")
    hands: HandsConfig = HandsConfig()

    @field_validator("zone")
    @classmethod
    def _zone_ok(cls, v: Rect) -> Rect:
        return _check_rect(v, "zone")


class TryOnConfig(StrictModel):
    enabled: bool = False
    catalog: str = ""  # path to a catalogue JSON; "" = the built-in edge/tryon/catalog/catalog.json
    garment_cache_dir: str = ""  # generated GLBs; "" = <cache>/tryon/garments
    default_sku: str = "TEE-001"
    default_colour: str = ""  # "" = the garment's first colour
    camera: CameraIntrinsics = CameraIntrinsics()
    render: RenderSection = RenderSection()
    lighting: LightingSection = LightingSection()
    smoothing: SmoothingSection = SmoothingSection()
    fit: FitSection = FitSection()
    occlusion: bool = True  # arms/hands in front of the garment hide it (segmentation mask + arm landmarks)
    mirror_view: bool = True  # flip the composited frame horizontally for display
    min_visibility: float = Field(0.5, ge=0, le=1)  # shoulders/hips below this: no garment is drawn
    page: PageSection = PageSection()
    session: SessionSection = SessionSection()
    gestures: GesturesSection = GesturesSection()
