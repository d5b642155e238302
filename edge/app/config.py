"""Typed device configuration (one TOML per device kind), with errors that name the file, the key and the fix."""
from __future__ import annotations

import codecs
import difflib
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, PrivateAttr, ValidationError, create_model, field_validator, model_validator

from edge.alerts.config import AlertConfigError, AlertsConfig
from edge.analytics.config import AnalyticsConfig, FrameConfigError
from edge.app.service import ServiceConfig
from edge.backends.registry import BACKENDS, backend_class
from edge.core.breaker import BreakerConfig
from edge.core.config_base import StrictModel, union_members
from edge.core.decisions import DecisionLogConfig
from edge.core.device import DeviceIdentity
from edge.pose.config import PoseConfig
from edge.privacy.config import PrivacyConfig
from edge.tryon.config import TryOnConfig
from sync.config import SyncConfig
from sync.update_shadow import ShadowConfig

BackendName = Literal[(*BACKENDS, "auto")]  # the registry's plug-ins, plus "auto"
# int8_qat: quantization-aware trained INT8; bf16: OpenVINO's bf16 artefact, on CPUs with native bf16 (else default)
Precision = Literal["fp32", "int8", "int8_qat", "bf16", "default"]


class ConfigError(ValueError):
    """A config file is unreadable or invalid. str() lists every problem as `file: key: what (fix)`."""

    def __init__(self, path: str, problems: list[str]):
        self.path = path
        self.problems = problems
        super().__init__("\n".join(f"{path}: {p}" for p in problems))


class SourceSection(StrictModel):
    type: Literal["camera", "video", "rtsp", "images", "demo"] = "demo"
    uri: str = ""  # camera index ("0"), file path, rtsp:// URL or image folder
    width: int = Field(640, ge=64, le=3840)
    height: int = Field(480, ge=64, le=2160)
    fps: float = Field(30.0, gt=0, le=240)
    loop: bool = True  # video / images: start again at the end
    realtime: bool = True  # video / images / demo: pace frames at `fps` (false: as fast as consumed)
    # bounded: the reader waits it with Event.wait, which raises OverflowError on inf or a huge delay
    reconnect_s: float = Field(2.0, gt=0, le=3600, description="delay before reopening a lost camera / stream")
    # recorded media (video / images / demo): wall-clock time of the recording's first frame, so event times
    # are start + media time. "" = the file's modification time (demo: now), "now", "mtime" or ISO 8601.
    start_time: str = ""

    @field_validator("uri")
    @classmethod
    def _uri_ok(cls, v: str, info) -> str:
        return v.strip()

    @model_validator(mode="after")
    def _uri_needed(self) -> "SourceSection":
        if not self.uri and self.type in ("camera", "video", "rtsp", "images"):
            raise ValueError(f"uri: uri is empty for type = {self.type!r} (fix: set uri to "  # `uri: `: the key
                             + {"camera": "the camera index, e.g. \"0\", or a device path such as \"/dev/video0\"",
                                "video": "the video file's path", "rtsp": "the stream's rtsp:// URL",
                                "images": "the image folder's path"}[self.type] + ")")
        return self

    @field_validator("start_time")
    @classmethod
    def _start_time_ok(cls, v: str) -> str:
        v = v.strip()
        if v not in ("", "now", "mtime"):
            from datetime import datetime

            try:
                datetime.fromisoformat(v)
            except ValueError:
                raise ValueError(f"{v!r} is not ISO 8601 (e.g. 2026-11-29T09:00:00+01:00), 'now' or 'mtime'") \
                    from None
        return v


class _ModelRefBase(StrictModel):
    name: str  # model zoo name, e.g. "pose_landmark_full"
    backend: BackendName = "auto"
    precision: Precision = "default"  # "default": the precision the model card recommends
    threads: int = Field(2, ge=1, le=64)

    def backend_options(self) -> dict[str, Any]:
        """Backend name -> plug-in options, for the backend tables set (for edge.backends.auto.open_model)."""
        return {b: o for b in type(self).model_fields if b in BACKENDS and (o := getattr(self, b)) is not None}


