"""The staff page: JSON API over the runtime's LocalHttpServer, then headless Chromium clicking Acknowledge and
Resolve, checked against the engine state and the emitted `alerts` events."""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from edge.alerts import Reading
from edge.alerts.server import serve

from alerts_helpers import FakeWall, kinds, make_engine, wait_until, wall

QUEUE = {"id": "checkout-queue", "title": "Long queue at checkout", "metric": "queue_length", "key": "checkout",
         "op": ">=", "threshold": 4, "for_s": 60, "clear_threshold": 2}
HELP = {"id": "kiosk-help", "title": "Help requested at the kiosk", "metric": "help_requested", "key": "kiosk",
        "severity": "critical"}
SHELF = {"id": "facing-a3", "title": "Shelf A3 needs restocking", "metric": "facing_empty", "key": "A3",
         "severity": "info"}
LIVE = {"queue": {"checkout": 5}, "zones": {"entrance": 2, "kiosk": 1, "checkout": 6},
        "lines": {"door": {"in": 148, "out": 131}}}


@pytest.fixture
def store():
    """An engine with three open alerts, served on a LocalHttpServer (loopback, free port)."""
    clock = FakeWall(wall(14, 7))
    engine, sink = make_engine(QUEUE, HELP, SHELF, wall_clock=clock)
    queue = Reading(5, track_ids=(17, 21, 22, 25, 31), durations_s={17: 212.4, 21: 150.0},
                    models={"pose_landmark_full": "0.10.21-int8"})
    for i in range(61):
        engine.update({("queue_length", "checkout"): queue, ("help_requested", "kiosk"): i >= 55,
                       ("facing_empty", "A3"): True}, 1000.0 + i, wall(14, 5) + i)
    assert kinds(sink) == ["alert_opened"] * 3
    srv = serve(engine, "127.0.0.1", 0, live=lambda: LIVE, background=True)
    yield engine, sink, f"http://127.0.0.1:{srv.port}", clock
    srv.stop()


def _get(url: str):
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def _post(url: str, body: bytes = b"{}", ctype: str = "application/json") -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _id(engine, rule: str) -> str:
    return next(a["alert_id"] for a in engine.active() if a["rule"] == rule)


def test_json_api(store):
    engine, sink, base, _ = store
    data = _get(base + "/api/alerts")
    assert [a["rule"] for a in data["alerts"]] == ["kiosk-help", "checkout-queue", "facing-a3"]  # by severity
    assert data["live"] == LIVE and data["resolved"] == [] and data["now"] == wall(14, 7)
    q = data["alerts"][1]
    assert q["evidence"]["track_ids"] == [17, 21, 22, 25, 31] and q["evidence"]["queue"] == "checkout"
    assert _get(f"{base}/api/alerts/{q['alert_id']}") == q
    opened = next(e for e in sink.events if e.data["rule"] == "checkout-queue")
    assert _get(f"{base}/api/alerts/{opened.event_id}")["alert_id"] == q["alert_id"]  # by event id
    url = f"{base}/api/alerts/{q['alert_id']}"
    assert _post(url + "/ack", b"by=x", "application/x-www-form-urlencoded")[0] == 415  # no cross-site forms
    assert _post(url + "/ack", b"[1]")[0] == 400
    assert _post(url + "/ack", b'{"by": 5}')[0] == 400
    assert _post(f"{base}/api/alerts/{'f' * 32}/ack")[0] == 404
    assert _post(f"{base}/api/alerts/../x/ack")[0] == 404
    code, a = _post(url + "/ack", b'{"by": "Sam", "note": "on it"}')
    assert code == 200 and a["state"] == "acked" and a["changed"] and a["ack_via"] == "page"
    code, a = _post(url + "/ack", b'{"by": "Alex"}')
    assert code == 200 and not a["changed"] and a["acked_by"] == "Sam"
    code, a = _post(url + "/resolve", b"{}")
    assert code == 200 and a["state"] == "resolved" and a["resolved_by"] == "staff"
    assert _post(url + "/ack")[0] == 409
    assert kinds(sink)[3:] == ["alert_acked", "alert_resolved"]
    assert _get(base + "/api/alerts")["resolved"][0]["alert_id"] == q["alert_id"]
    assert _get(base + "/healthz")["alerts_active"] == 2  # exact routes still answer next to prefix routes


