"""Local HTTP: /healthz, /metrics, /preview.mjpg (unless `[http] preview = false`) and mounted pages (the try-on
mirror, the staff page). Loopback by default.

Request bodies: a Content-Length that is not one plain decimal number is refused (400), Transfer-Encoding (501) and
bodies over MAX_REQUEST_BODY (413) too, each closing the connection. Routes read the body through a reader that
stops at the declared length; whatever a route leaves unread (a refused or ignored body) is read and dropped before
the next request on the connection, so a body is never parsed as a request of its own."""
from __future__ import annotations

import json
import logging
import re
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest


log = logging.getLogger(__name__)

Route = Callable[[BaseHTTPRequestHandler], None]
MAX_REQUEST_BODY = 64 * 1024  # bytes; every route's own limit is lower (the JSON POSTs take 4 KB)
DRAIN_TIMEOUT_S = 5.0  # a body left unread by its route must arrive within this, else the connection is closed
# a connection silent this long (no request, half a request, an idle keep-alive) is closed, so a client that says
# nothing does not hold a handler thread and a socket for good (streams set their own send timeout)
REQUEST_TIMEOUT_S = 30.0
_LENGTH = re.compile(r"[0-9]{1,12}")


class FrameBroadcaster:
    """Holds the newest JPEG for MJPEG viewers; encodes only while someone watches."""

    def __init__(self, quality: int = 80, enabled: bool = True):
        self.quality = quality
        self.enabled = enabled  # False: `[http] preview = false`, publish() drops every frame
        self.viewers = 0
        self._jpeg: bytes | None = None
        self._seq = 0
        self._cond = threading.Condition()

    @property
    def watched(self) -> bool:
        """Someone watches (callers can skip drawing the preview frame when not)."""
        return self.enabled and self.viewers > 0

    def publish(self, image_bgr: np.ndarray) -> None:
        if not self.watched:
            return
        ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if ok:
            with self._cond:
                self._jpeg, self._seq = buf.tobytes(), self._seq + 1
                self._cond.notify_all()

    def wait(self, last_seq: int, timeout: float = 2.0) -> tuple[int, bytes | None]:
        with self._cond:
            self._cond.wait_for(lambda: self._seq != last_seq, timeout)
            return self._seq, self._jpeg


def client_gone(req: BaseHTTPRequestHandler) -> bool:
    """True when the client of `req` has closed its connection (EOF or reset waiting on the socket)."""
    sock = req.connection
    try:
        if not select.select([sock], [], [], 0)[0]:
            return False
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:  # reset, or closed here
        return True


# a stream client that takes no frame for this long (a hung browser that keeps its socket open) is dropped, so its
# handler thread and socket do not stay blocked in a write for good
STREAM_SEND_TIMEOUT_S = 10.0


