"""Typed config of MQTT sync ([sync] in a device TOML). No broker configured: events stay in the local outbox."""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from edge.core.config_base import StrictModel
from sync.commands import MAX_AGE_S, check_max_ages


class SyncConfig(StrictModel):
    broker: str = ""  # "" = no broker: events go to the local outbox only
    port: int = Field(1883, ge=1, le=65535)
    outbox_path: str = ""  # "" = the data dir (edge.core.paths.data_dir: $STOREFRONT_EDGE_DATA, else the user data
    # dir)/outbox-<device>.sqlite

    # identity and security
    # 129 = "<store>/<device>" with 64-character ids (what `edge fleet provision` writes)
    client_id: str = Field("", max_length=129, description="MQTT client id; '' = '<store>/<device>' (unique per "
                                                          "store and device, as the certificate CN)")
    username: str = Field("", max_length=129, description="'' = no username; convention: '<store>/<device>'")
    password: str = ""
    password_file: str = ""  # read at start (first line); wins over `password`
    tls: bool = False
    ca_file: str = ""  # CA of the broker certificate (tls = true)
    cert_file: str = ""  # client certificate, CN "<store>/<device>" (`edge fleet provision`): username and client id
    key_file: str = ""

    # session
    keepalive_s: int = Field(30, ge=5, le=3600)
    session_expiry_s: int = Field(7 * 86400, ge=0, le=0xFFFFFFFF,
                                  description="MQTT v5 SessionExpiryInterval (4 bytes; 4294967295 = never)")
    reconnect_min_s: float = Field(0.5, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)

    # delivery
    window: int = Field(20, ge=1, le=1000, description="MQTT messages in flight (QoS 1)")
    batch_max: int = Field(100, ge=1, le=10_000, description="events per MQTT message")
    batch_bytes: int = Field(64 << 10, ge=1024)
    ack_timeout_s: float = Field(10.0, gt=0, description="resend from the cloud ack watermark after this")
    backlog_rate: float = Field(2000.0, gt=0, description="events/s when flushing a backlog (historical)")

    # outbox
    max_outbox_mb: float = Field(256.0, gt=0, description="stored payload budget; telemetry dropped first, alerts never")
    max_event_bytes: int = Field(64 << 10, ge=256)
    durable_streams: list[Literal["alerts", "events", "telemetry"]] = Field(
        ["alerts"], description="streams committed with fsync (survive a power cut); the rest survive a crash")

    # telemetry and commands
    telemetry_interval_s: float = Field(60.0, ge=0, description="0 = no periodic telemetry")
    max_command_bytes: int = Field(16 << 10, ge=256)
    max_command_depth: int = Field(8, ge=2, le=64)
    command_max_age_s: float = Field(MAX_AGE_S, description="a command older than this by its sender's `ts` (it "
                                     "waited at the broker while the device was offline), or this far ahead of the "
                                     "device clock, is refused, not run (snapshot, model_update and model_rollback "
                                     "judge their own age)")
    command_max_ages: dict[str, float] = Field({}, description="per command name: its maximum age instead of "
                                                                "command_max_age_s, e.g. {reload_config = 600}")

    # model updates (docs/MODEL_UPDATES.md)
    model_updates: bool = True  # accept signed model updates offered over MQTT (needs a broker)
    update_public_key: str = ""  # PEM of the fleet's model-signing key; "" = the model cache's key
    update_max_bytes_per_s: float = Field(0.0, ge=0, description="download rate cap; 0 = none")
    update_manifest_timeout_s: float = Field(5.0, gt=0, le=300,
                                             description="an offered version whose manifest does not arrive "
                                                         "within this time fails")
    update_offer_max_age_s: float = Field(86400.0, gt=0, le=30 * 86400,
                                          description="an offer older than this by its `ts` (it waited at the "
                                                      "broker while the device was offline), or this far ahead of "
                                                      "the device clock, is refused")

    @model_validator(mode="after")
    def _tls_files(self) -> "SyncConfig":
        if self.tls and not self.ca_file:
            raise ValueError("ca_file: tls = true needs ca_file (the CA certificate of the broker's certificate)")
        if bool(self.cert_file) != bool(self.key_file):
            missing = "key_file" if self.cert_file else "cert_file"
            raise ValueError(f"{missing}: cert_file and key_file go together (fix: set {missing} too, or remove the "
                             "other)")
        check_max_ages(self.command_max_age_s, self.command_max_ages)
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError(f"reconnect_min_s ({self.reconnect_min_s}) is above reconnect_max_s "
                             f"({self.reconnect_max_s}): lower it or raise reconnect_max_s")
        return self

    def resolved_password(self) -> str:
        """password, or the first line of password_file (OSError if unreadable, PasswordFileError if empty or not
        UTF-8)."""
        if self.password_file:
            return read_password_file(self.password_file, "password_file")
        return self.password

    def resolved_client_id(self, store: str, device: str) -> str:
        """client_id, else "<store>/<device>": unique on a broker shared by several stores (a bare device id such
        as "mirror-01" in two stores would take over each other's session), and the identity the certificate,
        the username and the production broker's client-id binding use (`edge fleet provision`)."""
        return self.client_id or f"{store}/{device}"

    def resolved_outbox_path(self, device_id: str) -> Path:
        """outbox_path, else <data dir>/outbox-<device>.sqlite (the same root as the device's other data: shelf
        references, and the decision log beside the outbox)."""
        if self.outbox_path:
            return Path(self.outbox_path).expanduser()
        from edge.core.paths import data_dir

        return data_dir() / f"outbox-{device_id}.sqlite"


class PasswordFileError(ValueError):
    """A password file that is empty (`empty`) or not UTF-8 text."""

    def __init__(self, message: str, *, empty: bool):
        super().__init__(message)
        self.empty = empty


def read_password_file(path: str | Path, name: str) -> str:
    """The password on the first line of `path` (`name`: the key or flag it came from, for the message); OSError if
    unreadable, PasswordFileError if empty or not UTF-8 text."""
    try:
        lines = Path(path).read_bytes().decode("utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise PasswordFileError(f"{name} {path}: not UTF-8 text (save it as UTF-8, the password on its first line)",
                                empty=False) from None
    if not lines or not lines[0].strip():
        raise PasswordFileError(f"{name} {path}: empty (its first line is the password)", empty=True)
    return lines[0].strip()
