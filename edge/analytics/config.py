"""Typed config of the shopper analytics ([analytics] in a device TOML). Coordinates are frame pixels."""
from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from edge.analytics.loitering import parse_hours
from edge.analytics.zones import HANDOVER_STOOD_S
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


MAX_COORD = 100_000.0  # px: far beyond any frame, near enough that area and overlap arithmetic stay exact


def _check_polygon(pts: list[Point]) -> list[Point]:
    if len(pts) < 3:
        raise ValueError(f"a polygon needs at least 3 points [x, y], got {len(pts)}")
    if not all(math.isfinite(v) for p in pts for v in p):
        raise ValueError("polygon points must be finite numbers")
    if any(abs(v) > MAX_COORD for p in pts for v in p):
        raise ValueError(f"polygon points are frame pixels: each coordinate within ±{MAX_COORD:g} (a typo'd "
                         "exponent or an extra digit?)")
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


def _check_point(v: Point | None, info) -> Point | None:
    if v is not None and not all(math.isfinite(c) for c in v):
        raise ValueError(f"{info.field_name} [{v[0]:g}, {v[1]:g}] must be finite numbers (frame px) "
                         "(fix: use pixel coordinates such as [320, 240]; nan and inf are not positions)")
    return v


def _area_in_frame(pts: list[Point], width: float, height: float) -> float:
    """Area (px²) of the polygon's part inside the frame [0, width] x [0, height] (Sutherland-Hodgman clipping,
    right for concave polygons too: clipping adds only zero-area edges along the frame's border)."""
    poly = [tuple(map(float, p)) for p in pts]
    for axis, bound, keep_below in ((0, 0.0, False), (0, float(width), True), (1, 0.0, False),
                                    (1, float(height), True)):
        def inside(p):
            return p[axis] <= bound if keep_below else p[axis] >= bound

        out = []
        for i, cur in enumerate(poly):
            prev = poly[i - 1]
            if inside(cur) != inside(prev):
                f = (bound - prev[axis]) / (cur[axis] - prev[axis])
                out.append((prev[0] + f * (cur[0] - prev[0]), prev[1] + f * (cur[1] - prev[1])))
            if inside(cur):
                out.append(cur)
        poly = out
        if len(poly) < 3:
            return 0.0
    return abs(sum(poly[i][0] * poly[i - 1][1] - poly[i - 1][0] * poly[i][1] for i in range(len(poly)))) / 2


def _segment_crosses_frame(p: Point, q: Point, width: float, height: float) -> bool:
    """Whether segment pq passes through the frame's interior, i.e. has frame on both of its sides (a segment that
    misses the frame, touches only a corner or runs along the border can never be crossed by a point in it)."""
    t0, t1 = 0.0, 1.0
    d = (q[0] - p[0], q[1] - p[1])
    for axis, lo, hi in ((0, 0.0, float(width)), (1, 0.0, float(height))):
        if abs(d[axis]) < 1e-12:
            if not lo <= p[axis] <= hi:
                return False
            continue
        a, b = (lo - p[axis]) / d[axis], (hi - p[axis]) / d[axis]
        t0, t1 = max(t0, min(a, b)), min(t1, max(a, b))
    if t0 > t1:
        return False
    tm = (t0 + t1) / 2  # the clipped part's midpoint is inside unless that part lies on the border
    x, y = p[0] + tm * d[0], p[1] + tm * d[1]
    return 0 < x < width and 0 < y < height


def _span(pts) -> str:
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    return f"x {min(xs):g}..{max(xs):g}, y {min(ys):g}..{max(ys):g}"


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
    lost_buffer: float = Field(0.15, ge=0, le=2, description="lost tracks match on the IoU of boxes grown by this "
                               "share of their size on every side (buffered IoU)")
    appearance_weight: float = Field(1.0, ge=0, le=10, description="weight of the colour-histogram distance in "
                                     "the matching cost (0: IoU only)")
    low_track_hits: int = Field(0, ge=0, le=100, description="consecutive frames a track started from a low-score "
                                "detection no other box covers needs to be confirmed (0: only new_track_score "
                                "detections start tracks)")

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
    handover_s: float = Field(0.0, ge=0, le=60, description="a new track starting where another stood within this long, "
                              "while that one is gone or moved away, continues its visit (tracker id swaps); 0: off. "
                              "For zones where people stand alone (loitering, kiosk), not queues")
    handover_dist: float = Field(0.3, gt=0, le=2, description="how near (of the person's box height) the new track "
                                 "must appear to where the old one stood")

    @field_validator("handover_s")
    @classmethod
    def _handover_can_happen(cls, v: float) -> float:
        # PolygonZone._donor needs the old track's trail near the new track's first point to span HANDOVER_STOOD_S
        # within [streak_t - handover_s, streak_t]; the old track was last seen before streak_t, so a window of
        # HANDOVER_STOOD_S or less can never hold such a trail
        if 0 < v <= HANDOVER_STOOD_S:
            raise ValueError(f"handover_s {v:g} can never hand a visit over: the old track must have stood "
                             f"{HANDOVER_STOOD_S:g} s where the new one appears, within the last handover_s seconds "
                             f"before it (fix: 0 to turn handover off, or more than {HANDOVER_STOOD_S:g} s, e.g. 5)")
        return v


