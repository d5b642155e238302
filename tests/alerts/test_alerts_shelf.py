"""Shelf alerts on the staff page: the shelf reference route, the "Retake reference" button (a real click in
headless Chromium) and the engine's on_ack hook."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from edge.alerts.server import serve

from alerts_helpers import FakeWall, make_engine, wall

FACING = {"id": "a3-empty", "title": "Shelf A3 needs restocking", "metric": "facing_empty", "key": "A3",
          "severity": "info"}
CAMERA = {"id": "cam-moved", "title": "Shelf camera moved", "metric": "camera_moved", "key": "aisle-1"}
QUEUE = {"id": "checkout-queue", "metric": "queue_length", "key": "checkout", "op": ">=", "threshold": 4}


class Facings:
    """Stands in for BehaviourStage.retake_reference: records the calls, knows A1-A3."""

    def __init__(self):
        self.calls: list[tuple] = []

    def __call__(self, facing, *, by="", via="api"):
        if facing is not None and facing not in ("A1", "A2", "A3"):
            raise KeyError(f"no facing {facing!r} on this device")
        self.calls.append((facing, by, via))
        return ["A1", "A2", "A3"] if facing is None else [facing]


@pytest.fixture
def shelf_store():
    engine, sink = make_engine(FACING, CAMERA, QUEUE, wall_clock=FakeWall(wall(9)))
    for i in range(3):
        engine.update({("facing_empty", "A3"): True, ("camera_moved", "aisle-1"): True,
                       ("queue_length", "checkout"): 5}, 100.0 + i, wall(9) + i)
    facings = Facings()
    srv = serve(engine, "127.0.0.1", 0, live=lambda: {"facings": {"A1": "full", "A3": "empty"}}, background=True,
                retake_reference=facings)
    yield engine, facings, f"http://127.0.0.1:{srv.port}"
    srv.stop()


def _post(url: str, body: bytes, ctype: str = "application/json") -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        raw = e.read()
        return e.code, json.loads(raw) if raw.startswith(b"{") else {}


def test_shelf_reference_route(shelf_store):
    engine, facings, base = shelf_store
    with urllib.request.urlopen(base + "/api/alerts", timeout=10) as r:
        data = json.loads(r.read())
    assert data["actions"] == ["shelf_reference"] and data["live"]["facings"]["A3"] == "empty"
    url = base + "/api/shelf/reference"
    assert _post(url, b'{"facing": "A3", "by": "Sam"}') == (200, {"pending": ["A3"]})
    assert _post(url, b'{"facing": "all"}') == (200, {"pending": ["A1", "A2", "A3"]})
    assert facings.calls == [("A3", "Sam", "page"), (None, "staff", "page")]
    code, body = _post(url, b'{"facing": "Z9"}')
    assert code == 404 and "no facing 'Z9'" in body["error"]
    assert _post(url, b"facing=A3", "application/x-www-form-urlencoded")[0] == 415
    assert _post(url, b'{"facing": 3}')[0] == 400
    assert len(facings.calls) == 2


def test_no_route_without_facings():
    engine, _ = make_engine(QUEUE)
    srv = serve(engine, "127.0.0.1", 0, background=True)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{srv.port}/api/alerts", timeout=10) as r:
            assert json.loads(r.read())["actions"] == []
        assert _post(f"http://127.0.0.1:{srv.port}/api/shelf/reference", b"{}")[0] == 404
    finally:
        srv.stop()


def test_on_ack_hook_sees_the_acknowledged_alert():
    engine, _ = make_engine(FACING)
    seen = []
    engine.on_ack.append(seen.append)
    engine.on_ack.append(lambda a: 1 / 0)  # a failing hook does not undo the acknowledgement
    engine.update({("facing_empty", "A3"): True}, 1.0, wall(9))
    alert_id = engine.active()[0]["alert_id"]
    assert engine.ack(alert_id, by="sam").changed
    assert engine.ack(alert_id, by="sam").changed is False  # no second call for a no-op ack
    assert [(a["metric"], a["key"], a["acked_by"], a["state"]) for a in seen] == \
        [("facing_empty", "A3", "sam", "acked")]


def test_retake_reference_button_in_chromium(shelf_store, browser):
    engine, facings, base = shelf_store
    browser.cmd("POST", "/url", {"url": base + "/staff"})
    browser.wait("return document.querySelectorAll('#alerts .card').length === 3;")
    facing_id = next(a["alert_id"] for a in engine.active() if a["rule"] == "a3-empty")
    queue_id = next(a["alert_id"] for a in engine.active() if a["rule"] == "checkout-queue")
    cam_id = next(a["alert_id"] for a in engine.active() if a["rule"] == "cam-moved")
    card = f'#alerts .card[data-alert-id="{facing_id}"]'
    browser.wait(f"return !document.querySelector('{card} button.retake').hidden;")
    assert browser.js(f"return document.querySelector('#alerts .card[data-alert-id=\"{queue_id}\"] "
                      "button.retake').hidden;")  # only shelf alerts get the button
    assert "empty" in browser.js("return document.getElementById('live').innerText;")
    browser.type("#staff-name", "Sam")
    browser.click(f"{card} button.retake")
    browser.wait("const t = document.getElementById('toast'); return !t.hidden && t.textContent.includes('A3');")
    assert facings.calls == [("A3", "Sam", "page")]
    browser.click(f'#alerts .card[data-alert-id="{cam_id}"] button.retake')  # camera moved: every facing
    browser.wait("return document.getElementById('toast').textContent.includes('A1, A2, A3');")
    assert facings.calls[-1] == (None, "Sam", "page")
    assert engine.get(facing_id)["state"] == "open"  # retaking is not acknowledging
    with open("/tmp/alerts_staff_page_shelf.png", "wb") as f:
        f.write(browser.screenshot_png())


def test_retake_button_posts_to_the_shelf_api_the_routes_were_made_with(browser):
    from edge.alerts.server import make_staff_routes
    from edge.core.http_server import LocalHttpServer

    engine, _ = make_engine(FACING)
    engine.update({("facing_empty", "A3"): True}, 1.0, wall(9))
    facings = Facings()
    srv = LocalHttpServer("127.0.0.1", 0, lambda: (True, {}))
    srv.add_method_routes(make_staff_routes(engine, retake_reference=facings, shelf_api="/api/store/shelf-reference"))
    srv.start()
    try:
        browser.cmd("POST", "/url", {"url": f"http://127.0.0.1:{srv.port}/staff"})
        card = f'#alerts .card[data-alert-id="{engine.active()[0]["alert_id"]}"]'
        browser.wait(f"const c = document.querySelector('{card}'); return c && !c.querySelector('button.retake').hidden;")
        browser.click(f"{card} button.retake")
        browser.wait("const t = document.getElementById('toast'); return !t.hidden && t.textContent.includes('A3');")
        assert facings.calls == [("A3", "staff", "page")]
    finally:
        srv.stop()
