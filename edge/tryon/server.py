"""The mirror page over HTTP: live composited MJPEG, garment/colour picker, size suggestion (local only).

`make_mirror_routes(pipeline)` returns {(method, path): handler(request)} for the runtime's HTTP server to mount
(handlers take a `BaseHTTPRequestHandler`); `serve(pipeline, host, port)` runs a standalone ThreadingHTTPServer.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2

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
        self._seq, self._data = None, b""

    def get(self, frame) -> bytes:
        with self._lock:
            if frame.seq != self._seq:
                ok, buf = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
                self._seq, self._data = frame.seq, (buf.tobytes() if ok else b"")
            return self._data


def _send(req: BaseHTTPRequestHandler, code: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
    req.send_response(code)
    req.send_header("Content-Type", ctype)
    req.send_header("Content-Length", str(len(body)))
    req.send_header("Cache-Control", "no-store")
    for k, v in (extra or {}).items():
        req.send_header(k, v)
    req.end_headers()
    if req.command != "HEAD":
        req.wfile.write(body)


def _json(req, code: int, obj) -> None:
    _send(req, code, json.dumps(obj).encode(), "application/json")


def make_mirror_routes(pipeline, prefix: str = "/mirror") -> dict:
    """Route table {(method, path): handler(req)} for the mirror page of `pipeline`."""
    page = pipeline.cfg.page
    jpeg = JpegCache(page.jpeg_quality)

    def static(name):
        def h(req):
            body = (WEB / name).read_bytes()
            if name == "index.html":
                body = body.replace(b"{{TITLE}}", page.title.encode()).replace(
                    b"{{SHOW_STATS}}", b"true" if page.show_stats else b"false")
            _send(req, 200, body, _TYPES[Path(name).suffix])
        return h

    def catalog(req):
        sku, colour = pipeline.selection
        _json(req, 200, {"garments": [e.to_public() for e in pipeline.catalog.entries.values()],
                         "selected": {"sku": sku, "colour": colour}})

    def state(req):
        _json(req, 200, pipeline.state())

    def select(req):
        try:
            n = int(req.headers.get("Content-Length") or 0)
            body = json.loads(req.rfile.read(n) or b"{}")
            pipeline.select(str(body.get("sku", "")), str(body.get("colour", "")))
        except (ValueError, CatalogError) as e:
            _json(req, 400, {"error": str(e)})
            return
        _json(req, 200, pipeline.state())

    def frame_jpg(req):
        f = pipeline.wait_frame(-1, timeout=3.0)
        if f is None:
            _json(req, 503, {"error": "no frame yet"})
            return
        _send(req, 200, jpeg.get(f), "image/jpeg", {"X-Frame-Seq": str(f.seq)})

    def stream(req):
        req.send_response(200)
        req.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        req.send_header("Cache-Control", "no-store")
        req.send_header("Connection", "close")
        req.end_headers()
        req.close_connection = True
        last, min_dt, t_last = -1, 1.0 / page.max_stream_fps, 0.0
        try:
            while True:
                f = pipeline.wait_frame(last, timeout=1.0)
                if f is None:
                    if pipeline._stop.is_set():
                        return
                    continue
                dt = time.monotonic() - t_last
                if dt < min_dt:
                    time.sleep(min_dt - dt)
                data = jpeg.get(f)
                last, t_last = f.seq, time.monotonic()
                req.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                                .encode() + data + b"\r\n")
                req.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            log.debug("mirror stream client left")

    def index_redirect(req):
        _send(req, 302, b"", "text/plain", {"Location": f"{prefix}/"})

    return {
        ("GET", f"{prefix}"): index_redirect,
        ("GET", f"{prefix}/"): static("index.html"),
        ("GET", f"{prefix}/app.js"): static("app.js"),
        ("GET", f"{prefix}/style.css"): static("style.css"),
        ("GET", f"{prefix}/api/catalog"): catalog,
        ("GET", f"{prefix}/api/state"): state,
        ("POST", f"{prefix}/api/select"): select,
        ("GET", f"{prefix}/frame.jpg"): frame_jpg,
        ("GET", f"{prefix}/stream.mjpg"): stream,
    }


def make_server(pipeline, host: str = "127.0.0.1", port: int = 8080) -> ThreadingHTTPServer:
    """A ThreadingHTTPServer with the mirror routes (plus / -> /mirror/); call serve_forever() or use serve()."""
    routes = make_mirror_routes(pipeline)
    routes[("GET", "/")] = routes[("GET", "/mirror")]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _dispatch(self, method):
            h = routes.get((method, self.path.split("?", 1)[0]))
            if h is None:
                _json(self, 404, {"error": "not found"})
            else:
                h(self)

        def do_GET(self):  # noqa: N802
            self._dispatch("GET")

        def do_HEAD(self):  # noqa: N802
            self._dispatch("GET")

        def do_POST(self):  # noqa: N802
            self._dispatch("POST")

        def log_message(self, fmt, *args):
            log.debug("%s " + fmt, self.address_string(), *args)

    srv = ThreadingHTTPServer((host, port), Handler)
    srv.daemon_threads = True
    return srv


def serve(pipeline, host: str = "127.0.0.1", port: int = 8080, background: bool = False) -> ThreadingHTTPServer:
    """Serve the mirror page; blocks unless background=True (then returns the running server)."""
    srv = make_server(pipeline, host, port)
    log.info("mirror page on http://%s:%d/mirror/", host, srv.server_address[1])
    if background:
        threading.Thread(target=srv.serve_forever, name="mirror-http", daemon=True).start()
        return srv
    try:
        srv.serve_forever()
    finally:
        srv.server_close()
    return srv
