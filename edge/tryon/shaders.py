"""Fast-path shaders: pyrender's installed shaders with constant light-loop bounds for the fixed light rig.

On Mesa llvmpipe the stock `for (i = 0; i < n_point_lights; i++)` loops over uniform arrays are ~3-4x slower
than constant-bound loops. The output is pixel-identical for a scene with exactly the rig's light counts
(tests/tryon/test_tryon_shaders.py checks it).
"""
from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

RIG = {"directional": 1, "point": 1, "spot": 0}  # must match GarmentRenderer's light rig
_LOOPS = {"directional": "i < n_directional_lights", "point": "i < n_point_lights", "spot": "i < n_spot_lights"}


def stock_shader_dir() -> Path:
    from edge.tryon.gl import load_pyrender  # noqa: PLC0415
    return Path(load_pyrender().__file__).parent / "shaders"


def fixed_light_shader_dir(cache_dir: str | Path, rig: dict[str, int] = RIG) -> Path:
    """Create (once) and return a shader dir whose mesh.frag has constant light-loop bounds for `rig`."""
    src = stock_shader_dir()
    frag = (src / "mesh.frag").read_text()
    key = hashlib.sha1((frag + repr(sorted(rig.items()))).encode()).hexdigest()[:12]
    dst = Path(cache_dir) / f"fixed-d{rig['directional']}p{rig['point']}s{rig['spot']}-{key}"
    if (dst / "mesh.frag").exists():
        return dst
    for kind, loop in _LOOPS.items():
        if frag.count(loop) != 1:
            raise RuntimeError(f"installed pyrender mesh.frag has {frag.count(loop)} x {loop!r}, expected 1: "
                               "the fixed-light shader patch needs pyrender==0.1.45")
        frag = frag.replace(loop, f"i < {int(rig[kind])}")
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    (tmp / "mesh.frag").write_text(frag)
    tmp.replace(dst) if not dst.exists() else shutil.rmtree(tmp)
    log.info("wrote fixed light-loop shaders to %s", dst)
    return dst
