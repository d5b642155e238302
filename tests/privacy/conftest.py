"""Fixtures for the privacy tests: a real mosquitto on a free loopback port, a decision log of the test's own."""
from __future__ import annotations

import pytest


@pytest.fixture
def broker(tmp_path):
    from devtools.broker import Broker

    b = Broker(tmp_path / "broker").start()
    yield b
    b.close()


@pytest.fixture
def decision_log(tmp_path):
    """The process's decision log, in tmp_path/decisions (what the runtime sets up), for the test's duration."""
    from edge.core import decisions

    dl = decisions.DecisionLog(tmp_path / "decisions").open()
    decisions.set_default(dl)
    yield dl
    decisions.set_default(None)
    dl.close()
