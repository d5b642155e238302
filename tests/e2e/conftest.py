"""Fixtures for end-to-end runs: the scripted store scene as a video file, and a real mosquitto broker."""
from __future__ import annotations

import pytest

from devtools.broker import Broker


@pytest.fixture(scope="session")
def store_video(tmp_path_factory):
    """One 100 s cycle of devtools.scenario as an MJPG AVI at its own 10 FPS (written once per session)."""
    from devtools import scenario

    path = tmp_path_factory.mktemp("scene") / "store.avi"
    return scenario.write_video(scenario.build(cycles=1), path)


@pytest.fixture
def broker(tmp_path):
    b = Broker(tmp_path / "broker").start()
    yield b
    b.close()
