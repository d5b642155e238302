"""Typed config of the shopper analytics ([analytics] in a device TOML). Coordinates are frame pixels."""
from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from edge.analytics.loitering import parse_hours
from edge.core.config_base import StrictModel

Anchor = Literal["bottom_center", "center", "top_center"]
Name = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
Point = tuple[float, float]


def _segments_cross(p, q, r, s) -> bool:
    """Whether segments pq and rs properly intersect."""
    def orient(a, b, c):
        v = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        return (v > 1e-9) - (v < -1e-9)

    return orient(p, q, r) * orient(p, q, s) < 0 and orient(r, s, p) * orient(r, s, q) < 0


def _check_polygon(pts: list[Point]) -> list[Point]:
    if len(pts) < 3:
        raise ValueError(f"a polygon needs at least 3 points [x, y], got {len(pts)}")
    if not all(math.isfinite(v) for p in pts for v in p):
        raise ValueError("polygon points must be finite numbers")
    n = len(pts)
    for i in range(n):
        for j in range(i + 1, n):
            if j - i in (1, n - 1):  # neighbouring edges share a point
                continue
            if _segments_cross(pts[i], pts[(i + 1) % n], pts[j], pts[(j + 1) % n]):
                raise ValueError(f"the polygon's edges {i}-{(i + 1) % n} and {j}-{(j + 1) % n} cross "
                                 "(list the points in order around the area)")
    area2 = sum(pts[i][0] * pts[i - 1][1] - pts[i - 1][0] * pts[i][1] for i in range(len(pts)))
    if abs(area2) / 2 < 1.0:
        raise ValueError(f"the polygon is degenerate: area {abs(area2) / 2:.3g} px² (points on one line or repeated)")
    return pts


Polygon = Annotated[list[Point], AfterValidator(_check_polygon)]


class TrackerConfig(StrictModel):
    """ByteTrack-style tracker (edge.analytics.tracker.ByteTracker)."""

    enabled: bool = Field(True, description="false: the detections already carry track ids (e.g. the pose tracker's)")
    high_score: float = Field(0.5, ge=0, le=1, description="detections at or above this are matched first")
    low_score: float = Field(0.1, ge=0, le=1, description="detections below this are ignored")
    new_track_score: float = Field(0.6, ge=0, le=1, description="an unmatched detection starts a track from this")
    match_iou: float = Field(0.2, gt=0, le=1, description="min IoU, high-score detections to tracks")
    low_match_iou: float = Field(0.5, gt=0, le=1, description="min IoU, low-score detections to tracks")
    tentative_match_iou: float = Field(0.3, gt=0, le=1, description="min IoU, detections to tentative tracks")
    min_hits: int = Field(3, ge=1, le=100, description="consecutive frames before a track is confirmed and counted")
    lost_s: float = Field(1.0, ge=0, le=60, description="seconds a lost track keeps its id (stream clock)")

    @model_validator(mode="after")
    def _scores_ordered(self) -> TrackerConfig:
        if self.low_score > self.high_score:
            raise ValueError(f"low_score ({self.low_score}) must not exceed high_score ({self.high_score})")
        return self


class ZoneConfig(StrictModel):
    """A polygon zone: occupancy, dwell, zone_entered / zone_left events."""

    name: Name
    polygon: Polygon
    anchor: Anchor = "bottom_center"
    enter_frames: int = Field(3, ge=1, le=300, description="consecutive frames inside before entering")
    enter_s: float = Field(0.0, ge=0, le=600, description="and at least this long inside (stream clock)")
    exit_s: float = Field(1.0, ge=0, le=600, description="outside or undetected this long before leaving")
    events: bool = Field(True, description="emit zone_entered / zone_left (false: the zone only feeds other objects)")


class LineConfig(StrictModel):
    """A directed counting line; "in" is from the left to the right of start→end as seen on screen."""

    name: Name
    start: Point
    end: Point
    anchor: Anchor = "bottom_center"
    min_distance: float = Field(10.0, ge=0, le=1000, description="px from the line before a side counts")
    min_frames: int = Field(2, ge=1, le=100, description="consecutive frames on the new side before counting")

    @model_validator(mode="after")
    def _not_a_point(self) -> LineConfig:
        if math.dist(self.start, self.end) < 1.0:
            raise ValueError(f"start {list(self.start)} and end {list(self.end)} must be at least 1 px apart")
        return self