class LineConfig(StrictModel):
    """A directed counting line; "in" is from the left to the right of start→end as seen on screen."""

    name: Name
    start: Point
    end: Point
    anchor: Anchor = "bottom_center"
    min_distance: float = Field(10.0, ge=0, le=1000, description="px from the line before a side counts")
    min_frames: int = Field(2, ge=1, le=100, description="consecutive frames on the new side before counting")

    _finite = field_validator("start", "end")(_check_point)

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

    _finite = field_validator("head")(_check_point)


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

    @field_validator("staff_zone")
    @classmethod
    def _staff_elsewhere(cls, v: str | None, info) -> str | None:
        if v is not None and v == info.data.get("zone"):
            raise ValueError(f"staff_zone {v!r} is the kiosk zone itself: the waiting customer would count as staff "
                             "and help is never requested (fix: name the zone where staff stand, or remove "
                             "staff_zone)")
        return v


FacingState = Literal["empty", "low"]
_HEX = r"^#[0-9A-Fa-f]{6}$"


class FacingConfig(StrictModel):
    """One shelf facing of the planogram: a polygon (frame px) holding one SKU, judged full / low / empty against
    a reference taken after restocking. `low_below` / `empty_below` are fractions of the facing's product area
    that still look like product."""

    id: Name = Field(description="facing id, the key of facing_empty alerts (e.g. A3)")
    sku: str = Field(min_length=1, max_length=64, description="the product the facing holds")
    polygon: Polygon
    alert_on: list[FacingState] = Field(default_factory=lambda: ["empty"],
                                        description="states that need action: facing_empty is true in them")
    empty_below: float = Field(0.15, ge=0, le=1, description="fill below this is empty")
    low_below: float = Field(0.7, ge=0, le=1, description="fill below this is low")
    hysteresis: float = Field(0.05, ge=0, le=0.5, description="a state is left only this far past its threshold")
    persistence_s: float | None = Field(None, ge=0, le=3600, description="default: the planogram's persistence_s")

    @field_validator("id")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v.lower() == "all":
            raise ValueError("'all' is reserved (the shelf_reference command's every-facing argument)")
        return v

    @field_validator("alert_on")
    @classmethod
    def _unique_states(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"alert_on {v} lists a state twice")
        return v

    @model_validator(mode="after")
    def _thresholds_ordered(self) -> FacingConfig:
        if self.empty_below + self.hysteresis >= self.low_below - self.hysteresis:
            raise ValueError(f"facing {self.id!r}: need empty_below + hysteresis < low_below - hysteresis "
                             f"(empty_below {self.empty_below:g}, low_below {self.low_below:g}, hysteresis "
                             f"{self.hysteresis:g}; fix: lower empty_below or raise low_below)")
        return self


class AlignmentConfig(StrictModel):
    """Frame alignment to the reference (ECC, euclidean) and when the camera counts as moved."""

    max_shift_px: float = Field(10.0, gt=0, le=500, description="larger shifts (frame px) are a moved camera")
    max_rotation_deg: float = Field(1.0, gt=0, le=45, description="larger rotations are a moved camera")
    min_correlation: float = Field(0.6, gt=0, lt=1, description="aligned frame vs reference outside the facings "
                                   "(shelf edges, labels): correlation below this is a failed alignment")
    moved_after_s: float = Field(3.0, ge=0, le=3600, description="alignment failing this long (view still): "
                                 "camera_moved")
    width: int = Field(320, ge=64, le=1920, description="alignment runs on the frame scaled to this width")