ModelRef = create_model(
    "ModelRef", __base__=_ModelRefBase, __module__=__name__,
    __doc__="A model of the device: zoo name, backend, precision, threads, and one optional table per registered "
            "backend (`[models.pose_landmarks.openvino]`), validated by that plug-in's options model and used when "
            "that backend runs the model.",
    **{b: (opts | None, None) for b in BACKENDS if (opts := backend_class(b).options_model) is not None})


class ModelsSection(StrictModel):
    cache_dir: str = ""  # "" = $STOREFRONT_EDGE_CACHE, else the user cache dir (~/.cache/storefront-edge)
    pose_detector: ModelRef = ModelRef(name="pose_detection")
    pose_landmarks: ModelRef = ModelRef(name="pose_landmark_full")
    face_detector: ModelRef = ModelRef(name="face_detection_full_range")
    # the mirror's hand gestures ([tryon.gestures] enabled): palm detector and hand landmarks, `_full` or `_lite`
    hand_detector: ModelRef = ModelRef(name="palm_detection_lite")
    hand_landmarks: ModelRef = ModelRef(name="hand_landmark_lite")
    # far-range person detector (aisle, queue, store cameras): when set, shopper analytics use its boxes
    # (keypoints from the pose results of the same people, where pose runs); e.g. name = "nanodet_m_416"
    person_detector: ModelRef | None = None

    @model_validator(mode="before")
    @classmethod
    def _default_names(cls, data: Any) -> Any:
        """A model table without `name` (`[models.pose_landmarks]` with only `threads`, or only a backend table)
        keeps its slot's default model instead of failing on the missing name."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for slot, table in data.items():
            default = cls.model_fields[slot].default if slot in cls.model_fields else None
            if isinstance(table, dict) and "name" not in table and isinstance(default, _ModelRefBase):
                data[slot] = {"name": default.name, **table}
        return data


class PeopleSection(StrictModel):
    """Options of the far-range person detector (`[models.person_detector]`), see docs/ANALYTICS.md."""

    threshold: float = Field(0.3, ge=0.05, le=0.95, description="person score; the tracker's high_score splits "
                             "confident from weak detections above it (ByteTrack's second stage)")
    nms_iou: float = Field(0.6, gt=0, le=1)
    tiles: tuple[int, int] = Field((2, 1), description="[columns, rows] of overlapping tiles run besides the whole "
                                   "frame, for far (small) people; [1, 1] = the whole frame only")
    max_batch: int = Field(1, ge=1, le=16, description="frames of several cameras due together run as one batched "
                           "detector call of up to this many (OpenVINO; other backends batch only models with a "
                           "dynamic batch). 1 = off (default: it did not pay on the 2-core reference machine, see "
                           "docs/BENCHMARKS.md 'cameras per device')")

    @field_validator("tiles")
    @classmethod
    def _tiles_ok(cls, v: tuple[int, int]) -> tuple[int, int]:
        if not (1 <= v[0] <= 4 and 1 <= v[1] <= 4):
            raise ValueError(f"tiles {list(v)}: each of columns, rows must be 1..4")
        return v


def has_analytics(a: AnalyticsConfig) -> bool:
    """Whether an analytics section gives the behaviour stage work: any analytics object or planogram facing (a
    section with only `[[analytics.planogram.facings]]` runs the shelf stage too)."""
    return a.enabled and any((a.zones, a.lines, a.queues, a.loitering, a.shelves, a.heatmaps, a.kiosk_help,
                              a.planogram.facings))


def blind_analytics(cfg: EdgeConfig) -> str | None:
    """Why the main camera's shopper analytics would see nobody (pose off and no person detector: only shelf facings
    work without people), or None. Not an error: a program may feed the behaviour stage detections itself."""
    a = cfg.analytics
    people = [k for k in ("zones", "lines", "queues", "loitering", "shelves", "heatmaps", "kiosk_help") if getattr(a, k)]
    if not a.enabled or not people or cfg.pose.enabled or cfg.models.person_detector is not None:
        return None
    return (f"analytics: {', '.join(f'[[analytics.{k}]]' for k in people)} will see nobody: [pose] is off and "
            '[models.person_detector] is not set (fix: add [models.person_detector] name = "nanodet_m_416", or '
            "enable [pose])")


def analytics_names(a: AnalyticsConfig) -> dict[str, list[str]]:
    """The names an alert rule's `key` may refer to in one analytics section, by kind. "shelf" (facing_empty) and
    "camera" (camera_moved) come from the planogram (`AnalyticsConfig.alert_keys()`); `[[analytics.shelves]]`
    feed no alert metric, so a facing_empty rule naming one is an error, not a rule that never fires."""
    return {"zone": [z.name for z in a.zones], "queue": [q.name for q in a.queues],
            "loitering": [x.name for x in a.loitering], "kiosk": [k.name for k in a.kiosk_help],
            **a.alert_keys()}


class CameraSection(StrictModel):
    """An extra camera (`[[cameras]]`): its own source, analytics and alert rules; the device's person detector
    (`[models.person_detector]`) runs on it, shared with the other cameras (see edge/app/streams.py)."""

    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    source: SourceSection
    fps: float = Field(5.0, gt=0, le=60, description="frames processed per second at most")
    latency_budget_ms: float = Field(200.0, gt=0, le=10000, description="capture to analytics done")
    motion_gating: bool = Field(True, description="skip detection on frames that barely moved")
    motion_threshold: float = Field(1.5, ge=0, le=255, description="mean grey-level change that counts as motion")
    detect_every: int = Field(4, ge=1, le=100, description="with gating: detect at least every N-th frame")
    critical: bool = Field(False, description="served first and never throttled; analytics of the other cameras "
                           "yield to it when it falls below its fps (mixed criticality, edge/app/streams.py)")
    analytics: AnalyticsConfig = AnalyticsConfig()
    alerts: AlertsConfig = AlertsConfig()

    @model_validator(mode="after")
    def _planogram_camera_is_the_id(self) -> CameraSection:
        """A camera's planogram without its own `camera` name takes the camera's id (the key of its camera_moved
        alerts and its reference folder), so two cameras' facings never share one."""
        p = self.analytics.planogram
        if p.facings and "camera" not in p.model_fields_set:
            p.camera = self.id
        return self

    def analytics_names(self) -> dict[str, list[str]]:
        return analytics_names(self.analytics)


