"""MQTT topic tree (`retail/v1/...`): builders for one device, fleet topics, and a parser.

Device subtree ``retail/v1/{store}/{device}/``:

- ``state``            retained birth / LWT (online, offline, models, capabilities, bdSeq)
- ``events/{kind}``    events (ack watermark delivery)
- ``alerts``           staff alerts (ack watermark delivery, never dropped)
- ``telemetry``        periodic health (PUBACK delivery, dropped first)
- ``cmd/{name}``       commands to the device (device subscribes to ``cmd/+``)
- ``cmd_result/{name}`` command results (outside ``cmd/`` on purpose)
- ``ack``              retained ack watermark from the cloud consumer
- ``update``           retained model-update status (sync/update_transport.py)

Fleet: ``retail/v1/fleet/cmd/{name}`` (every device) and ``retail/v1/fleet/{store}/cmd/{name}``
(every device of a store). ``fleet`` is therefore not a valid store id.
Model updates: ``retail/v1/fleet/models/{name}/{version}/manifest`` (retained, signed) and
``.../{version}/chunk/{file}/{index}`` (retained raw chunks), see docs/MODEL_UPDATES.md.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from models.manifest import VERSION_RE

ROOT = "retail/v1"
FLEET = "fleet"
# fullmatch only: `$` also matches before a trailing newline
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # store and device ids (same rule as edge.core.device.DeviceIdentity)
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")  # event kinds and command names

# Channels of the device subtree and whether they take a trailing name segment.
CHANNELS = {"state": False, "events": True, "alerts": False, "telemetry": False,
            "cmd": True, "cmd_result": True, "ack": False, "update": False}


def check_id(value: str, what: str = "id") -> str:
    """Return value if it is a valid store/device id (and not the reserved `fleet`), else raise ValueError."""
    if not isinstance(value, str) or not _ID.fullmatch(value) or value == FLEET:
        raise ValueError(f"invalid {what} {value!r}: use 1-64 of A-Z a-z 0-9 _ - (and not {FLEET!r})")
    return value


def check_name(value: str, what: str = "name") -> str:
    """Return value if it is a valid event kind / command name (one topic level, no wildcards)."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(f"invalid {what} {value!r}: use 1-64 of A-Z a-z 0-9 _ . - (not starting with . or -)")
    return value


@dataclass(frozen=True)
class DeviceTopics:
    """Topics of one device."""

    store: str
    device: str

    def __post_init__(self) -> None:
        check_id(self.store, "store id")
        check_id(self.device, "device id")

    @property
    def base(self) -> str:
        return f"{ROOT}/{self.store}/{self.device}"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def alerts(self) -> str:
        return f"{self.base}/alerts"

    @property
    def telemetry(self) -> str:
        return f"{self.base}/telemetry"

    @property
    def ack(self) -> str:
        return f"{self.base}/ack"

    @property
    def update(self) -> str:
        return f"{self.base}/update"

    def events(self, kind: str) -> str:
        return f"{self.base}/events/{check_name(kind, 'event kind')}"

    def cmd(self, name: str) -> str:
        return f"{self.base}/cmd/{check_name(name, 'command name')}"

    def cmd_result(self, name: str) -> str:
        return f"{self.base}/cmd_result/{check_name(name, 'command name')}"

    def for_stream(self, stream: str, kind: str) -> str:
        """Topic an event of `stream` (alerts | events | telemetry) and `kind` is published on."""
        if stream == "alerts":
            return self.alerts
        if stream == "telemetry":
            return self.telemetry
        if stream == "events":
            return self.events(kind)
        raise ValueError(f"unknown stream {stream!r}")

    def command_filters(self) -> list[str]:
        """Subscriptions of the device: its own commands plus fleet-wide and store-wide commands (no overlap)."""
        return [f"{self.base}/cmd/+", fleet_cmd_filter(), fleet_cmd_filter(self.store)]


def fleet_cmd(name: str, store: str | None = None) -> str:
    """Command topic for every device (store None) or every device of one store."""
    check_name(name, "command name")
    if store is None:
        return f"{ROOT}/{FLEET}/cmd/{name}"
    return f"{ROOT}/{FLEET}/{check_id(store, 'store id')}/cmd/{name}"


def fleet_cmd_filter(store: str | None = None) -> str:
    return f"{ROOT}/{FLEET}/cmd/+" if store is None else f"{ROOT}/{FLEET}/{store}/cmd/+"


UPDATE_FILTER = f"{ROOT}/+/+/update"


def check_version(value: str) -> str:
    """Return value if it is a valid model version (1-64 of A-Z a-z 0-9 . _ + -, one topic level)."""
    if not isinstance(value, str) or not VERSION_RE.fullmatch(value):  # the zoo's rule: a folder name too
        raise ValueError(f"invalid version {value!r}: use 1-64 of A-Z a-z 0-9 . _ + - (not starting with a symbol)")
    return value


def model_base(name: str, version: str) -> str:
    """Topic prefix of one published model version (manifest and chunks)."""
    return f"{ROOT}/{FLEET}/models/{check_name(name, 'model name')}/{check_version(version)}"


def model_manifest(name: str, version: str) -> str:
    return f"{model_base(name, version)}/manifest"


def model_chunk(name: str, version: str, file_index: int, chunk_index: int) -> str:
    return f"{model_base(name, version)}/chunk/{int(file_index)}/{int(chunk_index)}"


# Subscriptions of the reference cloud consumer (non-overlapping, so MQTT v5 delivers one copy each).
CONSUMER_FILTERS = [f"{ROOT}/+/+/events/+", f"{ROOT}/+/+/alerts", f"{ROOT}/+/+/telemetry",
                    f"{ROOT}/+/+/state", f"{ROOT}/+/+/cmd_result/+"]
STATE_FILTER = f"{ROOT}/+/+/state"


@dataclass(frozen=True)
class Parsed:
    """A parsed topic. Device topics: store, device, channel, name. Fleet commands: store may be None, device None."""

    store: str | None
    device: str | None
    channel: str
    name: str | None = None
    fleet: bool = False


def parse(topic: str) -> Parsed | None:
    """Parse a topic of the tree; None if it is not one (wrong root, reserved ids, bad names, wildcards)."""
    if not isinstance(topic, str) or not topic.startswith(ROOT + "/"):
        return None
    parts = topic[len(ROOT) + 1:].split("/")
    try:
        if parts[0] == FLEET:
            if len(parts) == 3 and parts[1] == "cmd":
                return Parsed(None, None, "cmd", check_name(parts[2]), fleet=True)
            if len(parts) == 4 and parts[2] == "cmd":
                return Parsed(check_id(parts[1]), None, "cmd", check_name(parts[3]), fleet=True)
            return None
        if len(parts) < 3:
            return None
        store, device, channel = check_id(parts[0]), check_id(parts[1]), parts[2]
        if channel not in CHANNELS:
            return None
        named = CHANNELS[channel]
        if named and len(parts) == 4:
            return Parsed(store, device, channel, check_name(parts[3]))
        if not named and len(parts) == 3:
            return Parsed(store, device, channel)
        return None
    except ValueError:
        return None