def stream_mjpeg(h: BaseHTTPRequestHandler, source: FrameBroadcaster, stop: threading.Event) -> None:
    """Serve `source` as MJPEG until `stop`, the client leaves, a write fails or takes longer than
    STREAM_SEND_TIMEOUT_S; while nothing was published yet the client's socket is checked at each wait, so a viewer
    that left does not keep a thread. The answer has no length: the connection closes when it ends. HEAD: the
    headers only."""
    h.send_response(200)
    h.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
    h.send_header("Cache-Control", "no-store")
    if h.command != "HEAD":
        h.send_header("Connection", "close")
        h.close_connection = True
    h.end_headers()
    if h.command == "HEAD":
        return
    h.connection.settimeout(STREAM_SEND_TIMEOUT_S)
    with source._cond:  # handler threads: += is no atomic update
        source.viewers += 1
    seq = -1
    try:
        while not stop.is_set():
            seq, jpeg = source.wait(seq)
            if jpeg is None:
                if client_gone(h):
                    break
                continue
            h.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg))
            h.wfile.write(jpeg + b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    except TimeoutError:
        log.info("stream client %s took no frame for %.0f s: dropped", h.address_string(), STREAM_SEND_TIMEOUT_S)
    finally:
        with source._cond:
            source.viewers -= 1


class _Body:
    """A request's body as the route sees it (`rfile`): reads stop at the declared Content-Length."""

    def __init__(self, raw, length: int):
        self.raw, self.left = raw, length

    def read(self, size: int | None = -1) -> bytes:
        size = self.left if size is None or size < 0 else min(size, self.left)
        data = self.raw.read(size) if size else b""
        self.left -= len(data)
        return data


def _declared_length(h: BaseHTTPRequestHandler) -> int | None:
    """The request's body length; None after answering a body this server does not take (and closing)."""
    refuse = None
    lengths = h.headers.get_all("Content-Length") or []
    if h.headers.get("Transfer-Encoding") is not None:
        refuse = 501, b"Transfer-Encoding is not supported: send Content-Length\n"
    elif len(lengths) > 1 or (lengths and not _LENGTH.fullmatch(lengths[0].strip())):
        refuse = 400, b"bad Content-Length\n"
    elif lengths and int(lengths[0]) > MAX_REQUEST_BODY:
        refuse = 413, b"request body too large\n"
    if refuse is None:
        return int(lengths[0]) if lengths else 0
    log.info("refused %s %s from %s: %s", h.command, h.path[:80], h.address_string(), refuse[1].decode().strip())
    send(h, *refuse, "text/plain", {"Connection": "close"})
    return None


def _drain(h: BaseHTTPRequestHandler, body: _Body) -> None:
    """Read and drop what the route left of the body, so the connection stays in step; close it if that fails."""
    if body.left == 0 or h.close_connection:
        return
    try:
        h.connection.settimeout(DRAIN_TIMEOUT_S)
        while body.left and body.read(body.left):
            pass
        h.connection.settimeout(h.timeout)
    except OSError:  # TimeoutError included
        pass
    if body.left:
        log.info("closing the connection of %s: its request body did not arrive", h.address_string())
        h.close_connection = True


class LocalHttpServer:
    """Routes are exact paths → handler(request); a path ending in "/*" is a prefix route (the longest matching
    prefix answers paths no exact route has, e.g. "/api/alerts/<id>/ack"). `health` returns a JSON-able dict and
    an ok flag. `preview=False` (`[http] preview = false`): no /preview.mjpg (404) and `preview.publish` drops every
    frame."""

    def __init__(self, host: str, port: int, health: Callable[[], tuple[bool, dict]], preview: bool = True):
        self.routes: dict[str, Route] = {}
        self.prefix_routes: dict[str, Route] = {}  # "/api/alerts/" -> handler
        self.health = health
        self.preview = FrameBroadcaster(enabled=preview)
        self._stop = threading.Event()
        self._serving: threading.Thread | None = None
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            timeout = REQUEST_TIMEOUT_S

            def log_message(self, fmt, *args):  # route access logs to logging at DEBUG
                log.debug("%s " + fmt, self.address_string(), *args)

            def do_GET(self):  # noqa: N802 - http.server naming
                server._handle(self)

            def do_POST(self):  # noqa: N802
                server._handle(self)

            def do_HEAD(self):  # noqa: N802
                server._handle(self)

        server_class = _IPv6Server if ":" in host else ThreadingHTTPServer  # an IPv6 literal: "::1", "::"
        self.httpd = server_class((host, port), Handler)
        self.httpd.daemon_threads = True
        self.add("/healthz", self._healthz)
        self.add("/metrics", self._metrics)
        if preview:
            self.add("/preview.mjpg", lambda h: stream_mjpeg(h, self.preview, self._stop))

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    def add(self, path: str, route: Route) -> None:
        if path.endswith("/*"):
            self.prefix_routes[path[:-1]] = route
        else:
            self.routes[path] = route

    def add_method_routes(self, routes: dict[tuple[str, str], Route], home: str | None = None) -> None:
        """Mount {(method, path): handler} routes (e.g. the mirror page); `home` also answers at "/"."""
        by_path: dict[str, dict[str, Route]] = {}
        for (method, path), handler in routes.items():
            by_path.setdefault(path, {})[method] = handler
        if home is not None and home in by_path:
            by_path["/"] = by_path[home]
        for path, methods in by_path.items():
            self.add(path, lambda h, m=methods: (m.get("GET" if h.command == "HEAD" else h.command)
                                                 or _method_not_allowed)(h))

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        """One request: its body checked and bounded, the route, then the body's unread rest dropped."""
        n = _declared_length(h)
        if n is None:
            return
        raw = h.rfile
        h.rfile = body = _Body(raw, n)
        try:
            self._dispatch(h)
        finally:
            h.rfile = raw
        _drain(h, body)

    def _dispatch(self, h: BaseHTTPRequestHandler) -> None:
        path = h.path.split("?", 1)[0]
        route = self.routes.get(path)
        if route is None:
            prefix = max((p for p in self.prefix_routes if path.startswith(p)), key=len, default=None)
            route = self.prefix_routes.get(prefix) if prefix is not None else None
        try:
            if route is None:
                send(h, 404, b"not found\n", "text/plain")
            else:
                route(h)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):  # the client left, or stopped reading
            h.close_connection = True
        except Exception:  # noqa: BLE001 - one bad request must not kill the server
            log.exception("error serving %s", path)
            try:
                send(h, 500, b"internal error\n", "text/plain")
            except OSError:
                pass

    def _healthz(self, h: BaseHTTPRequestHandler) -> None:
        ok, body = self.health()
        send(h, 200 if ok else 503, json.dumps(body, default=str).encode(), "application/json")

    def _metrics(self, h: BaseHTTPRequestHandler) -> None:
        send(h, 200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)

    def start(self) -> LocalHttpServer:
        self._serving = threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True)
        self._serving.start()
        log.info("local HTTP on http://%s:%d (healthz, metrics%s)", *self.httpd.server_address[:2],
                 ", preview" if self.preview.enabled else "")
        return self

    def stop(self) -> None:
        """Stop serving and free the port; also for a server that never started (shutdown() would wait for good for
        a serve_forever that never ran)."""
        self._stop.set()
        if self._serving is not None:
            self.httpd.shutdown()
            self._serving = None
        self.httpd.server_close()


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _method_not_allowed(h: BaseHTTPRequestHandler) -> None:
    send(h, 405, b"method not allowed\n", "text/plain")


