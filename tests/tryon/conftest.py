"""Shared fixtures for the try-on tests: an isolated cache (garments, shaders) and the built catalogue."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


@pytest.fixture(scope="session")
def tryon_cache(tmp_path_factory):
    """One isolated cache (garments, shaders) for the whole try-on test session."""
    return tmp_path_factory.mktemp("sfcache")


@pytest.fixture(autouse=True)
def _use_tryon_cache(tryon_cache, monkeypatch):
    """Point the try-on tests (only them) at the isolated cache; other test folders keep the real model cache."""
    monkeypatch.setenv("STOREFRONT_EDGE_CACHE", str(tryon_cache))


@pytest.fixture(scope="session")
def catalog(tryon_cache):
    from edge.tryon.garments import Catalog
    return Catalog(cache_dir=tryon_cache / "garments")


@pytest.fixture(scope="session")
def intr():
    from edge.tryon.intrinsics import Intrinsics
    return Intrinsics.from_hfov(640, 480, 60.0)


@pytest.fixture(scope="module")
def renderer(intr, tryon_cache):
    """One fast-path renderer per test module (created and used on the pytest main thread)."""
    from edge.tryon.renderer import GarmentRenderer
    r = GarmentRenderer(intr, shader_cache_dir=tryon_cache / "shaders")
    yield r
    r.close()
