"""Without a usable EGL device the renderer fails with a clear error and the mirror serves the plain camera view."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, logging, sys, time, urllib.request
import cv2, numpy as np
logging.basicConfig(level=logging.ERROR, stream=sys.stderr)
from edge.tryon.gl import RendererUnavailable
from edge.tryon.intrinsics import Intrinsics
out = {}
try:
    from edge.tryon.renderer import GarmentRenderer
    GarmentRenderer(Intrinsics.from_hfov(320, 240, 60))
    out["raised"] = None
except RendererUnavailable as e:
    out["raised"] = str(e)
from edge.tryon.config import TryOnConfig
from devtools.mannequin import MannequinSource, TruthPose
from edge.tryon.pipeline import TryOnPipeline
from edge.tryon.server import serve
src = MannequinSource(320, 240, fps=20, n_cycle=1)
pipe = TryOnPipeline(TryOnConfig(), src, TruthPose()).start()
srv = serve(pipe, "127.0.0.1", 0, background=True)
base = f"http://127.0.0.1:{srv.port}/mirror"
time.sleep(1.0)
jpg = urllib.request.urlopen(base + "/frame.jpg", timeout=10).read()
img = cv2.imdecode(np.frombuffer(jpg, np.uint8), cv2.IMREAD_COLOR)
camera = cv2.flip(src.cycle[0].image, 1)  # mirror view of the camera frame
out["frame_diff"] = float(np.abs(img.astype(int) - camera.astype(int)).mean())
out["state"] = json.loads(urllib.request.urlopen(base + "/api/state", timeout=10).read())
out["page"] = len(urllib.request.urlopen(base + "/", timeout=10).read())
srv.stop(); pipe.stop()
print("RESULT " + json.dumps(out))
"""


@pytest.mark.parametrize("env", [{"EGL_DEVICE_ID": "5"}, {"__EGL_VENDOR_LIBRARY_FILENAMES": "/nonexistent"}])
def test_no_egl_gives_clear_error_and_plain_camera_view(env, tryon_cache):
    e = {**os.environ, "PYOPENGL_PLATFORM": "egl", "STOREFRONT_EDGE_CACHE": str(tryon_cache), **env}
    p = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, env=e, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout.split("RESULT ", 1)[1])
    assert res["raised"] and "EGL renderer could not start" in res["raised"]
    assert "libegl" in res["raised"]  # names the fix
    assert res["state"]["renderer"] == "unavailable" and "EGL" in res["state"]["renderer_error"]
    assert res["state"]["frames"] > 5
    assert res["frame_diff"] < 3.0  # the served frame is the camera view (JPEG noise only)
    assert res["page"] > 200
    assert "showing the plain camera view" in p.stderr