class QueueConfig(StrictModel):
    """A queue over a zone of [[analytics.zones]]."""

    name: Name
    zone: Name = Field(description="name of a zone in [[analytics.zones]]")
    head: Point | None = Field(None, description="service end of the queue (px); none: every departure is served")
    rate_window_s: float = Field(600.0, gt=0, le=86400, description="service rate window")
    min_services: int = Field(2, ge=1, le=1000, description="people served before a rate is estimated")
    min_interval_s: float = Field(5.0, ge=0, le=3600, description="queue_changed at most this often")


class LoiteringConfig(StrictModel):
    """Loitering in a zone of [[analytics.zones]]."""

    name: Name
    zone: Name = Field(description="name of a zone in [[analytics.zones]]")
    after_s: float = Field(60.0, gt=0, le=86400)
    hours: list[str] = Field(default_factory=list, description='local "HH:MM-HH:MM" windows; empty: all day')
    timezone: str = Field("", description='IANA zone for `hours` (e.g. "Europe/Berlin"); "": the device\'s')

    @field_validator("hours")
    @classmethod
    def _hours_ok(cls, v: list[str]) -> list[str]:
        for h in v:
            parse_hours(h)
        return v

    @field_validator("timezone")
    @classmethod
    def _tz_ok(cls, v: str) -> str:
        if v:
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {v!r} (use an IANA name such as Europe/Berlin)") from None
        return v


class ShelfConfig(StrictModel):
    """A shelf polygon for hand (wrist keypoint) interactions; `name` is the shelf id."""

    name: Name
    polygon: Polygon
    keypoints: list[str] = Field(default_factory=lambda: ["left_wrist", "right_wrist"], min_length=1)
    min_frames: int = Field(3, ge=1, le=300, description="consecutive frames with a hand inside")
    release_frames: int = Field(3, ge=1, le=300, description="consecutive frames without before a new reach")
    min_score: float = Field(0.5, ge=0, le=1, description="keypoint score")


class HeatmapConfig(StrictModel):
    """Occupancy heatmap on a coarse grid, one event per period."""

    name: Name = "floor"
    cols: int = Field(16, ge=1, le=64)
    rows: int = Field(12, ge=1, le=64)
    period_s: float = Field(300.0, gt=0, le=86400)
    anchor: Anchor = "bottom_center"
    frame_size: tuple[int, int] | None = Field(None, description="[width, height] px; none: the source's size")

    @field_validator("frame_size")
    @classmethod
    def _positive(cls, v):
        if v is not None and min(v) < 1:
            raise ValueError(f"frame_size {list(v)} must be positive [width, height]")
        return v


class KioskHelpConfig(StrictModel):
    """Help needed at a kiosk: a customer in `zone` for `after_s` with nobody in `staff_zone`."""

    name: Name
    zone: Name = Field(description="the kiosk zone, a name in [[analytics.zones]]")
    staff_zone: Name | None = Field(None, description="where staff stand, a name in [[analytics.zones]]")
    after_s: float = Field(30.0, gt=0, le=3600)


class AnalyticsConfig(StrictModel):
    """[analytics]: the tracker and the analytics objects run per frame (edge.analytics.composer.Analytics)."""

    enabled: bool = True
    tracker: TrackerConfig = TrackerConfig()
    zones: list[ZoneConfig] = Field(default_factory=list)
    lines: list[LineConfig] = Field(default_factory=list)
    queues: list[QueueConfig] = Field(default_factory=list)
    loitering: list[LoiteringConfig] = Field(default_factory=list)
    shelves: list[ShelfConfig] = Field(default_factory=list)
    heatmaps: list[HeatmapConfig] = Field(default_factory=list)
    kiosk_help: list[KioskHelpConfig] = Field(default_factory=list)

    @field_validator("zones", "lines", "queues", "loitering", "shelves", "heatmaps", "kiosk_help")
    @classmethod
    def _unique_names(cls, v: list, info):
        seen: dict[str, int] = {}
        for i, item in enumerate(v):
            if item.name in seen:
                raise ValueError(f"{info.field_name}[{i}].name {item.name!r} is already used by "
                                 f"{info.field_name}[{seen[item.name]}]; names must be unique")
            seen[item.name] = i
        return v

    @model_validator(mode="after")
    def _zones_exist(self) -> AnalyticsConfig:
        names = {z.name for z in self.zones}
        for key in ("queues", "loitering", "kiosk_help"):
            for i, item in enumerate(getattr(self, key)):
                for field in ("zone", "staff_zone"):
                    ref = getattr(item, field, None)
                    if ref is not None and ref not in names:
                        raise ValueError(f"{key}[{i}].{field}: no zone named {ref!r} in [[analytics.zones]] "
                                         f"(defined: {sorted(names) or 'none'})")
        return self

    def zone(self, name: str) -> ZoneConfig:
        return next(z for z in self.zones if z.name == name)
