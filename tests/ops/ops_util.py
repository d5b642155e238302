"""Helpers of the operations tests (a module of its own: `conftest` is ambiguous when several test folders run)."""
from __future__ import annotations

import urllib.request
from pathlib import Path

from waiting import wait_until  # noqa: F401 - shared polling helper, re-exported

REPO = Path(__file__).resolve().parents[2]


def scrape(url: str) -> str:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        return r.read().decode()
