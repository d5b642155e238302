"""Fixtures for sync tests: a real mosquitto on a free loopback port (Debian package `mosquitto`)."""
from __future__ import annotations

import os
import shutil

import pytest

from devtools.broker import Broker

if shutil.which("mosquitto") is None and not os.path.exists("/usr/sbin/mosquitto"):
    raise RuntimeError("mosquitto is not installed: run `bash scripts/setup.sh --test` (apt-get install mosquitto)")


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker").start()
    yield b
    b.close()
