"""OpenGL platform setup for headless rendering: EGL before any OpenGL import, numpy-2 shim, clear errors.

Import `pyrender` only through `load_pyrender()` so the platform is chosen first and failures become
`RendererUnavailable` with a message that says what is missing.
"""
from __future__ import annotations

import logging
import os

import numpy as np

log = logging.getLogger(__name__)

# pyrender 0.1.45 uses np.infty (removed in numpy 2.0) in Mesh.bounds (scene.bounds/centroid/scale, shadows).
if not hasattr(np, "infty"):
    np.infty = np.inf  # type: ignore[attr-defined]

_INSTALL_HINT = ("install Mesa EGL: apt-get install -y --no-install-recommends libegl1 libegl-mesa0 "
                 "libgl1-mesa-dri libopengl0 libgl1; keep PYOPENGL_PLATFORM=egl")


class RendererUnavailable(RuntimeError):
    """The OpenGL renderer cannot start (no EGL device, missing libraries, bad platform)."""


def setup_platform() -> str:
    """Choose EGL unless the service already picked a platform; returns the platform name."""
    plat = os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    if plat != "egl":
        log.warning("PYOPENGL_PLATFORM=%s: the try-on renderer is tested with egl only", plat)
    return plat


def load_pyrender():
    """Import pyrender with the EGL platform; raises RendererUnavailable if OpenGL/EGL cannot load."""
    setup_platform()
    try:
        import pyrender  # noqa: PLC0415
    except Exception as e:  # ImportError, OSError from ctypes, pyglet display errors
        raise RendererUnavailable(f"cannot import pyrender/OpenGL ({type(e).__name__}: {e}); {_INSTALL_HINT}") from e
    return pyrender


def make_offscreen_renderer(width: int, height: int):
    """Create a pyrender OffscreenRenderer; any EGL failure becomes RendererUnavailable naming the cause."""
    pyrender = load_pyrender()
    try:
        return pyrender.OffscreenRenderer(int(width), int(height))
    except Exception as e:
        dev = os.environ.get("EGL_DEVICE_ID", "0")
        raise RendererUnavailable(
            f"EGL renderer could not start ({type(e).__name__}: {e}); PYOPENGL_PLATFORM="
            f"{os.environ.get('PYOPENGL_PLATFORM')}, EGL_DEVICE_ID={dev}; {_INSTALL_HINT}") from e


def gl_renderer_string() -> str:
    """GL_RENDERER of the current context (e.g. 'llvmpipe (LLVM 15.0.6, 256 bits)'); call on the render thread."""
    from OpenGL.GL import GL_RENDERER, glGetString  # noqa: PLC0415
    s = glGetString(GL_RENDERER)
    return s.decode() if isinstance(s, bytes) else str(s)