class HttpSection(StrictModel):
    enabled: bool = True
    host: str = "127.0.0.1"  # frames never leave the device: loopback by default
    port: int = Field(8080, ge=0, le=65535)
    preview: bool = True  # serve /preview.mjpg (local only)


class LoggingSection(StrictModel):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class EdgeConfig(StrictModel):
    device: DeviceIdentity
    source: SourceSection = SourceSection()
    models: ModelsSection = ModelsSection()
    pose: PoseConfig = PoseConfig()
    tryon: TryOnConfig = TryOnConfig()
    people: PeopleSection = PeopleSection()
    analytics: AnalyticsConfig = AnalyticsConfig()
    alerts: AlertsConfig = AlertsConfig()
    cameras: list[CameraSection] = Field(default_factory=list)
    http: HttpSection = HttpSection()
    sync: SyncConfig = SyncConfig()
    logging: LoggingSection = LoggingSection()
    breaker: BreakerConfig = BreakerConfig()  # circuit breakers and fallbacks (docs/OPERATIONS.md)
    decisions: DecisionLogConfig = DecisionLogConfig()  # the on-device decision log (docs/OPERATIONS.md)
    privacy: PrivacyConfig = PrivacyConfig()  # snapshots, shopper notice, retention (docs/PRIVACY.md)
    service: ServiceConfig = ServiceConfig()  # systemd watchdog, RSS budget, graceful stop (docs/OPERATIONS.md)
    shadow: ShadowConfig = ShadowConfig()  # shadow evaluation of model updates (docs/MODEL_UPDATES.md)
    _migrations: list[str] = PrivateAttr(default_factory=list)

    @property
    def migrations(self) -> list[str]:
        """Old keys this file still uses and where they moved (applied on load; `edge config check` shows them)."""
        return list(self._migrations)

    def analytics_names(self) -> dict[str, list[str]]:
        """Names an alert rule's `key` may refer to, by kind (zone, queue, loitering, kiosk, shelf, camera)."""
        return analytics_names(self.analytics)


