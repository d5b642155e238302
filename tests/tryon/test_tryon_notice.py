"""The mirror page tells shoppers that the camera is in use and nothing leaves the device (docs/PRIVACY.md): the
configured notice is on the page, visible in the viewport of headless Chromium, not over the page's controls."""
from __future__ import annotations

import urllib.request

import pytest

from devtools.mannequin import MannequinSource, TruthPose
from edge.core.events import ListSink
from edge.tryon.config import TryOnConfig
from edge.tryon.pipeline import TryOnPipeline
from edge.tryon.server import serve
from page_checks import assert_notice_visible
from webdriver_client import chromium, require_chromium

require_chromium()
NOTICE = "Camera in use <for the mirror>. Your image stays on this device & is never sent."

@pytest.fixture(scope="module")
def mirror(tryon_cache, catalog):
    pipe = TryOnPipeline(TryOnConfig(mirror_view=False), MannequinSource(640, 480, fps=15, n_cycle=1), TruthPose(),
                         ListSink(), catalog=catalog).start()
    srv = serve(pipe, "127.0.0.1", 0, background=True, notice=NOTICE)
    yield f"http://127.0.0.1:{srv.port}"
    srv.stop()
    pipe.stop()


def test_mirror_page_shows_the_notice(mirror, tmp_path):
    html = urllib.request.urlopen(mirror + "/mirror/").read().decode()
    assert "Camera in use &lt;for the mirror&gt;. Your image stays on this device &amp; is never sent." in html
    with chromium(tmp_path / "profile", size=(1000, 560)) as wd:
        wd.cmd("POST", "/url", {"url": mirror + "/mirror/"})
        wd.wait("const v = document.getElementById('video'); return v.complete && v.naturalWidth === 640;")
        assert_notice_visible(wd, NOTICE, avoid="controls")  # over the full-screen picture, clear of the buttons
