"""The local HTTP server on raw loopback sockets: a request body is never parsed as the next request (refused,
ignored and oversized bodies; bad Content-Length; Transfer-Encoding), the mirror's POSTs take only JSON of a valid
length and change the gesture view only by POST, and `[http] preview = false` takes /preview.mjpg away."""
from __future__ import annotations

import socket
import tempfile
import time

import numpy as np
import pytest

from edge.core.http_server import LocalHttpServer

from waiting import feed_until_dropped, wait_until

INNER = (b'POST /api/alerts/a1/resolve HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n'
         b'Content-Length: 14\r\n\r\n{"by":"evil"}\n')
LAST = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


def post(path: str, body: bytes, ctype: str = "text/plain", length: str | None = None) -> bytes:
    """One raw POST (`length` overrides the Content-Length header)."""
    cl = str(len(body)) if length is None else length
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nContent-Length: {cl}\r\n\r\n"
            .encode() + body)


def talk(port: int, *chunks: bytes, idle: float = 3.0) -> tuple[list[tuple[int, bytes]], bool]:
    """Send `chunks` on one connection; the (status, body) of each response read back and whether the server
    closed the connection (False: it was still open after `idle` s of silence)."""
    data, closed = b"", False
    with socket.create_connection(("127.0.0.1", port), timeout=idle) as s:
        for c in chunks:
            s.sendall(c)
        try:
            while chunk := s.recv(65536):
                data += chunk
            closed = True
        except TimeoutError:
            pass
        except ConnectionResetError:
            closed = True
    out = []
    while data:
        head, sep, rest = data.partition(b"\r\n\r\n")
        assert sep, f"half a response: {data!r}"
        lines = head.split(b"\r\n")
        n = next((int(v.split(b":", 1)[1]) for v in lines[1:] if v.lower().startswith(b"content-length:")), 0)
        out.append((int(lines[0].split()[1]), rest[:n]))
        data = rest[n:]
    return out, closed


class Engine:
    """An alert engine that only records ack/resolve calls (the staff routes' side effects)."""

    class Out:
        alert = {"id": "a1", "state": "resolved"}
        changed = True

    def __init__(self):
        self.calls = []

    def now_wall(self):
        return 0

    def active(self):
        return []

    def recent_resolved(self, n):
        return []

    def get(self, alert_id):
        return {"id": alert_id}

    def ack(self, alert_id, **kw):
        self.calls.append(("ack", alert_id, kw))
        return self.Out()

    def resolve(self, alert_id, **kw):
        self.calls.append(("resolve", alert_id, kw))
        return self.Out()


@pytest.fixture
def staff():
    from edge.alerts.server import make_staff_routes

    engine = Engine()
    srv = LocalHttpServer("127.0.0.1", 0, lambda: (True, {}))
    srv.add_method_routes(make_staff_routes(engine))
    srv.start()
    yield srv.port, engine
    srv.stop()


def test_refused_post_body_is_not_run_as_the_next_request(staff):
    """The reviewer's desync: a cross-site text/plain POST whose body is a JSON POST: 415, and nothing more runs."""
    port, engine = staff
    resp, closed = talk(port, post("/api/alerts/a1/ack", INNER), LAST)
    assert [c for c, _ in resp] == [415, 200] and closed  # the connection stays in step: healthz answers next
    assert engine.calls == []


@pytest.mark.parametrize("path", ["/healthz", "/api/alerts", "/nowhere"])
def test_body_of_a_route_that_ignores_it_is_skipped(staff, path):
    port, engine = staff
    resp, closed = talk(port, post(path, INNER), LAST)
    assert [c for c, _ in resp][1:] == [200] and len(resp) == 2 and closed
    assert engine.calls == []


def test_too_large_body_is_refused_before_the_route_and_the_connection_closed(staff):
    port, engine = staff
    resp, closed = talk(port, post("/api/alerts/a1/ack", b"", "application/json", length="10000000"))
    assert [c for c, _ in resp] == [413] and closed and engine.calls == []


@pytest.mark.parametrize("length", ["-1", "abc", "+14", "1_4", "0x0e", "14, 14", ""])
def test_bad_content_length_is_400_and_closes(staff, length):
    port, engine = staff
    resp, closed = talk(port, post("/api/alerts/a1/ack", b"", "application/json", length=length))
    assert [c for c, _ in resp] == [400] and closed and engine.calls == []


def test_two_content_lengths_or_transfer_encoding_are_refused(staff):
    port, engine = staff
    two = (b"POST /api/alerts/a1/ack HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
           b"Content-Length: 2\r\nContent-Length: 16\r\n\r\n")
    assert talk(port, two)[0][0][0] == 400
    chunked = (b"POST /api/alerts/a1/ack HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n")
    resp, closed = talk(port, chunked)
    assert [c for c, _ in resp] == [501] and closed and engine.calls == []


