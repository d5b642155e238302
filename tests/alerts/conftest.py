"""Fixtures for the alert tests: a real mosquitto (Debian `mosquitto`) and headless Chromium (chromedriver)."""
from __future__ import annotations

import os
import shutil

import pytest

from devtools.broker import Broker
from webdriver_client import chromium


@pytest.fixture
def broker(tmp_path):
    if shutil.which("mosquitto") is None and not os.path.exists("/usr/sbin/mosquitto"):
        raise RuntimeError("mosquitto is not installed: run `bash scripts/setup.sh --test` (apt-get install mosquitto)")
    b = Broker(tmp_path / "broker").start()
    yield b
    b.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with chromium(tmp_path_factory.mktemp("chrome-profile")) as wd:
        yield wd
