"""Where the runtime keeps its cache (models, downloads, build venvs) and data (outbox)."""
from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "storefront-edge"


def cache_dir(override: str | os.PathLike | None = None) -> Path:
    """config value, else $STOREFRONT_EDGE_CACHE, else the user cache dir."""
    p = override or os.environ.get("STOREFRONT_EDGE_CACHE") or platformdirs.user_cache_dir(APP)
    return Path(p).expanduser()


def data_dir(override: str | os.PathLike | None = None) -> Path:
    """config value, else $STOREFRONT_EDGE_DATA, else the user data dir: the outbox, the decision log beside it
    (unless [sync] outbox_path / [decisions] path say otherwise) and shelf references."""
    p = override or os.environ.get("STOREFRONT_EDGE_DATA") or platformdirs.user_data_dir(APP)
    return Path(p).expanduser()
