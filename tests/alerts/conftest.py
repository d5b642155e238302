"""Fixtures for the alert tests: a real mosquitto (Debian `mosquitto`) and headless Chromium (chromedriver)."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
import urllib.request

import pytest

from alerts_helpers import CHROMIUM, DRIVER, WebDriver
from devtools.broker import Broker, free_port


@pytest.fixture
def broker(tmp_path):
    if shutil.which("mosquitto") is None and not os.path.exists("/usr/sbin/mosquitto"):
        raise RuntimeError("mosquitto is not installed: run `bash scripts/setup.sh --test` (apt-get install mosquitto)")
    b = Broker(tmp_path / "broker").start()
    yield b
    b.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not shutil.which(CHROMIUM) or not shutil.which(DRIVER):
        raise RuntimeError("headless Chromium is required: run `bash scripts/setup.sh --test` (chromium, "
                           "chromium-driver)")
    port = free_port()
    proc = subprocess.Popen([DRIVER, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(base + "/status", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    wd = WebDriver(base, str(tmp_path_factory.mktemp("chrome-profile")))
    yield wd
    wd.quit()
    proc.terminate()
    proc.wait(10)