# pydantic error type -> what the TOML value should look like ({key}: the dotted key, {header}: its table header)
_TYPE_HINTS = {"int_type": "use a whole number, unquoted (e.g. 30)", "int_parsing": "use a whole number, unquoted "
               "(e.g. 30)", "int_from_float": "use a whole number (e.g. 30)", "float_type": "use a number, unquoted",
               "float_parsing": "use a number, unquoted (e.g. 2.5)", "bool_type": "use true or false, unquoted",
               "bool_parsing": "use true or false, unquoted", "string_type": "use a quoted string",
               "list_type": "use a list: [ ... ]", "tuple_type": "use a list: [ ... ]",
               "too_short": "give the list the number of values it takes", "too_long": "give the list the number "
               "of values it takes", "dict_type": "use a table: {header}", "model_type": "use a table: {header}"}


_RANGE_HINTS = {"greater_than": "use a value above {gt}", "greater_than_equal": "use a value of at least {ge}",
                "less_than": "use a value below {lt}", "less_than_equal": "use a value of at most {le}",
                "string_too_short": "use at least {min_length} character(s)",
                "string_too_long": "use at most {max_length} characters",
                "string_pattern_mismatch": "use a value that matches {pattern}"}


def _header(path: tuple) -> str:
    """The TOML header of the table at `path`: `[alerts]`, `[[alerts.rules]]` (an array item), `[cameras.source]`."""
    name = ".".join(str(p) for p in path if not isinstance(p, int))
    return f"[[{name}]]" if path and isinstance(path[-1], int) else f"[{name}]"


def _misplaced(loc: tuple) -> str | None:
    """For a key unknown where it stands but known to a table above it (written below a later header, so TOML put
    it in that table): where it belongs, or None."""
    name = loc[-1]
    for k in range(len(loc) - 2, -1, -1):  # the nearest table above first
        model = _model_at(loc[:k])
        if model is None or name not in model.model_fields:
            continue
        if k == 0:  # `source = ...` written below the [device] header
            ann = model.model_fields[name].annotation
            table = f"[[{name}]]" if typing.get_origin(ann) is list else f"[{name}]"
            return (f"{name!r} is a section of its own: write it as {table} (keys below a [table] header belong "
                    "to that table)")
        return (f"{name!r} is a key of {_header(loc[:k])}: write it there, above {_header(loc[:-1])} (keys below "
                "a [table] header belong to that table)")
    return None


def _fix_hint(err: dict, model_fields: set[str] | None) -> str:
    t = err["type"]
    loc = err["loc"]
    if t == "extra_forbidden" and loc == ("pose", "zones"):  # an old `zones` under [pose] that is no list of tables
        return "presence zones are [[analytics.zones]] tables now: write each zone as one"
    if t == "extra_forbidden":
        name = str(loc[-1]) if loc else ""
        if len(loc) > 1 and (where := _misplaced(loc)):
            return where
        close = difflib.get_close_matches(name, sorted(model_fields or ()), n=1)
        return f"remove it{f' or rename it to {close[0]!r}' if close else ''}"
    if t == "missing" and loc and isinstance(loc[-1], int):  # a fixed-length list given too few values
        return "give the list all its values"
    if t == "missing":
        model = _model_at(loc)
        if model is not None:  # a whole table is missing: name what it needs
            need = [k for k, f in model.model_fields.items() if f.is_required()]
            return f"add a {_header(loc)} table" + (f" with {', '.join(need)}" if need else "")
        return "add this key"
    if t in _TYPE_HINTS:  # an item of an array of tables is written `[[name]]`, not `[name.0]`
        return _TYPE_HINTS[t].format(key=".".join(str(p) for p in loc), header=_header(loc))
    if t in _RANGE_HINTS and (ctx := err.get("ctx")):
        return _RANGE_HINTS[t].format(**ctx)
    if t == "value_error" and ("must be unique" in err["msg"] or "duplicate" in err["msg"]):
        return "rename one of them"
    if t in ("literal_error", "enum"):
        return f"use one of: {err.get('ctx', {}).get('expected', '')}"
    return "fix the value"


