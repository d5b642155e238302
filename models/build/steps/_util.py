"""Helpers shared by the step scripts (they run inside build venvs, without this project installed)."""
from __future__ import annotations

import argparse
import logging
import sys
import time

import numpy as np

NORMS = {"zero_one": (1 / 255.0, 0.0), "minus_one_one": (1 / 127.5, -1.0)}


def setup_logging(name: str) -> logging.Logger:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format=f"%(asctime)s {name}: %(message)s")
    return logging.getLogger(name)


def load_calib(path: str, norm: str, limit: int | None = None) -> list[np.ndarray]:
    """uint8 NHWC samples from an npz (key `x`) → list of (1, H, W, 3) float32 model inputs."""
    x = np.load(path)["x"]
    if limit:
        x = x[:limit]
    scale, offset = NORMS[norm]
    return [(s.astype(np.float32) * scale + offset)[None] for s in x]


class Timer:
    def __init__(self):
        self.t0 = time.monotonic()

    def __str__(self) -> str:
        return f"{time.monotonic() - self.t0:.1f}s"


def quantize_arg_parser() -> argparse.ArgumentParser:
    """Arguments every quantization step takes: src, dst, calibration data and its normalisation, info JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--data", required=True)
    ap.add_argument("--norm", required=True)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--info", help="write what was done (tool, scope, samples) here (JSON)")
    return ap
