"""The shopper notice on the device's local pages: `/privacy` (what the camera is used for) on every device and
`/kiosk/` (the kiosk's shopper page) on kiosks; the mirror page shows the same notice (edge/tryon/server.py)."""
from __future__ import annotations

import html
from pathlib import Path

from edge.core.http_server import send
from edge.privacy.config import PrivacyConfig

WEB = Path(__file__).with_name("web")
IMAGES_STAY = "Camera images never leave the device."
IMAGES_SNAPSHOTS = "Camera images leave the device only as the still pictures below, with every face blurred."
SNAPSHOT_LINE = ("<li>Staff may ask for a still picture of this camera for store operations. Every face in it is "
                 "blurred on this device before it is sent, and every request is logged.</li>")


def render(name: str, cfg: PrivacyConfig) -> bytes:
    """A page of edge/privacy/web with the notice (HTML-escaped) and the configured facts filled in."""
    days = f"{cfg.session_retention_days:g}"
    return ((WEB / name).read_text().replace("{{NOTICE}}", html.escape(cfg.shopper_notice))
            .replace("{{SESSION_DAYS}}", days).replace("{{SNAPSHOTS}}", SNAPSHOT_LINE if cfg.snapshots else "")
            .replace("{{IMAGES}}", IMAGES_SNAPSHOTS if cfg.snapshots else IMAGES_STAY).encode())


def make_notice_routes(cfg: PrivacyConfig, *, kiosk: bool = False) -> dict:
    """{(method, path): handler(req)}: `/privacy` and its style sheet, plus `/kiosk/` when `kiosk`."""

    def page(name: str):
        def h(req):
            send(req, 200, render(name, cfg), "text/html; charset=utf-8")
        return h

    def style(req):
        send(req, 200, (WEB / "style.css").read_bytes(), "text/css")

    routes = {("GET", "/privacy"): page("privacy.html"), ("GET", "/privacy/style.css"): style}
    if kiosk:
        routes[("GET", "/kiosk/")] = page("kiosk.html")
        routes[("GET", "/kiosk")] = lambda req: send(req, 302, b"", "text/plain", {"Location": "/kiosk/"})
    return routes