def _model_at(path: tuple, model=EdgeConfig) -> type | None:
    """The config model of the table at `path` (`cameras.0.source`, `breaker.pipelines.mirror`), or None where path
    is no table (a value, a list itself, an unknown key)."""
    cur, item = model, False
    for part in path:
        if item:  # the index of a `[[table]]` item or the key of a table of tables: its model is already `cur`
            item = False
            continue
        f = getattr(cur, "model_fields", {}).get(part) if isinstance(part, str) else None
        if f is None:
            return None
        ann = f.annotation
        if typing.get_origin(ann) in (typing.Union, types.UnionType):  # Optional[Model]
            ann = next((a for a in typing.get_args(ann) if a is not type(None)), ann)
        if typing.get_origin(ann) in (list, dict):  # [[table]] items, [table.<name>] tables
            item, ann = True, typing.get_args(ann)[-1]
        if not hasattr(ann, "model_fields"):
            return None
        cur = ann
    return None if item else cur


def _without_union_tags(loc: tuple, model=EdgeConfig) -> tuple[tuple, bool]:
    """(loc, whether tags were taken out): pydantic puts the member it tried after a union key (`colour.str`,
    `colour.int` for `str | int`); the TOML has only the key (`colour`)."""
    out: list = []
    ann: Any = model
    tagged = False
    for part in loc:
        members = union_members(ann)
        if len(members) > 1 and isinstance(part, str):  # the tag of the member tried
            tagged = True
            ann = next((m for m in members if getattr(m, "__name__", None) == part), None)
            continue
        out.append(part)
        if ann is None:
            continue
        ann = members[0]
        origin = typing.get_origin(ann)
        if isinstance(part, str) and hasattr(ann, "model_fields"):
            f = ann.model_fields.get(part)
            ann = f.annotation if f is not None else None
        elif origin is dict:  # [table.<name>]: the name, then the value's keys
            ann = typing.get_args(ann)[1]
        elif origin in (list, set, frozenset):
            ann = typing.get_args(ann)[0]
        elif origin is tuple:
            args = typing.get_args(ann)
            ann = args[0] if len(args) == 2 and args[1] is Ellipsis else \
                args[part] if isinstance(part, int) and part < len(args) else None
        else:
            ann = None
    return tuple(out), tagged


def _fields_at(loc: tuple, model=EdgeConfig) -> set[str]:
    """Allowed keys of the section that holds loc (for 'did you mean'); list items (`cameras.0.source`) and tables
    of tables (`breaker.pipelines.mirror`) included."""
    m = _model_at(tuple(loc[:-1]), model)
    return set(m.model_fields) if m is not None else set()


_REL_KEY = re.compile(r"^(?:Value error, )?([A-Za-z_]+(?:\.\d+|\[\d+\])(?:\.[A-Za-z_]+|\.\d+|\[\d+\])*):? ")
_FIELD_KEY = re.compile(r"^([A-Za-z_]\w*(?:\.[\w-]+|\[\d+\])*): ")


def _full_key(loc: tuple, msg: str) -> tuple[str, str]:
    """(key, message): a list validator's message that starts with a key inside the list (`facings.1.polygon
    (facing 'A2') overlaps ...` at `analytics.planogram.facings`) names that key in full
    (`analytics.planogram.facings.1.polygon`); a table validator's message that starts with `key: ` of its own
    (`command_max_ages.x: no such command` at `sync`, `queues[0].zone: ...` at `analytics`) names it in full
    (`sync.command_max_ages.x`, `analytics.queues.0.zone`)."""
    key = ".".join(str(p) for p in loc) or "<root>"
    m = _REL_KEY.match(msg)
    if loc and m and re.split(r"[.\[]", m.group(1), maxsplit=1)[0] == str(loc[-1]):
        up = "".join(f"{p}." for p in loc[:-1])
        full = re.compile(rf"\b{re.escape(str(loc[-1]))}(?:\.(\d+)|\[(\d+)\])")  # facings.0 / zones[0]: in full

        def absolute(text: str) -> str:
            return full.sub(lambda g: f"{up}{loc[-1]}.{g.group(1) or g.group(2)}", text)
        return absolute(m.group(1)), absolute(msg[m.end():])
    m = _FIELD_KEY.match(msg)
    model = _model_at(loc) if m else None
    if m and model is not None and re.split(r"[.\[]", m.group(1))[0] in model.model_fields:
        rel = re.sub(r"\[(\d+)\]", r".\1", m.group(1))  # queues[0].zone: queues.0.zone
        return f"{key}.{rel}" if loc else rel, msg[m.end():]
    return key, msg


