"""The `ack_alert` device command (sync.commands.AckAlertArgs: event_id, by, note) as an engine transition."""
from __future__ import annotations

import logging
from collections.abc import Callable

from edge.alerts.engine import AlertEngine, AlertError

log = logging.getLogger(__name__)


def ack_command_handler(engine: AlertEngine, *, error: type[Exception] = AlertError) -> Callable[[dict], dict]:
    """Handler for `commands={"ack_alert": ...}` of SyncService. `event_id` is the alert id (or the event id
    of any of the alert's transition events). An unknown or resolved alert raises `error` with the reason:
    pass sync.commands.CommandError so the command answers a plain `error` result."""

    def ack_alert(args: dict) -> dict:
        try:
            out = engine.ack(str(args["event_id"]), by=args.get("by") or "cloud", note=args.get("note") or "",
                             via="mqtt")
        except AlertError as e:
            log.info("ack_alert %s refused: %s", args.get("event_id"), e)
            raise error(str(e)) from None
        a = out.alert
        return {"acknowledged": a["alert_id"], "alert_id": a["alert_id"], "state": a["state"],
                "severity": a["severity"], "changed": out.changed}

    return ack_alert
