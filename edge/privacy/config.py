"""`[privacy]` of a device config: snapshots (off by default, who may ask), the shopper notice, retention
(docs/PRIVACY.md)."""
from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from edge.core.config_base import StrictModel

DEFAULT_NOTICE = ("Camera in use. Your image is processed on this device only: it is not recorded, "
                  "not stored and never sent anywhere.")
# the default while snapshots are on: "never sent anywhere" would no longer be true
DEFAULT_NOTICE_SNAPSHOTS = ("Camera in use. Your image is processed on this device only: it is not recorded or "
                            "stored. Staff may ask for a still picture, with every face blurred on this device.")
_ID = r"^[A-Za-z0-9_.@:-]{1,64}$"
_KIND = r"^[a-z][a-z0-9_]{0,63}$"


class PrivacyConfig(StrictModel):
    """What may leave the device as an image (only anonymised snapshots, only when enabled, only for the listed
    requesters), what shoppers are told, and how long shopper-derived data stays on the device."""

    snapshots: bool = Field(False, description="answer the `snapshot` command with an anonymised still (faces "
                            "blurred); off: every request is refused (and recorded)")
    snapshot_requesters: list[str] = Field(default_factory=list, description="the `by` ids allowed to request a "
                                           "snapshot (staff or service accounts)")
    snapshot_min_interval_s: float = Field(10.0, ge=1, le=86400, description="at most one snapshot per this many "
                                           "seconds (a stream of snapshots would be video)")
    snapshot_max_width: int = Field(640, ge=160, le=1920, description="snapshots are downscaled to this width")
    snapshot_jpeg_quality: int = Field(70, ge=30, le=95)
    snapshot_mask_people: bool = Field(False, description="also paint every person's silhouette (segmentation) "
                                       "in a flat colour, not only the faces")
    face_threshold: float = Field(0.4, ge=0.2, le=0.9, description="face score that is blurred (recall first: "
                                  "MediaPipe's own operating point is 0.5, what leaves is checked at 0.5)")
    notice: str = Field(DEFAULT_NOTICE, min_length=20, max_length=400, description="shown on the mirror and "
                        "kiosk pages while the camera is in use")
    session_kinds: list[str] = Field(["tryon_session"], description="event kinds that are shopper session data: "
                                     "kept on the device (undelivered) for at most session_retention_days")
    session_retention_days: float = Field(7.0, gt=0, le=365)
    history_retention_days: float = Field(30.0, gt=0, le=3650, description="dead-lettered outbox records "
                                          "(undeliverable) are deleted after this")
    retention_check_s: float = Field(3600.0, ge=10, le=86400, description="how often the running device "
                                     "enforces the retention")

    @property
    def shopper_notice(self) -> str:
        """The notice shown: `notice`, or with snapshots on and the default notice, the default that says so."""
        return DEFAULT_NOTICE_SNAPSHOTS if self.snapshots and self.notice == DEFAULT_NOTICE else self.notice

    @field_validator("snapshot_requesters")
    @classmethod
    def _ids(cls, v: list[str]) -> list[str]:
        import re

        bad = [x for x in v if not re.match(_ID, x)]
        if bad:
            raise ValueError(f"{bad}: requester ids are 1-64 characters A-Z a-z 0-9 _ . @ : -")
        return v

    @field_validator("session_kinds")
    @classmethod
    def _kinds(cls, v: list[str]) -> list[str]:
        import re

        bad = [x for x in v if not re.match(_KIND, x)]
        if bad:
            raise ValueError(f"{bad}: event kinds are lower-case names like 'tryon_session'")
        return v

    @model_validator(mode="after")
    def _someone_may_ask(self) -> PrivacyConfig:
        if self.snapshots and not self.snapshot_requesters:
            raise ValueError("snapshot_requesters: empty while snapshots = true: nobody could request one (fix: "
                             "list who may, e.g. snapshot_requesters = [\"store-manager\"], or set snapshots = false)")
        return self