def format_validation_error(path: str, exc: ValidationError) -> ConfigError:
    problems = []
    unions: dict[str, list[tuple[str, str]]] = {}  # key -> (message, fix) of each member a union key failed
    for err in exc.errors():
        loc = tuple(p for p in err["loc"] if p != "[key]")  # pydantic's mark of a table-of-tables key's own error
        loc, tagged = _without_union_tags(loc)
        err = {**err, "loc": loc}
        key, msg = _full_key(loc, err["msg"].removeprefix("Value error, "))  # pydantic's prefix of our own checks
        fix = "" if "(fix:" in msg else _fix_hint(err, _fields_at(loc))
        if tagged and not fix:
            problems.append(f"{key}: {msg}")
        elif tagged:  # one problem for the key, naming what each member takes
            if key not in unions:
                unions[key] = []
                problems.append(key)  # its place; filled in below
            unions[key].append((msg, fix))
        else:
            problems.append(f"{key}: {msg}{f' (fix: {fix})' if fix else ''}")
    for key, tries in unions.items():
        msgs, should = [m for m, _ in tries], "Input should be "
        msg = should + " or ".join(dict.fromkeys(m.removeprefix(should) for m in msgs)) \
            if all(m.startswith(should) for m in msgs) else "; or ".join(dict.fromkeys(msgs))
        problems[problems.index(key)] = f"{key}: {msg} (fix: {' or '.join(dict.fromkeys(f for _, f in tries))})"
    return ConfigError(path, problems)


_POSE_ANCHOR = {"bottom_center": "bottom_center", "center": "center", "hips": "center"}


def migrate(data: dict) -> tuple[dict, list[str]]:
    """Rewrite keys of older config versions to their current place; returns (data, notes for the user).

    `[[pose.zones]]` (presence zones) became `[[analytics.zones]]`: `inertia` frames -> `enter_frames` (and the
    same time to leave, as `exit_s`), anchor "hips" -> "center"; zone events are `zone_entered` / `zone_left`.
    """
    data, notes, _ = _migrate(data)
    return data, notes


def _migrate(data: dict) -> tuple[dict, list[str], range]:
    """migrate(), plus the indices in `analytics.zones` of the zones moved from `[[pose.zones]]` (for errors)."""
    pose = data.get("pose")
    # `zones` that is no list stays in [pose], where validation reports it as a key [pose] does not have
    if not isinstance(pose, dict) or not isinstance(pose.get("zones"), list):
        return data, [], range(0)
    data = {**data, "pose": {k: v for k, v in pose.items() if k != "zones"}}
    analytics = data.get("analytics") or {}
    if not isinstance(analytics, dict) or not isinstance(analytics.get("zones") or [], list):
        return data, [], range(0)  # nowhere to move them: validation reports the broken [analytics]
    fps = (data.get("source") or {}).get("fps", 30.0) if isinstance(data.get("source"), dict) else 30.0
    moved = []
    for z in pose["zones"]:
        if not isinstance(z, dict):
            moved.append(z)  # no table: validation says so, at its key
            continue
        n = {k: v for k, v in z.items() if k not in ("inertia", "anchor")}
        inertia = z.get("inertia", 3)
        n["enter_frames"] = inertia
        if isinstance(inertia, int) and isinstance(fps, (int, float)) and fps > 0:
            n["exit_s"] = round(inertia / fps, 3)
        if "anchor" in z:
            n["anchor"] = _POSE_ANCHOR.get(z["anchor"], z["anchor"]) if isinstance(z["anchor"], str) else z["anchor"]
        moved.append(n)
    analytics = dict(analytics)
    zones = list(analytics.get("zones") or [])
    analytics["zones"] = zones + moved
    data["analytics"] = analytics
    note = (f"pose.zones: moved to [[analytics.zones]] ({len(moved)} zone(s); `inertia` is now `enter_frames`, "
            "anchor \"hips\" is now \"center\"; zone events are zone_entered / zone_left with dwell_s) "
            "(fix: rename [[pose.zones]] to [[analytics.zones]] in the file)")
    return data, [note], range(len(zones), len(zones) + len(moved))