class BadBody(ValueError):
    """A request body a route does not take; `code` is the HTTP answer (400, 413 or 415)."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code


def json_body(h: BaseHTTPRequestHandler, max_bytes: int = 4096) -> dict:
    """A POST's JSON object body; BadBody otherwise: not application/json 415 (so a page on another site cannot send
    it without a CORS preflight, which these servers never grant), over max_bytes 413, a bad Content-Length, not
    JSON or not an object 400."""
    ctype = (h.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise BadBody(415, "Content-Type must be application/json")
    raw = (h.headers.get("Content-Length") or "0").strip()
    if not (raw.isascii() and raw.isdigit()):
        raise BadBody(400, f"bad Content-Length {raw[:20]!r}")
    n = int(raw)
    if n > max_bytes:
        raise BadBody(413, f"request body of {n} bytes is over {max_bytes}")
    try:
        obj = json.loads(h.rfile.read(n) or b"{}")
    except ValueError as e:  # not UTF-8 or not JSON
        raise BadBody(400, f"request body is not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise BadBody(400, "request body must be a JSON object")
    return obj


def send(h: BaseHTTPRequestHandler, code: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
    """One complete response (no body for HEAD); `extra` adds headers. Pages cannot be framed by another site (a
    hidden frame over a decoy page would take staff clicks: Acknowledge, Resolve)."""
    h.send_response(code)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(body)))
    h.send_header("Cache-Control", "no-store")
    h.send_header("X-Content-Type-Options", "nosniff")
    if ctype.startswith("text/html"):
        h.send_header("X-Frame-Options", "DENY")
        h.send_header("Content-Security-Policy", "frame-ancestors 'none'")
    for k, v in (extra or {}).items():
        h.send_header(k, v)
    h.end_headers()
    if h.command != "HEAD":
        h.wfile.write(body)


class RateMeter:
    """Events per second over a sliding 1 s window."""

    def __init__(self):
        self._t: deque[float] = deque()

    def tick(self) -> float:
        now = time.monotonic()
        self._t.append(now)
        while now - self._t[0] > 1.0:
            self._t.popleft()
        return float(len(self._t))
