"""Helpers shared by the sync tests (imported by basename: tests/sync is on sys.path in pytest's default mode)."""
from __future__ import annotations

import time

from edge.core.device import DeviceIdentity
from sync.client import ClientOptions
from sync.config import SyncConfig
from sync.consumer import Consumer

from waiting import wait_until  # noqa: F401, E402 - shared polling helper (tests/), re-exported


def start_consumer(port: int, db, client_id: str = "cloud-test", **kw) -> Consumer:
    c = Consumer(ClientOptions("127.0.0.1", port, client_id=client_id, reconnect_min_s=0.1, reconnect_max_s=0.5,
                               **kw), db, ack_interval_s=0.05)
    c.start()
    assert c.client.wait_connected(5), c.client.last_error
    time.sleep(0.05)  # SUBACK
    return c


def device_settings(port: int, outbox, device: str = "d001", store: str = "s001",
                    **sync) -> tuple[DeviceIdentity, SyncConfig]:
    """(identity, [sync] config) of a test kiosk on the local broker: `SyncService(*device_settings(...))`."""
    base = {"broker": "127.0.0.1", "port": port, "outbox_path": str(outbox), "telemetry_interval_s": 0,
            "reconnect_min_s": 0.1, "reconnect_max_s": 0.5, "ack_timeout_s": 1.5}
    return DeviceIdentity(id=device, store=store, kind="kiosk"), SyncConfig.model_validate({**base, **sync})


def requester(port: int, filters: list[str], **kw):
    from sync.request import Requester

    return Requester(ClientOptions("127.0.0.1", port, **kw), filters)
