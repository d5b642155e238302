"""Fixtures for sync tests: a real mosquitto on a free loopback port (Debian package `mosquitto`)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from devtools.broker import Broker, prod_acl

MAKE_CERTS = Path(__file__).resolve().parents[2] / "sync" / "mosquitto" / "make_certs.sh"

if shutil.which("mosquitto") is None and not os.path.exists("/usr/sbin/mosquitto"):
    raise RuntimeError("mosquitto is not installed: run `bash scripts/setup.sh --test` (apt-get install mosquitto)")


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker").start()
    yield b
    b.close()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """Fleet and services CAs, the device s001/d001's and the cloud's certificates (sync/mosquitto/make_certs.sh)
    and the production ACL, in one folder per test module."""
    d = tmp_path_factory.mktemp("certs")
    subprocess.run(["bash", str(MAKE_CERTS), str(d), "s001/d001", "cloud"], check=True, capture_output=True)
    (d / "acl").write_text(prod_acl())
    return d