def alert_state_path(cfg, alerts, camera: str | None = None) -> Path | None:
    """The state file of the alert engine of `alerts` (the main `[alerts]`, or the section of `[[cameras]]` id
    `camera`): its `state_path`, else beside the outbox: <outbox folder>/alert-state-<device>[.<camera>].json (ids have no dots);
    None when `state_path` is "" (alerts in memory only)."""
    if alerts.state_path is not None:
        return Path(alerts.state_path).expanduser() if alerts.state_path else None
    suffix = f".{camera}" if camera else ""
    return cfg.sync.resolved_outbox_path(cfg.device.id).parent / f"alert-state-{cfg.device.id}{suffix}.json"



def _alert_state_clashes(cfg: EdgeConfig) -> list[str]:
    """Two alert engines (the main [alerts], each camera's) must not share a state file: each would overwrite the
    other's, and at a restart one would resolve the other's alerts as `rule_removed`."""
    seen: dict[Path, str] = {}
    out = []
    main = [("alerts", cfg.alerts, None)] if has_analytics(cfg.analytics) else []  # else the runtime opens none
    engines = main + [(f"cameras.{i}.alerts", c.alerts, c.id) for i, c in enumerate(cfg.cameras)]
    for key, alerts, camera in engines:
        path = alert_state_path(cfg, alerts, camera)
        if path is None:
            continue
        where = path.resolve()
        if where in seen:
            out.append(f"{key}.state_path: {str(path)!r} is also the alert state file of [{seen[where]}] (fix: give "
                       "each alert section its own state_path, or leave it unset for the default beside the outbox)")
        else:
            seen[where] = key
    return out


_ZONE_KEY = re.compile(r"(?<![\w.])analytics\.zones\.(\d+)")


def _in_file(problem: str, moved: range) -> str:
    """A problem that names zones moved from `[[pose.zones]]` names them where the file has them (`pose.zones.0`),
    and says where they went."""
    def old(m: re.Match) -> str:
        i = int(m.group(1))
        return f"pose.zones.{i - moved.start}" if i in moved else m.group(0)

    first = _ZONE_KEY.match(problem)
    text = _ZONE_KEY.sub(old, problem)
    if first and int(first.group(1)) in moved:
        text += f" (an old [[pose.zones]] entry: checked as {problem.split(': ', 1)[0]}, where it moved)"
    return text


