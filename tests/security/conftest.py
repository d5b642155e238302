"""Attack tests (issue 15): each case runs against a real mosquitto. Reuses the sync test helpers
(tests/sync/sync_helpers.py, update_helpers.py)."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import settings

from devtools.broker import Broker

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sync"))

if shutil.which("mosquitto") is None and not os.path.exists("/usr/sbin/mosquitto"):
    raise RuntimeError("mosquitto is not installed: run `bash scripts/setup.sh --test` (apt-get install mosquitto)")

# No example database in the repository; the examples differ per run, failures print their reproducer.
settings.register_profile("security", database=None, deadline=None, max_examples=300)
settings.load_profile("security")


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker").start()
    yield b
    b.close()
