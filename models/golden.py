"""Golden inputs/outputs of a built model (`golden.npz`), read at run time by backend auto-selection and the
model-update self-test. Written by the build chain (models.build.verify.save_golden).

Layout: `input:<name>` and `output:<name>` arrays; each stacks batch-1 samples on axis 0 (sample i is
`x[i:i+1]`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


class GoldenError(ValueError):
    """golden.npz is unreadable or holds no input/output arrays."""


def load_golden(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """({input name: array}, {output name: array}); GoldenError when the file is not a usable golden set."""
    try:
        with np.load(path, allow_pickle=False) as z:
            ins = {k.split(":", 1)[1]: z[k] for k in z.files if k.startswith("input:")}
            outs = {k.split(":", 1)[1]: z[k] for k in z.files if k.startswith("output:")}
    except Exception as e:  # noqa: BLE001 - OSError, ValueError, zipfile.BadZipFile from a corrupt file
        raise GoldenError(f"{path}: not a readable golden set ({type(e).__name__}: {e})") from None
    if not ins or not outs:
        raise GoldenError(f"{path}: has no input:/output: arrays")
    counts = {f"{kind}:{k}": (a.shape[0] if a.ndim else None) for kind, d in (("input", ins), ("output", outs))
              for k, a in d.items()}
    if not all(counts.values()):  # a parity check over no samples would compare nothing (or crash)
        raise GoldenError(f"{path}: has no samples (arrays with an empty or no first axis: "
                          f"{sorted(k for k, n in counts.items() if not n)})")
    if len(set(counts.values())) > 1:
        raise GoldenError(f"{path}: inputs and outputs have different sample counts (first axis: {counts})")
    return ins, outs
