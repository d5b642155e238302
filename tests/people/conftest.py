"""People-detector fixtures: the real nanodet_m_416 zoo model (built on first use; a no-op when built) and a small
evaluation set with known boxes (devtools.people_evalset, cached in the model cache)."""
from __future__ import annotations

from pathlib import Path

import pytest

from edge.backends import available_backends
from edge.core.paths import cache_dir

MODEL = "nanodet_m_416"


@pytest.fixture(scope="session")
def people_zoo():
    from models.build.chain import build
    from models.zoo import ModelZoo

    cache = cache_dir()
    build(cache, only=[MODEL], progress=False)
    return ModelZoo(cache)


@pytest.fixture(scope="session")
def backends() -> list[str]:
    return [b for b, (ok, _) in available_backends().items() if ok]


@pytest.fixture(scope="session")
def small_set(people_zoo) -> list:
    """60 composite frames (people 30-420 px, every third frame only far people), 12 negatives, 12 real frames."""
    from devtools import people_evalset

    return people_evalset.cached(Path(people_zoo.cache), n_composite=60, n_negative=12, seed=7)
