"""The MediaPipe Pose reference: its own venv (numpy<2, protobuf<5) and a subprocess driven over stdin/stdout.

The venv lives in `<cache>/venvs/mediapipe-ref/` and is created once with exact pins (an unpinned install
backtracks through ~1.9 GB of jax/opencv wheels). The worker (reference_worker.py) runs
`mp.solutions.pose.Pose(model_complexity=1)` and returns landmarks in image px.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.core.paths import cache_dir

log = logging.getLogger(__name__)

PINS = ("mediapipe==0.10.21", "jax==0.7.1", "jaxlib==0.7.1", "opencv-contrib-python==4.11.0.86", "numpy==1.26.4",
        "protobuf==4.25.9")
VENV_NAME = "mediapipe-ref"
MARKER = ".storefront-pins"
WORKER = Path(__file__).with_name("pose_reference_worker.py")


class ReferenceError(RuntimeError):
    """The MediaPipe reference venv cannot be created or the worker failed."""


def venv_dir(cache: Path | None = None) -> Path:
    return (cache or cache_dir()) / "venvs" / VENV_NAME


def _python(d: Path) -> Path:
    return d / "bin" / "python"


def is_ready(cache: Path | None = None) -> bool:
    d = venv_dir(cache)
    m = d / MARKER
    return _python(d).exists() and m.is_file() and m.read_text().split() == list(PINS)


def ensure_venv(cache: Path | None = None, timeout_s: float = 1800) -> Path:
    """Python of the reference venv, creating it (≈1 GB download, a few minutes) when missing."""
    d = venv_dir(cache)
    if is_ready(cache):
        return _python(d)
    part = d.with_name(d.name + ".part")
    shutil.rmtree(part, ignore_errors=True)
    part.parent.mkdir(parents=True, exist_ok=True)
    base = getattr(sys, "_base_executable", sys.executable)
    log.info("creating the MediaPipe reference venv in %s (%s)", d, " ".join(PINS))
    try:
        subprocess.run([base, "-m", "venv", str(part)], check=True, capture_output=True, text=True)
        r = subprocess.run([str(_python(part)), "-m", "pip", "install", "-q", "--disable-pip-version-check", *PINS],
                           capture_output=True, text=True, timeout=timeout_s)
        if r.returncode != 0:
            raise ReferenceError(f"pip install {' '.join(PINS)} failed: {r.stderr.strip()[-800:]}")
    except (OSError, subprocess.SubprocessError) as e:
        shutil.rmtree(part, ignore_errors=True)
        raise ReferenceError(f"cannot create the reference venv in {part}: {e}") from e
    (part / MARKER).write_text("\n".join(PINS) + "\n")
    shutil.rmtree(d, ignore_errors=True)
    part.rename(d)  # venvs survive a rename when run as `bin/python -m ...` / `bin/python script`
    return _python(d)


@dataclass
class RefPose:
    landmarks: np.ndarray | None  # (33, 5) px: x, y, z, visibility, presence
    world: np.ndarray | None  # (33, 3) metres
    ms: float  # Pose.process() time inside the worker


class MediaPipeReference:
    """Drives MediaPipe Pose instances in the reference venv. Use as a context manager."""

    def __init__(self, python: Path | None = None, cache: Path | None = None):
        self.python = Path(python) if python else ensure_venv(cache)
        env = dict(os.environ)  # -I below: no PYTHON* variables, no user site, no script dir on sys.path
        env.setdefault("GLOG_minloglevel", "2")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self._p = subprocess.Popen([str(self.python), "-I", str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, env=env)
        hello = self._recv()
        self.versions = {k: hello.get(k) for k in ("mediapipe", "numpy")}
        log.info("MediaPipe reference worker up (%s)", self.versions)

    def _send(self, header: dict, body: bytes = b"") -> None:
        h = json.dumps(header).encode()
        try:
            self._p.stdin.write(struct.pack(">I", len(h)) + h + struct.pack(">I", len(body)))
            if body:
                self._p.stdin.write(body)
            self._p.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise ReferenceError(f"reference worker died (exit {self._p.poll()})") from e

    def _read(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = self._p.stdout.read(n - len(buf))
            if not chunk:
                raise ReferenceError(f"reference worker died (exit {self._p.poll()})")
            buf += chunk
        return buf

    def _recv(self) -> dict:
        (hn,) = struct.unpack(">I", self._read(4))
        header = json.loads(self._read(hn))
        (bn,) = struct.unpack(">I", self._read(4))
        if bn:
            self._read(bn)
        if not header.get("ok"):
            raise ReferenceError(f"reference worker: {header.get('error')}")
        return header

    def open(self, name: str = "main", *, static: bool = False, smooth: bool = True,
             segmentation: bool = False) -> None:
        """(Re)create a Pose instance: static=False is the tracking mode."""
        self._send({"cmd": "open", "name": name, "static": static, "smooth": smooth, "segmentation": segmentation})
        self._recv()

    def process(self, image_bgr: np.ndarray, name: str = "main") -> RefPose:
        img = np.ascontiguousarray(image_bgr, np.uint8)
        h, w = img.shape[:2]
        self._send({"cmd": "process", "name": name, "h": h, "w": w}, img.tobytes())
        r = self._recv()
        lm = np.asarray(r["landmarks"], np.float64) if r["landmarks"] is not None else None
        world = np.asarray(r["world"], np.float64) if r["world"] is not None else None
        return RefPose(lm, world, float(r["ms"]))

    def close(self) -> None:
        if self._p.poll() is None:
            try:
                self._send({"cmd": "quit"})
                self._recv()
            except ReferenceError:
                pass
            try:
                self._p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._p.kill()

    def __enter__(self) -> MediaPipeReference:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
