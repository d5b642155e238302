"""Local HTTP: /healthz, /metrics, /preview.mjpg and mounted pages (the try-on mirror). Loopback by default."""
from __future__ import annotations

import json
import logging
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


class FrameBroadcaster:
    """Holds the newest JPEG for MJPEG viewers; encodes only while someone watches."""

    def __init__(self, quality: int = 80):
        self.quality = quality
        self.viewers = 0
        self._jpeg: bytes | None = None
        self._seq = 0
        self._cond = threading.Condition()

    def publish(self, image_bgr: np.ndarray) -> None:
        if self.viewers == 0:
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


def stream_mjpeg(h: BaseHTTPRequestHandler, source: FrameBroadcaster, stop: threading.Event) -> None:
    h.send_response(200)
    h.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
    h.send_header("Cache-Control", "no-store")
    h.end_headers()
    source.viewers += 1
    seq = -1
    try:
        while not stop.is_set():
            seq, jpeg = source.wait(seq)
            if jpeg is None:
                continue
            h.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg))
            h.wfile.write(jpeg + b"\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    finally:
        source.viewers -= 1


class LocalHttpServer:
    """Routes are exact paths → handler(request); a path ending in "/*" is a prefix route (the longest matching
    prefix answers paths no exact route has, e.g. "/api/alerts/<id>/ack"). `health` returns a JSON-able dict and
    an ok flag."""

    def __init__(self, host: str, port: int, health: Callable[[], tuple[bool, dict]]):
        self.routes: dict[str, Route] = {}
        self.prefix_routes: dict[str, Route] = {}  # "/api/alerts/" -> handler
        self.health = health
        self.preview = FrameBroadcaster()
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):  # route access logs to logging at DEBUG
                log.debug("%s " + fmt, self.address_string(), *args)

            def do_GET(self):  # noqa: N802 - http.server naming
                server._dispatch(self)

            def do_POST(self):  # noqa: N802
                server._dispatch(self)

            def do_HEAD(self):  # noqa: N802
                server._dispatch(self)

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.add("/healthz", self._healthz)
        self.add("/metrics", self._metrics)
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
        except (BrokenPipeError, ConnectionResetError):
            pass
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
        threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True).start()
        log.info("local HTTP on http://%s:%d (healthz, metrics, preview)", *self.httpd.server_address[:2])
        return self

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def _method_not_allowed(h: BaseHTTPRequestHandler) -> None:
    send(h, 405, b"method not allowed\n", "text/plain")


def send(h: BaseHTTPRequestHandler, code: int, body: bytes, ctype: str, extra: dict | None = None) -> None:
    """One complete response (no body for HEAD); `extra` adds headers."""
    h.send_response(code)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(body)))
    h.send_header("Cache-Control", "no-store")
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