def test_keep_alive_still_works_for_good_posts(staff):
    port, engine = staff
    good = post("/api/alerts/a1/ack", b'{"by": "sam"}', "application/json")
    resp, closed = talk(port, good, good, LAST)
    assert [c for c, _ in resp] == [200, 200, 200] and closed
    assert [c[0] for c in engine.calls] == ["ack", "ack"]


# --- the mirror page --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mirror():
    """A real (not started) TryOnPipeline with gestures attached (the built hand models), its routes served."""
    from edge.app.config import ModelsSection
    from edge.tryon.config import TryOnConfig
    from edge.tryon.garments import Catalog
    from edge.tryon.pipeline import TryOnPipeline
    from edge.tryon.server import make_mirror_routes

    with tempfile.TemporaryDirectory() as cache:
        pipe = TryOnPipeline(TryOnConfig(), [], None, catalog=Catalog(cache_dir=cache))
        pipe.attach_gestures(ModelsSection())
        srv = LocalHttpServer("127.0.0.1", 0, lambda: (True, {}))
        srv.add_method_routes(make_mirror_routes(pipe), home="/mirror")
        srv.start()
        yield pipe, srv.port
        srv.stop()
        pipe.gestures.close()


def test_mirror_posts_need_json(mirror):
    pipe, port = mirror
    before = pipe.selection
    act = b'{"action": "next_garment"}'
    for ctype in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        resp, _ = talk(port, post("/mirror/api/action", act, ctype), LAST)
        assert [c for c, _ in resp] == [415, 200] and b"application/json" in resp[0][1]
    inner = post("/mirror/api/action", act, "application/json")
    resp, _ = talk(port, post("/mirror/api/select", inner), LAST)  # desync through the mirror
    assert [c for c, _ in resp] == [415, 200]
    assert pipe.selection == before
    resp, _ = talk(port, post("/mirror/api/action", act, "application/json"), LAST)
    assert [c for c, _ in resp] == [200, 200] and pipe.selection != before


def test_mirror_body_length_is_checked(mirror):
    pipe, port = mirror
    resp, closed = talk(port, post("/mirror/api/action", b"", "application/json", length="-1"))
    assert [c for c, _ in resp] == [400] and closed
    big = b'{"action": "next_garment", "pad": "' + b"x" * 5000 + b'"}'
    resp, closed = talk(port, post("/mirror/api/action", big, "application/json"), LAST)
    assert [c for c, _ in resp] == [413, 200] and closed


@pytest.mark.timeout(20)
def test_mirror_body_reader_refuses_a_negative_length_without_reading():
    """negcl.py: `_body` on a bare request whose Content-Length is -1 answers at once instead of reading until the
    client closes."""
    from edge.tryon.server import _body

    a, b = socket.socketpair()
    with a, b, a.makefile("rb") as rfile:

        class Req:
            headers = {"Content-Length": "-1", "Content-Type": "application/json"}

        Req.rfile = rfile
        b.sendall(b"x" * 4096)  # and never closes: read(-1) would wait for ever
        t0 = time.monotonic()
        with pytest.raises(ValueError) as e:
            _body(Req())
        assert e.value.code == 400 and time.monotonic() - t0 < 1.0
        Req.headers = {"Content-Length": "7"}  # no Content-Type: a cross-site simple request
        with pytest.raises(ValueError) as e:
            _body(Req())
        assert e.value.code == 415


def test_mirror_view_changes_only_by_post(mirror):
    pipe, port = mirror
    rec = pipe.gestures.recognizer
    rec.set_view(None)
    resp, _ = talk(port, b"GET /mirror/api/state?view=0.2,0,0.8,1 HTTP/1.1\r\nHost: x\r\n\r\n", LAST)
    assert [c for c, _ in resp] == [200, 200] and rec.view == (0.0, 0.0, 1.0, 1.0)  # a GET changes nothing
    view = b'{"view": "0.2,0,0.8,1"}'
    resp, _ = talk(port, post("/mirror/api/state", view), LAST)
    assert [c for c, _ in resp] == [415, 200] and rec.view == (0.0, 0.0, 1.0, 1.0)
    for bad in (b'{"view": "0.5,0,0.4,1"}', b'{"view": 3}'):
        resp, _ = talk(port, post("/mirror/api/state", bad, "application/json"), LAST)
        assert [c for c, _ in resp] == [400, 200] and b"view" in resp[0][1]
        assert rec.view == (0.0, 0.0, 1.0, 1.0)
    resp, _ = talk(port, post("/mirror/api/state", view, "application/json"), LAST)
    assert [c for c, _ in resp] == [200, 200] and rec.view == (0.2, 0.0, 0.8, 1.0)
    assert b'"gestures"' in resp[0][1]