class PlanogramConfig(StrictModel):
    """[analytics.planogram]: the shelf facings one camera watches ([[analytics.planogram.facings]])."""

    camera: Name = Field("shelf", description="the camera's name: the key of camera_moved alerts")
    stable_frames: int = Field(5, ge=1, le=300, description="frames with nobody touching a facing and no motion "
                               "in it before it is measured")
    clear_s: float = Field(2.0, ge=0, le=600, description="and at least this long (a shopper the detector misses "
                           "for a moment is not measured)")
    persistence_s: float = Field(10.0, ge=0, le=3600, description="a new state must be measured this long first")
    measure_every_s: float = Field(0.5, ge=0, le=60, description="measure a facing at most this often")
    unknown_after_s: float = Field(300.0, gt=0, le=86400, description="occluded this long: state unknown")
    occlusion_margin_px: float = Field(8.0, ge=0, le=200, description="a person box this close touches a facing")
    motion_threshold: float = Field(0.02, gt=0, le=1, description="fraction of a facing's pixels that changed "
                                    "between frames above which it is moving")
    back_panel_color: str | None = Field(None, pattern=_HEX, description='"#RRGGBB" of the empty shelf\'s back')
    back_panel_region: Polygon | None = Field(None, description="where the back panel shows; sampled from the "
                                              "reference (overrides back_panel_color)")
    reference_dir: str | None = Field(None, description='where references are kept across restarts; none: '
                                      '<data dir>/shelf/<camera>; "": in memory only')
    alignment: AlignmentConfig = AlignmentConfig()
    facings: list[FacingConfig] = Field(default_factory=list)

    @field_validator("facings")
    @classmethod
    def _ids_unique_no_overlap(cls, v: list[FacingConfig]) -> list[FacingConfig]:
        seen: dict[str, int] = {}
        for i, f in enumerate(v):
            if f.id in seen:
                raise ValueError(f"facings.{i}.id {f.id!r} is already used by facings.{seen[f.id]}; "
                                 "facing ids must be unique")
            seen[f.id] = i
        for i, j, area in _overlaps([f.polygon for f in v]):
            raise ValueError(f"facings.{j}.polygon (facing {v[j].id!r}) overlaps facings.{i}.polygon (facing "
                             f"{v[i].id!r}) by about {area:.0f} px² "
                             "(fix: move the shared edge so the polygons only touch)")
        return v

    def frame_problems(self, width: int, height: int, prefix: str = "analytics.planogram") -> list[str]:
        """`key: what (fix)` for every polygon point outside a width x height frame."""
        problems = []
        polys = [(f"facings.{i}.polygon", f.polygon) for i, f in enumerate(self.facings)]
        if self.back_panel_region is not None:
            polys.append(("back_panel_region", self.back_panel_region))
        for key, poly in polys:
            bad = [(k, p) for k, p in enumerate(poly) if not (0 <= p[0] <= width and 0 <= p[1] <= height)]
            if bad:
                k, p = bad[0]
                problems.append(f"{prefix}.{key}: point {k} [{p[0]:g}, {p[1]:g}] is outside the {width}x{height} "
                                f"frame ([source] width/height){f' ({len(bad)} points)' if len(bad) > 1 else ''} "
                                "(fix: use frame pixels of the configured size)")
        return problems


