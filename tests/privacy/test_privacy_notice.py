"""The kiosk's shopper page (`/kiosk/`) and the `/privacy` page show the notice in headless Chromium; the page
says whether staff snapshots are enabled."""
from __future__ import annotations

import urllib.request

import pytest

from page_checks import assert_notice_visible
from webdriver_client import chromium, require_chromium

require_chromium()


@pytest.fixture
def server():
    from edge.core.http_server import LocalHttpServer
    from edge.privacy.config import PrivacyConfig
    from edge.privacy.notice import make_notice_routes

    cfg = PrivacyConfig(notice="Camera in use: it only counts who waits here. No image is kept or sent.",
                        session_retention_days=3)
    srv = LocalHttpServer("127.0.0.1", 0, lambda: (True, {}))
    srv.add_method_routes(make_notice_routes(cfg, kiosk=True), home="/kiosk/")
    srv.start()
    yield f"http://127.0.0.1:{srv.port}", cfg
    srv.stop()


def test_kiosk_and_privacy_pages_show_the_notice(server, tmp_path):
    base, cfg = server
    about = urllib.request.urlopen(base + "/privacy").read().decode()
    assert "deleted after 3 days" in about and "still picture" not in about  # snapshots are off
    with chromium(tmp_path / "profile", size=(800, 600)) as wd:
        for path in ("/kiosk/", "/", "/privacy"):
            wd.cmd("POST", "/url", {"url": base + path})
            assert_notice_visible(wd, cfg.notice)


def test_the_page_says_when_snapshots_are_on():
    from edge.privacy.config import PrivacyConfig
    from edge.privacy.notice import render

    on = render("privacy.html", PrivacyConfig(snapshots=True, snapshot_requesters=["manager"])).decode()
    assert "Every face in it is blurred on this device" in on
    assert "{{" not in on
    # with snapshots on, neither the default notice nor the page may still promise that images are never sent
    assert "never sent anywhere" not in on and "never leave the device" not in on
    assert "Staff may ask for a still picture" in on
    off = render("privacy.html", PrivacyConfig()).decode()
    assert "never sent anywhere" in off and "Camera images never leave the device." in off
    own = PrivacyConfig(snapshots=True, snapshot_requesters=["manager"], notice="Kamera aktiv: nur Zählung, kein Bild.")
    assert own.shopper_notice == own.notice  # a store's own text is shown as written