def test_staff_acknowledge_and_resolve_in_chromium(store, browser):
    engine, sink, base, clock = store
    queue_id, help_id = _id(engine, "checkout-queue"), _id(engine, "kiosk-help")
    browser.cmd("POST", "/url", {"url": base + "/staff"})
    browser.wait("return document.querySelectorAll('#alerts .card').length === 3;")
    browser.wait("return document.querySelectorAll('#live .tile').length === 5;")
    page = browser.js("return document.body.innerText;")
    assert "Long queue at checkout" in page and "Help requested at the kiosk" in page
    assert "people #17, #21, #22, #25, #31" in page and "#17 for 3 min 32 s" in page and "pose_landmark_full 0.10.21-int8" in page
    assert "148 in · 131 out" in page
    browser.type("#staff-name", "Sam")
    card = f'#alerts .card[data-alert-id="{queue_id}"]'
    with open("/tmp/alerts_staff_page.png", "wb") as f:
        f.write(browser.screenshot_png())

    # a real click on Acknowledge
    clock.t = wall(14, 8)
    browser.type(f"{card} input.note", "opening till 2")
    browser.click(f"{card} button.ack")
    browser.wait(f"const c = document.querySelector('{card}'); "
                 "return c && c.querySelector('.badge.state').textContent === 'acknowledged';")
    a = engine.get(queue_id)
    assert a["state"] == "acked" and a["acked_by"] == "Sam" and a["ack_note"] == "opening till 2"
    assert a["ack_via"] == "page" and a["acked_at"] == wall(14, 8)
    acked = [e for e in sink.events if e.kind == "alert_acked"]
    assert len(acked) == 1 and acked[0].stream == "alerts" and acked[0].data["alert_id"] == queue_id
    assert acked[0].data["state"] == "acked" and acked[0].ts == wall(14, 8)
    assert browser.js(f"return document.querySelector('{card} button.ack').hidden;")  # nothing left to ack
    assert "Acknowledged by Sam" in browser.js(f"return document.querySelector('{card}').innerText;")

    # and Resolve on the help request
    help_card = f'#alerts .card[data-alert-id="{help_id}"]'
    browser.click(f"{help_card} button.resolve")
    browser.wait(f"return document.querySelector('{help_card}') === null;")
    h = engine.get(help_id)
    assert h["state"] == "resolved" and h["resolution"] == "staff" and h["resolved_by"] == "Sam"
    assert h["resolve_via"] == "page"
    assert kinds(sink) == ["alert_opened"] * 3 + ["alert_acked", "alert_resolved"]
    assert all(e.stream == "alerts" for e in sink.events)
    browser.wait("return document.getElementById('resolved').innerText.includes('Help requested at the kiosk');")
    assert browser.js("return document.querySelectorAll('#alerts .card').length;") == 2
    with open("/tmp/alerts_staff_page_after.png", "wb") as f:
        f.write(browser.screenshot_png())


# The shape of the runtime's live counts (Runner._live_counts): a queue's wait unknown (None), another camera's
# counts nested under `cameras`, and a value that is not finite.
RUNTIME_LIVE = {"zones": {"entrance": 2}, "lines": {"door": {"in": 5, "out": 2}},
                "queues": {"checkout": {"length": 3, "wait_s": None}}, "tracks": 4,
                "cameras": {"cam-2": {"zones": {"aisle": 1}, "queues": {}, "tracks": 1}}, "avg_wait_s": float("nan")}
NASTY = '<img src=x onerror="window.pwned=1">Help & "kiosk"'