def parse_config(data: dict, path: str = "<memory>") -> EdgeConfig:
    data, notes, moved = _migrate(data)
    try:
        cfg = EdgeConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(path, [_in_file(p, moved) for p in format_validation_error(path, e).problems]) from None
    problems = []
    try:
        cfg.alerts.validate_against(cfg.analytics_names())
    except AlertConfigError as e:
        problems += e.problems
    ids = [c.id for c in cfg.cameras]
    for i, cam in enumerate(cfg.cameras):
        try:
            cam.alerts.validate_against(cam.analytics_names(), prefix=f"cameras.{i}.alerts")
        except AlertConfigError as e:
            problems += e.problems
        if ids.count(cam.id) > 1 and ids.index(cam.id) != i:
            problems.append(f"cameras.{i}.id: {cam.id!r} is already the id of cameras.{ids.index(cam.id)} "
                            "(fix: give every camera its own id)")
    problems += _frame_problems(cfg.analytics, cfg.source, "analytics", "[source]")
    for i, cam in enumerate(cfg.cameras):
        problems += _frame_problems(cam.analytics, cam.source, f"cameras.{i}.analytics", f"cameras.{i}.source")
    problems += _planogram_clashes(cfg)
    problems += _alert_state_clashes(cfg)
    problems += _alert_gap_problems(cfg.alerts, cfg.source.fps, "alerts", "source.fps")
    for i, cam in enumerate(cfg.cameras):
        fps_key = f"cameras.{i}.fps" if cam.fps <= cam.source.fps else f"cameras.{i}.source.fps"
        problems += _alert_gap_problems(cam.alerts, min(cam.fps, cam.source.fps), f"cameras.{i}.alerts", fps_key)
    if cfg.cameras and cfg.models.person_detector is None:
        problems.append("cameras: extra cameras run the person detector, but [models.person_detector] is not set "
                        '(fix: add [models.person_detector] name = "nanodet_m_416")')
    if problems:
        raise ConfigError(path, [_in_file(p, moved) for p in problems])
    cfg._migrations = notes
    return cfg


def _alert_gap_problems(alerts: AlertsConfig, fps: float, prefix: str, fps_key: str) -> list[str]:
    """Frames further apart than max_gap_s would restart every rule's for_s at each frame (edge/alerts/engine.py):
    no alert could ever open."""
    period = 1.0 / fps
    if not (alerts.enabled and alerts.rules) or period < alerts.max_gap_s:
        return []
    return [f"{prefix}.max_gap_s: {alerts.max_gap_s:g} s, but frames come every {period:g} s ({fps_key} {fps:g}): "
            f"every frame would count as a gap in the data and no alert could open (fix: set {prefix}.max_gap_s "
            f"above {period:g}, or raise {fps_key})"]


def _frame_problems(analytics: AnalyticsConfig, source: SourceSection, prefix: str, source_key: str) -> list[str]:
    """Planogram polygons outside the stream's frames (every source delivers `width` x `height` frames)."""
    try:
        analytics.validate_frame(source.width, source.height, prefix=prefix)
    except FrameConfigError as e:
        return [p.replace("([source] width/height)", f"({source_key} width/height)") for p in e.problems]
    return []


def _planogram_clashes(cfg: EdgeConfig) -> list[str]:
    """Facing ids and planogram cameras must be unique on the device: the staff page's Retake button and the
    shelf_reference command name a facing by its id, camera_moved alerts and reference folders use the camera."""
    sections = [("analytics", cfg.analytics)] + [(f"cameras.{i}.analytics", c.analytics)
                                                 for i, c in enumerate(cfg.cameras)]
    problems: list[str] = []
    facings: dict[str, str] = {}
    cameras: dict[str, str] = {}
    for prefix, a in sections:
        p = a.planogram
        if not p.facings:
            continue
        key = f"{prefix}.planogram.camera"
        if p.camera in cameras:
            problems.append(f"{key}: {p.camera!r} is already the camera of {cameras[p.camera]} (fix: give each "
                            "planogram its own `camera` name; it keys camera_moved alerts and the reference folder)")
        cameras.setdefault(p.camera, key)
        for j, f in enumerate(p.facings):
            key = f"{prefix}.planogram.facings.{j}.id"
            if f.id in facings:
                problems.append(f"{key}: facing {f.id!r} is already {facings[f.id]} (fix: give every facing of "
                                "the device its own id; the staff page and shelf_reference name facings by id)")
            facings.setdefault(f.id, key)
    return problems


def load_config(path: str | Path) -> EdgeConfig:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(str(p), [f"cannot read file: {e.strerror} (fix: check the path)"]) from None
    raw = raw.removeprefix(codecs.BOM_UTF8)  # a byte-order mark (Windows editors) is no syntax error
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ConfigError(str(p), [f"not UTF-8 text: byte 0x{raw[e.start]:02x} at line {line} (fix: save the file "
                                   "as UTF-8)"]) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(str(p), [f"not valid TOML: {e} (fix: correct the syntax)"]) from None
    return parse_config(data, str(p))
