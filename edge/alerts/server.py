"""The staff page over HTTP: open alerts with their evidence, Acknowledge / Resolve, a live counts panel.

`make_staff_routes(engine, live)` returns {(method, path): handler(request)} for the runtime's LocalHttpServer
(`add_method_routes`); `serve(engine, ...)` runs it standalone. Routes:

    GET  /staff, /staff/              the page (assets under /staff/)
    GET  /api/alerts                  {"now", "timezone", "utc_offset_s", "alerts": open + acked, "resolved": the
                                      last 10, "live": live(), "actions": ["shelf_reference"] or []}  (strict JSON:
                                      NaN / inf counts are null; the page shows times in `timezone`, the zone of
                                      the rules' hours, not the browser's)
    GET  /api/alerts/<id>             one alert (alert id or transition event id)
    POST /api/alerts/<id>/ack         body {"by", "note"} (JSON, both optional) → the alert
    POST /api/alerts/<id>/resolve     same
    POST /api/shelf/reference         body {"facing": id or "" (every facing), "by"} → {"pending": [facing ids]}
                                      (only when a `retake_reference` callable is given: devices with facings;
                                      the path is `shelf_api`, which the page is told)

POSTs must be `Content-Type: application/json` (a cross-site form cannot send that without a CORS preflight,
which this server never grants). A refused POST's body is read and dropped by LocalHttpServer, never run as a
request of its own. No frames are served here: only alert records and counts.
"""
from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from edge.alerts.engine import AlertEngine, InvalidTransition, UnknownAlert
from edge.alerts.values import plain_json
from edge.core.http_server import BadBody, json_body, send

log = logging.getLogger(__name__)
WEB = Path(__file__).with_name("web")
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8"}
_ALERT_PATH = re.compile(r"^/(?P<id>[A-Za-z0-9_-]{1,64})(?:/(?P<action>ack|resolve))?$")
MAX_BODY = 4096


def _json(req: BaseHTTPRequestHandler, code: int, obj) -> None:
    """Strict JSON only: a bare NaN / Infinity is not JSON, and the page's JSON.parse would refuse the whole poll."""
    send(req, code, json.dumps(obj, allow_nan=False).encode(), "application/json")


def _body(req: BaseHTTPRequestHandler) -> dict:
    """{"by", "note"} from a POST's JSON body; BadBody (415 / 413 / 400) otherwise."""
    obj = json_body(req, MAX_BODY)
    by, note = obj.get("by", ""), obj.get("note", "")
    if not isinstance(by, str) or not isinstance(note, str) or len(by) > 64 or len(note) > 512:
        raise BadBody(400, "'by' (up to 64 chars) and 'note' (up to 512 chars) must be strings")
    return {"by": by.strip(), "note": note.strip()}


