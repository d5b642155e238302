"""Model-update job: its states, the job record and the agent's settings, shared by the MQTT transport
(sync/update_transport.py), the installer (sync/update_installer.py) and the `ModelUpdateAgent` façade
(sync/model_update.py)."""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from sync.config import SyncConfig
from sync.update_shadow import ShadowConfig

QUEUED, DOWNLOADING, VERIFYING, SELF_TEST, ACTIVATING = "QUEUED", "DOWNLOADING", "VERIFYING", "SELF_TEST", "ACTIVATING"
SHADOW = "SHADOW"  # after SELF_TEST: run beside the active model on live inputs (sync/update_shadow.py)
SUCCEEDED, FAILED, ROLLED_BACK = "SUCCEEDED", "FAILED", "ROLLED_BACK"
TERMINAL = (SUCCEEDED, FAILED, ROLLED_BACK)
STOPPING = "agent stopping"  # cancel reason of a job interrupted by a graceful stop: it resumes at the next start


@dataclass
class UpdateOptions:
    """Agent settings (code-level, except the three that `[sync]` sets: see `from_sync_config`)."""

    public_key: str | Path | None = None  # pinned fleet key (PEM); None: models.sign.public_key_path(cache)
    window: int = 8  # chunk subscriptions in flight
    chunk_timeout_s: float = 20.0  # no chunk for this long: re-request the pending ones
    max_stalls: int = 3  # then FAILED (chunks kept: a new offer resumes)
    chunk_retries: int = 3  # corrupt copies of one chunk before FAILED
    manifest_timeout_s: float = 5.0  # a published manifest is retained: it arrives within milliseconds
    max_bytes_per_s: float = 0.0  # download rate cap (store uplinks); 0 = none
    reserve_bytes: int = 64 << 20  # disk that must stay free after the download
    backends: list[str] | None = None  # backends to self-test on; None: every installed one
    selftest_timeout_s: float = 600.0  # a self-test still running then fails (a runtime hangs on an artefact)
    threads: int = 1
    shadow: ShadowConfig | None = None  # `[shadow]`; used when the agent has a shadow host (a running pipeline)

    @classmethod
    def from_sync_config(cls, config: SyncConfig) -> "UpdateOptions":
        """`update_public_key`, `update_max_bytes_per_s` and `update_manifest_timeout_s` of `[sync]`; the rest keep
        their defaults."""
        return cls(public_key=config.update_public_key or None, max_bytes_per_s=config.update_max_bytes_per_s,
                   manifest_timeout_s=config.update_manifest_timeout_s)


class OfferArgs(BaseModel):
    """Arguments of the `model_update` command (offer name@version)."""

    model_config = ConfigDict(extra="forbid", strict=True)
    name: str = Field(min_length=1, max_length=64)
    version: str = Field(min_length=1, max_length=64)
    rollout: str = Field("", max_length=64)
    reason: str = Field("", max_length=256)


class RollbackArgs(OfferArgs):
    """Arguments of the `model_rollback` command. `version` is the version the sender expects to roll back
    *from* (the active one, or the one being installed); a rollback naming another version is refused as
    stale or replayed. `rollout`, when given, must be the rollout that installed or is installing it."""


@dataclass
class Job:
    """One update of name to version, from QUEUED to a TERMINAL state."""

    name: str
    version: str
    rollout: str = ""
    state: str = QUEUED
    reason: str | None = None
    phase: str | None = None  # state in which it failed
    started: float = field(default_factory=time.time)
    progress: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    selftest: dict = field(default_factory=dict)
    shadow: dict = field(default_factory=dict)  # the shadow evaluation's report (sync/update_shadow.py)
    resumable: bool = False  # FAILED with its verified chunks kept (download stalled): a new offer resumes them
    cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    cancel_reason: str = field(default="", repr=False)
    staged: bool = field(default=False, repr=False)  # its verified manifest is on disk (staging folder exists)

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"

    def cancel_with(self, reason: str) -> None:
        """Ask the worker to stop this job; `reason` becomes its FAILED reason (first reason wins)."""
        if not self.cancel.is_set():
            self.cancel_reason = reason
            self.cancel.set()

    def to_dict(self) -> dict:
        return json.loads(json.dumps({f.name: getattr(self, f.name) for f in fields(self)
                                      if f.name not in ("cancel", "cancel_reason", "staged")}))
