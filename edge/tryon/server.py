"""The mirror page over HTTP: live composited MJPEG, shopper actions (touch; gestures use the same seam,
`edge.tryon.actions.MirrorActions`), size suggestion, saved-look QR code (local only).

`make_mirror_routes(pipeline)` returns {(method, path): handler(request)} for the runtime's HTTP server to mount
(handlers take a `BaseHTTPRequestHandler`); `serve(pipeline, host, port)` runs it standalone on LocalHttpServer.
Only POSTs change the mirror, and they take only `Content-Type: application/json` bodies (415 otherwise).
"""
from __future__ import annotations

import html
import json
import logging
import threading
import time
from pathlib import Path

import cv2

from edge.core.http_server import STREAM_SEND_TIMEOUT_S, client_gone, json_body, send
from edge.privacy.config import DEFAULT_NOTICE
from edge.tryon.garments import CatalogError

log = logging.getLogger(__name__)
WEB = Path(__file__).with_name("web")
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css"}
BOUNDARY = "mirrorframe"


class JpegCache:
    """Encodes each composited frame once, however many clients watch."""

    def __init__(self, quality: int):
        self.quality = quality
        self._lock = threading.Lock()
        self._seq, self._data = None, None

    def get(self, frame) -> bytes | None:
        """The frame as JPEG; None if it cannot be encoded (logged once per frame)."""
        with self._lock:
            if frame.seq != self._seq:
                try:
                    ok, buf = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
                except cv2.error as e:
                    ok, why = False, str(e).strip().splitlines()[-1]
                else:
                    why = "the encoder refused it"
                if not ok:
                    log.error("mirror frame %d (%s) cannot be encoded as JPEG: %s", frame.seq,
                              "x".join(map(str, frame.image.shape)), why)
                self._seq, self._data = frame.seq, (buf.tobytes() if ok else None)
            return self._data


MAX_BODY = 4096  # bytes of a JSON request body (actions and selections are tiny)


def _json(req, code: int, obj) -> None:
    send(req, code, json.dumps(obj).encode(), "application/json")


def _body(req) -> dict:
    """The request's JSON object (json_body); BadBody naming what is wrong."""
    return json_body(req, MAX_BODY)


def _refuse(req, e: ValueError) -> None:
    _json(req, getattr(e, "code", 400), {"error": str(e)})


def parse_view(text: str) -> tuple[float, float, float, float]:
    """'x0,y0,x1,y1' fractions of the picture, 0 <= x0 < x1 <= 1 (same for y), each side at least 0.05."""
    try:
        x0, y0, x1, y1 = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"view: expected x0,y0,x1,y1 (fractions of the picture), got {text!r}") from None
    if not (0 <= x0 and x1 <= 1 and 0 <= y0 and y1 <= 1 and x1 - x0 >= 0.05 and y1 - y0 >= 0.05):
        raise ValueError(f"view: expected 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1 (at least 0.05 apart), got {text!r}")
    return x0, y0, x1, y1


