"""Typed device configuration (one TOML per device kind), with errors that name the file, the key and the fix."""
from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator

from edge.core.config_base import StrictModel
from edge.core.device import DeviceIdentity
from edge.pose.config import PoseConfig
from edge.tryon.config import TryOnConfig
from sync.config import SyncConfig

BackendName = Literal["onnxruntime", "openvino", "tflite", "auto"]
Precision = Literal["fp32", "int8", "default"]


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
    reconnect_s: float = Field(2.0, gt=0, description="delay before reopening a lost camera / stream")

    @field_validator("uri")
    @classmethod
    def _uri_ok(cls, v: str, info) -> str:
        return v.strip()


class ModelRef(StrictModel):
    name: str  # model zoo name, e.g. "pose_landmark_full"
    backend: BackendName = "auto"
    precision: Precision = "default"  # "default": the precision the model card recommends
    threads: int = Field(2, ge=1, le=64)


class ModelsSection(StrictModel):
    cache_dir: str = ""  # "" = user cache dir (~/.cache/storefront-edge/models)
    pose_detector: ModelRef = ModelRef(name="pose_detection")
    pose_landmarks: ModelRef = ModelRef(name="pose_landmark_full")
    face_detector: ModelRef = ModelRef(name="face_detection_full_range")


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
    http: HttpSection = HttpSection()
    sync: SyncConfig = SyncConfig()
    logging: LoggingSection = LoggingSection()


def _fix_hint(err: dict, model_fields: set[str] | None) -> str:
    t = err["type"]
    if t == "extra_forbidden":
        name = str(err["loc"][-1]) if err["loc"] else ""
        close = difflib.get_close_matches(name, sorted(model_fields or ()), n=1)
        return f"remove it{f' or rename it to {close[0]!r}' if close else ''}"
    if t == "missing":
        return "add this key"
    if t in ("literal_error", "enum"):
        return f"use one of: {err.get('ctx', {}).get('expected', '')}"
    return "fix the value"


def _fields_at(loc: tuple, model=EdgeConfig) -> set[str]:
    """Allowed keys of the section that holds loc (for 'did you mean')."""
    cur = model
    for part in loc[:-1]:
        f = getattr(cur, "model_fields", {}).get(part)
        if f is None:
            return set()
        ann = f.annotation
        if not hasattr(ann, "model_fields"):
            return set()
        cur = ann
    return set(getattr(cur, "model_fields", {}))


def format_validation_error(path: str, exc: ValidationError) -> ConfigError:
    problems = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = ".".join(str(p) for p in loc) or "<root>"
        problems.append(f"{key}: {err['msg']} (fix: {_fix_hint(err, _fields_at(loc))})")
    return ConfigError(path, problems)


def parse_config(data: dict, path: str = "<memory>") -> EdgeConfig:
    try:
        return EdgeConfig.model_validate(data)
    except ValidationError as e:
        raise format_validation_error(path, e) from None


def load_config(path: str | Path) -> EdgeConfig:
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(str(p), [f"cannot read file: {e.strerror} (fix: check the path)"]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(str(p), [f"not valid TOML: {e} (fix: correct the syntax)"]) from None
    return parse_config(data, str(p))