# --- [http] preview ---------------------------------------------------------------------------------------------


def test_preview_false_serves_no_live_frames():
    srv = LocalHttpServer("127.0.0.1", 0, lambda: (True, {}), preview=False).start()
    try:
        for path in (b"/preview.mjpg", b"/preview.mjpg?x=1"):
            resp, _ = talk(srv.port, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert [c for c, _ in resp] == [404]
        assert not srv.preview.watched
        srv.preview.publish(np.zeros((8, 8, 3), np.uint8))  # the runtime's loop still calls it: nothing is kept
        assert srv.preview.wait(0, timeout=0.1) == (0, None)
    finally:
        srv.stop()


def test_preview_on_by_default_streams_frames():
    srv = LocalHttpServer("127.0.0.1", 0, lambda: (True, {})).start()
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            s.sendall(b"GET /preview.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
            head = s.recv(4096)
            assert head.startswith(b"HTTP/1.1 200") and b"multipart/x-mixed-replace" in head
            deadline = time.monotonic() + 5
            while not srv.preview.watched and time.monotonic() < deadline:
                time.sleep(0.02)
            assert srv.preview.watched
            srv.preview.publish(np.zeros((8, 8, 3), np.uint8))
            data = b""
            while b"\xff\xd8" not in data:
                data += s.recv(4096)
    finally:
        srv.stop()


def test_preview_viewer_that_leaves_before_any_frame_frees_its_thread():
    """Nothing published yet (no frame, or nobody drew one): a viewer that disconnects is noticed at the next wait,
    so its handler ends (viewers back to 0) instead of looping until a frame comes."""
    srv = LocalHttpServer("127.0.0.1", 0, lambda: (True, {})).start()
    try:
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        s.sendall(b"GET /preview.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        assert wait_until(lambda: srv.preview.viewers == 1, 5)
        s.close()
        assert wait_until(lambda: srv.preview.viewers == 0, 10), "the handler still streams to a closed socket"
    finally:
        srv.stop()


def test_preview_viewer_that_stops_reading_is_dropped(monkeypatch):
    """A viewer that keeps its socket open but reads nothing: once the socket buffers are full the handler's write
    blocked for good (a thread and a socket per hung viewer); it is dropped after STREAM_SEND_TIMEOUT_S."""
    from edge.core import http_server

    monkeypatch.setattr(http_server, "STREAM_SEND_TIMEOUT_S", 1.0)
    srv = LocalHttpServer("127.0.0.1", 0, lambda: (True, {})).start()
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        s.connect(("127.0.0.1", srv.port))
        s.sendall(b"GET /preview.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
        assert wait_until(lambda: srv.preview.viewers == 1, 5)
        feed_until_dropped(lambda: srv.preview.viewers, lambda k, img: srv.preview.publish(img), 20)
        assert srv.preview.viewers == 0, "the preview handler is still blocked writing to a viewer that reads nothing"
    finally:
        s.close()
        srv.stop()


def test_runtime_honours_http_preview_false(tmp_path, running):
    """`[http] preview = false` in a running Runtime: /preview.mjpg answers 404."""
    from edge.app.config import parse_config

    cfg = parse_config({"device": {"id": "k1", "store": "s1", "kind": "kiosk"}, "pose": {"enabled": False},
                        "http": {"preview": False},
                        "sync": {"broker": "", "outbox_path": str(tmp_path / "outbox.sqlite")},
                        "decisions": {"path": str(tmp_path / "decisions")}})
    with running(cfg, frames=0) as (rt, _), socket.create_connection(("127.0.0.1", rt.http.port), timeout=5) as s:
        s.sendall(b"GET /preview.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(4096).split(b"\r\n")[0] == b"HTTP/1.1 404 Not Found"


def test_pages_cannot_be_framed_by_another_site():
    """A device page (the staff page's Acknowledge / Resolve) loaded in a hidden frame over a decoy page would take
    staff clicks: HTML answers forbid framing (X-Frame-Options, CSP frame-ancestors) and every answer says nosniff;
    JSON answers are not HTML and carry no frame headers."""
    import urllib.request

    from edge.privacy.config import PrivacyConfig
    from edge.privacy.notice import make_notice_routes

    srv = LocalHttpServer("127.0.0.1", 0, lambda: (True, {})).start()
    srv.add_method_routes(make_notice_routes(PrivacyConfig()))
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/privacy", timeout=5) as r:
            assert r.headers["X-Frame-Options"] == "DENY"
            assert r.headers["Content-Security-Policy"] == "frame-ancestors 'none'"
            assert r.headers["X-Content-Type-Options"] == "nosniff"
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/healthz", timeout=5) as r:
            assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["X-Frame-Options"] is None
    finally:
        srv.stop()