def make_mirror_routes(pipeline, prefix: str = "/mirror", notice: str = DEFAULT_NOTICE) -> dict:
    """Route table {(method, path): handler(req)} for the mirror page of `pipeline`; the page shows `notice` (the
    shopper notice of `[privacy]`: the camera is in use, nothing leaves the device)."""
    page = pipeline.cfg.page
    jpeg = JpegCache(page.jpeg_quality)

    def static(name):
        def h(req):
            body = (WEB / name).read_bytes()
            if name == "index.html":
                body = body.replace(b"{{TITLE}}", html.escape(page.title).encode()).replace(
                    b"{{SHOW_STATS}}", b"true" if page.show_stats else b"false").replace(
                    b"{{NOTICE}}", html.escape(notice).encode())
            send(req, 200, body, _TYPES[Path(name).suffix])
        return h

    def catalog(req):
        sku, colour = pipeline.selection
        cat = pipeline.catalog  # garments whose model failed to load are left out
        _json(req, 200, {"garments": [cat.entry(s).to_public() for s in cat.skus()],
                         "selected": {"sku": sku, "colour": colour}})

    def full_state() -> dict:
        return {**pipeline.state(), **pipeline.actions.state()}

    def state(req):
        """GET: the state; it changes nothing (a `?view=` query is ignored: the view is POSTed)."""
        _json(req, 200, full_state())

    def post_state(req):
        """POST {"view": "x0,y0,x1,y1"}: the part of the picture the page shows (fractions), where gesture swatches
        go; then the state."""
        try:
            view = _body(req).get("view")
            if view is not None:
                if not isinstance(view, str):
                    raise ValueError(f'view: expected "x0,y0,x1,y1" (a string), got {view!r}'[:200])
                view = parse_view(view)
                if pipeline.gestures is not None:
                    pipeline.gestures.set_view(view)
        except ValueError as e:
            _refuse(req, e)
            return
        _json(req, 200, full_state())

    def select(req):
        try:
            body = _body(req)
            pipeline.select(str(body.get("sku", "")), str(body.get("colour", "")))
        except (ValueError, CatalogError) as e:
            _refuse(req, e)
            return
        _json(req, 200, full_state())

    def action(req):
        try:
            body = _body(req)
            done = pipeline.actions.apply(str(body.get("action", "")), body.get("value"), source="touch")
        except (ValueError, CatalogError) as e:  # ActionError is a ValueError
            _refuse(req, e)
            return
        _json(req, 200, {**full_state(), "applied": done["action"]})

    def look_svg(req):
        look = pipeline.actions.look()
        if look is None:
            _json(req, 404, {"error": 'no saved look: POST {"action": "save_look"} to api/action first'})
            return
        send(req, 200, look.svg, "image/svg+xml")

    def frame_jpg(req):
        f = pipeline.wait_frame(-1, timeout=3.0)
        if f is None:
            _json(req, 503, {"error": "no frame yet"})
            return
        data = jpeg.get(f)
        if data is None:
            _json(req, 503, {"error": f"frame {f.seq} cannot be encoded as JPEG (see the device log)"})
            return
        send(req, 200, data, "image/jpeg", {"X-Frame-Seq": str(f.seq)})

    def stream(req):
        req.send_response(200)
        req.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        req.send_header("Cache-Control", "no-store")
        if req.command == "HEAD":  # the headers only: frames after them would be read as the next answer
            req.end_headers()
            return
        req.send_header("Connection", "close")
        req.end_headers()
        req.close_connection = True
        req.connection.settimeout(STREAM_SEND_TIMEOUT_S)
        last, min_dt, t_last = -1, 1.0 / page.max_stream_fps, 0.0
        try:
            while True:
                f = pipeline.wait_frame(last, timeout=1.0)
                if f is None:  # no new frame: nothing to write would tell us the client left, so ask the socket
                    if pipeline._stop.is_set() or client_gone(req):
                        return
                    continue
                dt = time.monotonic() - t_last
                if dt < min_dt:
                    time.sleep(min_dt - dt)
                data = jpeg.get(f)
                last, t_last = f.seq, time.monotonic()
                if data is None:  # not encodable (logged): skip it
                    continue
                req.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                                .encode() + data + b"\r\n")
                req.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            log.debug("mirror stream client left")
        except TimeoutError:
            log.info("mirror stream client %s took no frame for %.0f s: dropped", req.address_string(),
                     STREAM_SEND_TIMEOUT_S)

    def index_redirect(req):
        send(req, 302, b"", "text/plain", {"Location": f"{prefix}/"})

    return {
        ("GET", f"{prefix}"): index_redirect,
        ("GET", f"{prefix}/"): static("index.html"),
        ("GET", f"{prefix}/app.js"): static("app.js"),
        ("GET", f"{prefix}/style.css"): static("style.css"),
        ("GET", f"{prefix}/api/catalog"): catalog,
        ("GET", f"{prefix}/api/state"): state,
        ("POST", f"{prefix}/api/state"): post_state,
        ("POST", f"{prefix}/api/select"): select,
        ("POST", f"{prefix}/api/action"): action,
        ("GET", f"{prefix}/api/look.svg"): look_svg,
        ("GET", f"{prefix}/frame.jpg"): frame_jpg,
        ("GET", f"{prefix}/stream.mjpg"): stream,
    }


def serve(pipeline, host: str = "127.0.0.1", port: int = 8080, background: bool = False,
          notice: str = DEFAULT_NOTICE):
    """Serve the mirror page (plus /healthz, /metrics) on the runtime's LocalHttpServer; blocks unless
    background=True (then returns the running server: `.port`, `.stop()`)."""
    from edge.core.http_server import LocalHttpServer  # noqa: PLC0415 - the runtime's server, only when standalone

    def health():
        st = pipeline.state()
        return st["renderer"] != "starting", st

    srv = LocalHttpServer(host, port, health)
    srv.add_method_routes(make_mirror_routes(pipeline, notice=notice), home="/mirror")
    srv.start()
    log.info("mirror page on http://%s:%d/mirror/", host, srv.port)
    if not background:
        try:
            threading.Event().wait()
        finally:
            srv.stop()
    return srv
