"""Typed config of the try-on mirror ([tryon] in a device TOML)."""
from __future__ import annotations

from edge.config_base import StrictModel


class TryOnConfig(StrictModel):
    enabled: bool = False
