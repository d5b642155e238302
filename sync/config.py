"""Typed config of MQTT sync ([sync] in a device TOML). No broker configured: events stay in the local outbox."""
from __future__ import annotations

from pydantic import Field

from edge.config_base import StrictModel


class SyncConfig(StrictModel):
    broker: str = ""  # "" = no broker: events go to the local outbox only
    port: int = Field(1883, ge=1, le=65535)
    outbox_path: str = ""  # "" = user data dir
