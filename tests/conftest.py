"""Shared test fixtures. Area fixtures live in tests/<area>/conftest.py."""
from __future__ import annotations

import contextlib
import os
import tempfile
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
# device data (default outbox, decision log, alert state, shelf references) of this test run only: a config without
# outbox_path must not pick up another run's (or the user's) alerts or undelivered events
os.environ.setdefault("STOREFRONT_EDGE_DATA", tempfile.mkdtemp(prefix="sf-test-data-"))


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture
def running():
    """`with running(cfg, frames=10) as (rt, base):` an edge Runtime on a thread with its local HTTP server on a free
    port, once it has served `frames` frames (or `timeout` s passed); base = its http://127.0.0.1:PORT. Stopped and
    joined on exit (a runtime that does not stop fails the test). Extra keywords go to Runtime()."""

    @contextlib.contextmanager
    def start(cfg, frames: int = 10, timeout: float = 60.0, join_s: float = 30.0, **kw):
        from edge.app.runner import Runtime

        cfg.http.port = 0
        rt = Runtime(cfg, **kw)
        stop = threading.Event()
        th = threading.Thread(target=rt.run, args=(stop,), kwargs={"duration": timeout})
        th.start()
        try:
            deadline = time.monotonic() + timeout
            while (rt.http is None or rt.frames < frames) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert rt.http is not None, "the runtime did not start its HTTP server"
            yield rt, f"http://127.0.0.1:{rt.http.port}"
        finally:
            stop.set()
            th.join(timeout=join_s)
        assert not th.is_alive(), "the runtime did not stop"

    return start
