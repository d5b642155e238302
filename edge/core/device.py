"""Device identity: who this process is (the `[device]` section). Sync, events and the model-update agent need
only this, not the whole device config."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from edge.core.config_base import StrictModel

DeviceKind = Literal["tryon-mirror", "kiosk", "shelf-camera"]


class DeviceIdentity(StrictModel):
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="device id; also the MQTT client id")
    store: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    kind: DeviceKind