def make_staff_routes(engine: AlertEngine, live: Callable[[], dict] | None = None, *, prefix: str = "/staff",
                      api: str = "/api/alerts", title: str = "Store alerts",
                      retake_reference: Callable[..., list[str]] | None = None,
                      shelf_api: str = "/api/shelf/reference") -> dict:
    """Route table {(method, path): handler(req)} of the staff page. `live()` returns a small JSON-able dict of
    counts for the live panel, e.g. {"queue": {"checkout": 3}, "zones": {...}, "lines": {"door": {"in": 5}}}.
    `retake_reference(facing_id | None, by=..., via="page")` (BehaviourStage.retake_reference) adds the shelf
    reference route and the page's "Retake reference" button on facing_empty and camera_moved alerts."""
    live_failing = threading.Event()

    def live_counts() -> dict:
        if live is None:
            return {}
        try:
            counts = live()
            if not isinstance(counts, dict):
                raise TypeError(f"live() returned {type(counts).__name__}, not a dict")
            json.dumps(counts)
            counts = plain_json(counts)  # NaN / inf (e.g. a wait estimate) -> null: the poll must stay strict JSON
        except Exception:  # noqa: BLE001 - the page must keep working without counts
            if not live_failing.is_set():
                log.exception("staff page: live counts unavailable")
                live_failing.set()
            return {}
        live_failing.clear()
        return counts

    def static(name: str):
        def h(req):
            body = (WEB / name).read_bytes()
            if name == "index.html":
                for k, v in (("TITLE", title), ("PREFIX", prefix), ("API", api), ("SHELF_API", shelf_api)):
                    body = body.replace(b"{{%s}}" % k.encode(), _html_escape(v).encode())
            send(req, 200, body, _TYPES[Path(name).suffix])
        return h

    cfg = getattr(engine, "config", None)  # the store's [alerts] timezone (an engine without one: the page's zone)
    zone = cfg.zone_name() if cfg is not None else ""

    def listing(req):
        now = engine.now_wall()
        _json(req, 200, {"now": now, "timezone": zone or None,
                         "utc_offset_s": cfg.utc_offset_s(now) if cfg is not None else None,
                         "alerts": engine.active(), "resolved": engine.recent_resolved(10),
                         "live": live_counts(), "actions": ["shelf_reference"] if retake_reference else []})

    def one(req):
        m = _ALERT_PATH.match(req.path.split("?", 1)[0][len(api):])
        if m is None:
            _json(req, 404, {"error": "not found"})
            return
        alert_id, action = m["id"], m["action"]
        try:
            if req.command in ("GET", "HEAD"):
                if action is not None:
                    _json(req, 405, {"error": f"use POST for {action}"})
                    return
                _json(req, 200, engine.get(alert_id))
                return
            if action is None:
                _json(req, 405, {"error": "POST to .../ack or .../resolve"})
                return
            args = _body(req)
            by = args["by"] or "staff"
            fn = engine.ack if action == "ack" else engine.resolve
            out = fn(alert_id, by=by, note=args["note"], via="page")
        except BadBody as e:
            _json(req, e.code, {"error": str(e)})
            return
        except UnknownAlert as e:
            _json(req, 404, {"error": str(e)})
            return
        except InvalidTransition as e:
            _json(req, 409, {"error": str(e)})
            return
        _json(req, 200, {**out.alert, "changed": out.changed})

    def shelf_reference(req):
        try:
            args = _shelf_body(req)
            pending = retake_reference(args["facing"] or None, by=args["by"] or "staff", via="page")
        except BadBody as e:
            _json(req, e.code, {"error": str(e)})
            return
        except KeyError as e:
            _json(req, 404, {"error": str(e.args[0]) if e.args else "unknown facing"})
            return
        _json(req, 200, {"pending": pending})

    routes = {
        ("GET", prefix): static("index.html"),
        ("GET", f"{prefix}/"): static("index.html"),
        ("GET", f"{prefix}/app.js"): static("app.js"),
        ("GET", f"{prefix}/style.css"): static("style.css"),
        ("GET", api): listing,
        ("GET", f"{api}/*"): one,
        ("POST", f"{api}/*"): one,
    }
    if retake_reference is not None:
        routes[("POST", shelf_api)] = shelf_reference
    return routes


def _shelf_body(req: BaseHTTPRequestHandler) -> dict:
    """{"facing", "by"} of a shelf reference POST (same content rules as the alert POSTs)."""
    obj = json_body(req, MAX_BODY)
    facing, by = obj.get("facing", ""), obj.get("by", "")
    if not isinstance(facing, str) or not isinstance(by, str) or len(facing) > 64 or len(by) > 64:
        raise BadBody(400, "'facing' and 'by' must be strings of up to 64 chars")
    facing = facing.strip()
    return {"facing": "" if facing.lower() == "all" else facing, "by": by.strip()}


def _html_escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;"))


def serve(engine: AlertEngine, host: str = "127.0.0.1", port: int = 8080, live: Callable[[], dict] | None = None,
          background: bool = False, retake_reference: Callable[..., list[str]] | None = None):
    """Serve the staff page (plus /healthz, /metrics) on a LocalHttpServer; blocks unless background=True
    (then returns the running server: `.port`, `.stop()`)."""
    from edge.core.http_server import LocalHttpServer  # noqa: PLC0415

    srv = LocalHttpServer(host, port, lambda: (True, {"alerts_active": len(engine.active())}))
    srv.add_method_routes(make_staff_routes(engine, live, retake_reference=retake_reference))
    srv.start()
    log.info("staff page on http://%s:%d/staff/", host, srv.port)
    if not background:
        try:
            threading.Event().wait()
        finally:
            srv.stop()
    return srv