def test_live_counts_of_the_runtime_and_markup_in_names_in_chromium(browser):
    engine, _ = make_engine({**HELP, "title": NASTY})
    engine.update({("help_requested", "kiosk"): Reading(True, detail={"sku": "<script>window.pwned=2</script>"})},
                  1.0, wall(10))
    engine.ack(engine.active()[0]["alert_id"], by="<b>Sam</b>")
    srv = serve(engine, "127.0.0.1", 0, live=lambda: RUNTIME_LIVE, background=True)
    try:
        base = f"http://127.0.0.1:{srv.port}"
        with urllib.request.urlopen(base + "/api/alerts", timeout=10) as r:  # strict JSON, as JSON.parse wants
            data = json.loads(r.read(), parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
        assert data["live"]["avg_wait_s"] is None and data["live"]["cameras"]["cam-2"]["zones"] == {"aisle": 1}
        browser.cmd("POST", "/url", {"url": base + "/staff"})
        browser.wait("return document.querySelectorAll('#alerts .card').length === 1;")
        browser.wait("return document.getElementById('live').textContent.includes('cam-2');")
        live = browser.js("return document.getElementById('live').innerText;")
        assert "[object Object]" not in live and "null" not in live and "NaN" not in live, live
        assert "3 length · – wait s" in live and "5 in · 2 out" in live and "1 aisle" in live, live
        assert "CAMERAS › CAM-2" in live.upper(), live
        card = browser.js("return document.querySelector('#alerts .card').innerText;")
        assert NASTY in card and "sku: <script>window.pwned=2</script>" in card and "by <b>Sam</b>" in card, card
        assert browser.js("return window.pwned === undefined && !document.querySelector('#alerts img, #alerts b');")
    finally:
        srv.stop()


def test_an_older_poll_answering_late_does_not_undo_a_click_in_chromium(browser):
    """A poll in flight while staff click Acknowledge answers after the click's own refresh: the page keeps the
    acknowledged card instead of showing the alert open again (with its Acknowledge button) until the next poll."""
    engine, sink = make_engine(HELP)
    engine.update({("help_requested", "kiosk"): True}, 1.0, wall(10))
    alert_id = engine.active()[0]["alert_id"]
    gate, held = threading.Event(), threading.Event()
    gate.set()
    polls = iter(range(1, 10_000))

    def live():  # /api/alerts reads the alerts before the counts: a held poll answers with the alerts of before
        if not gate.is_set() and not held.is_set():
            held.set()
            gate.wait(20)
        return {"poll": next(polls)}

    srv = serve(engine, "127.0.0.1", 0, live=live, background=True)
    try:
        browser.cmd("POST", "/url", {"url": f"http://127.0.0.1:{srv.port}/staff"})
        card = f'#alerts .card[data-alert-id="{alert_id}"]'
        browser.wait(f"return document.querySelector('{card} .badge.state')?.textContent === 'open';")
        gate.clear()
        assert wait_until(held.is_set, 20)  # the page's next poll is held with the alert still open
        browser.click(f"{card} button.ack")
        browser.wait(f"return document.querySelector('{card} .badge.state').textContent === 'acknowledged';")
        assert engine.get(alert_id)["state"] == "acked"
        browser.js(f"""window.seen = []; const b = document.querySelector('{card} .badge.state');
                      new MutationObserver(() => window.seen.push(b.textContent))
                        .observe(b, {{childList: true, characterData: true, subtree: true}});""")
        gate.set()  # the held poll answers now; then wait for two polls after it
        last = next(polls)
        browser.wait(f"const t = document.getElementById('live').textContent; "
                     f"const m = t.match(/(\\d+)poll/); return m && Number(m[1]) > {last + 1};")
        assert "open" not in browser.js("return window.seen;")
        assert browser.js(f"return document.querySelector('{card} button.ack').hidden;")
        assert kinds(sink) == ["alert_opened", "alert_acked"]
    finally:
        gate.set()
        srv.stop()


def test_times_on_the_page_are_in_the_alerts_timezone_not_the_browsers_in_chromium(browser):
    """The rules' hours use `[alerts] timezone`; the page shows every time in that zone too, whatever the zone of
    the tablet's browser (here Tokyo, while the store is in New York: 14:06 UTC is 09:06 there, 23:06 in Tokyo)."""
    clock = FakeWall(wall(14, 7))
    engine, _ = make_engine(QUEUE, wall_clock=clock, timezone="America/New_York")
    for i in range(61):
        engine.update({("queue_length", "checkout"): 5}, 1000.0 + i, wall(14, 5) + i)
    alert_id = engine.active()[0]["alert_id"]
    clock.t = wall(14, 8)
    engine.ack(alert_id, by="Sam")
    clock.t = wall(14, 9)
    srv = serve(engine, "127.0.0.1", 0, background=True)
    cdp = "/goog/cdp/execute"
    try:
        base = f"http://127.0.0.1:{srv.port}"
        data = _get(base + "/api/alerts")
        assert data["timezone"] == "America/New_York" and data["utc_offset_s"] == -5 * 3600
        browser.cmd("POST", cdp, {"cmd": "Emulation.setTimezoneOverride", "params": {"timezoneId": "Asia/Tokyo"}})
        browser.cmd("POST", "/url", {"url": base + "/staff"})
        assert browser.js("return Intl.DateTimeFormat().resolvedOptions().timeZone;") == "Asia/Tokyo"
        browser.wait("return document.querySelectorAll('#alerts .card').length === 1;")
        card = browser.js("return document.querySelector('#alerts .card').innerText;")
        assert "since 09:06" in card and "Acknowledged by Sam at 09:08" in card, card
        assert "Updated 09:09" in browser.js("return document.getElementById('status').textContent;")
        engine.resolve(alert_id, by="Sam")
        browser.wait("return document.getElementById('resolved').innerText.includes('resolved by Sam at 09:09');")
        # a zone this browser does not know: the device's UTC offset instead (here +05:30)
        assert "05:31" in browser.js("setZone('No/Such_Zone', 19800); return clock(60);")
    finally:
        browser.cmd("POST", cdp, {"cmd": "Emulation.setTimezoneOverride", "params": {"timezoneId": ""}})
        srv.stop()