def _overlaps(polys: list[list[Point]], min_area: float = 4.0) -> list[tuple[int, int, float]]:
    """(i, j, px²) for each pair of polygons (i < j) whose interiors overlap by at least `min_area` px²."""
    import cv2
    import numpy as np

    boxes = [(min(x for x, _ in p), min(y for _, y in p), max(x for x, _ in p), max(y for _, y in p)) for p in polys]
    out = []
    for j in range(len(polys)):
        for i in range(j):
            a, b = boxes[i], boxes[j]
            x0, y0, x1, y1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
            if x1 - x0 <= 1 or y1 - y0 <= 1:
                continue
            # rasterise both over the boxes' intersection at 4x (quarter-pixel edges), count shared pixels
            s, w, h = 4.0, int(math.ceil((x1 - x0) * 4)) + 1, int(math.ceil((y1 - y0) * 4)) + 1
            masks = []
            for p in (polys[i], polys[j]):
                m = np.zeros((h, w), np.uint8)
                pts = np.round((np.asarray(p, np.float64) - (x0, y0)) * s * 16).astype(np.int32)
                cv2.fillPoly(m, [pts], 1, lineType=cv2.LINE_8, shift=4)
                masks.append(m)
            # fillPoly includes boundary pixels: shrink each by one sample so polygons that only touch pass
            k = np.ones((3, 3), np.uint8)
            shared = cv2.erode(masks[0], k) & cv2.erode(masks[1], k)
            area = float(shared.sum()) / (s * s)
            if area >= min_area:
                out.append((i, j, area))
    return out


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
    planogram: PlanogramConfig = PlanogramConfig()
    staff_zones: list[Name] = Field(default_factory=list, description="zones only staff enter (behind the counter, "
                                    "the stockroom door): a track that entered one is staff, left out of the "
                                    "shopper analytics (edge/analytics/staff.py)")

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
        for i, name in enumerate(self.staff_zones):
            if name not in names:
                raise ValueError(f"staff_zones[{i}]: no zone named {name!r} in [[analytics.zones]] "
                                 f"(defined: {sorted(names) or 'none'})")
            for key in ("queues", "loitering", "kiosk_help"):
                for item in getattr(self, key):
                    if item.zone == name:
                        raise ValueError(f"staff_zones[{i}]: {name!r} is the zone of {key} {item.name!r}: everyone "
                                         f"in it would be taken for staff and left out of it (fix: list only zones "
                                         f"where shoppers never go, e.g. behind the counter)")
        return self

    def zone(self, name: str) -> ZoneConfig:
        return next(z for z in self.zones if z.name == name)

    def frame_problems(self, width: int, height: int, prefix: str = "analytics") -> list[str]:
        """`key: what (fix)` for zones, shelves and lines that lie outside a width x height frame (they would never
        count anything; partly outside is fine, points on the border are inside), queue heads outside it and heatmap
        frame sizes other than it."""
        frame = f"the {width}x{height} frame ([source] width/height)"
        fix = "(fix: use frame pixels of the configured size)"
        problems = []
        for key, what in (("zones", "zone"), ("shelves", "shelf")):
            for i, item in enumerate(getattr(self, key)):
                if _area_in_frame(item.polygon, width, height) < 1.0:
                    problems.append(f"{prefix}.{key}.{i}.polygon: {what} {item.name!r} ({_span(item.polygon)}) lies "
                                    f"outside {frame}, so it never counts anything {fix}")
        for i, ln in enumerate(self.lines):
            if not _segment_crosses_frame(ln.start, ln.end, width, height):
                problems.append(f"{prefix}.lines.{i}.start: line {ln.name!r} from [{ln.start[0]:g}, {ln.start[1]:g}] "
                                f"to [{ln.end[0]:g}, {ln.end[1]:g}] does not pass through {frame}, so nobody can "
                                f"cross it (fix: set start and end in frame pixels of the configured size; ends on "
                                "or beyond the border are fine)")
        for i, hm in enumerate(self.heatmaps):
            # points are frame px: a grid over another size piles every count into a corner or the edge cells
            if hm.frame_size is not None and tuple(hm.frame_size) != (width, height):
                problems.append(f"{prefix}.heatmaps.{i}.frame_size: [{hm.frame_size[0]}, {hm.frame_size[1]}] of "
                                f"heatmap {hm.name!r} is not the size of {frame}, so its cells do not cover the "
                                "frame (fix: remove frame_size, the source's size is the default)")
        for i, q in enumerate(self.queues):
            # a till just out of view is a fair head (people are ranked by distance to it); a frame size or more
            # beyond the border is another scale or camera
            if q.head is not None and not (-width <= q.head[0] <= 2 * width and -height <= q.head[1] <= 2 * height):
                problems.append(f"{prefix}.queues.{i}.head: [{q.head[0]:g}, {q.head[1]:g}] of queue {q.name!r} is "
                                f"more than a frame's size outside {frame} (fix: put head at the queue's service end "
                                "in frame pixels; a till out of view may lie just beyond the border)")
        return problems

    def validate_frame(self, width: int, height: int, prefix: str = "analytics") -> None:
        """Check the geometry against the source's frame size ([source] width/height): zones, lines, queue heads,
        shelves and the planogram's polygons; raises FrameConfigError listing each bad key
        (`analytics.zones.0.polygon: zone 'door' (...) lies outside ...`)."""
        problems = self.frame_problems(width, height, prefix)
        problems += self.planogram.frame_problems(width, height, f"{prefix}.planogram")
        if problems:
            raise FrameConfigError(problems)

    def alert_keys(self) -> dict[str, list[str]]:
        """Keys alert rules may name for the planogram: facing ids (kind "shelf", metric facing_empty) and the
        camera (kind "camera", metric camera_moved); empty lists when no facings are configured."""
        p = self.planogram
        return {"shelf": [f.id for f in p.facings], "camera": [p.camera] if p.facings else []}


class FrameConfigError(ValueError):
    """Geometry outside the frame. str() lists every problem as `key: what (fix)`; `.problems` is the list."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))
