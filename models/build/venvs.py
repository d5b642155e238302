"""Isolated build venvs under `<cache>/venvs/`, keyed by a hash of their pinned requirements.

Build-only tools (TensorFlow, tf2onnx, NNCF, ai-edge-quantizer, onnx) never enter the runtime install.
A venv is ready when its marker file holds the exact requirement list; a change of pins makes a new one.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MARKER = ".storefront-ready.json"


@dataclass(frozen=True)
class VenvSpec:
    name: str
    requirements: tuple[str, ...]
    why: str
    no_deps: tuple[str, ...] = ()  # installed after `requirements` with --no-deps (their declared deps break)

    @property
    def key(self) -> str:
        text = "\n".join(sorted(self.requirements + tuple(f"nodeps:{r}" for r in self.no_deps)))
        text += f"\npy{sys.version_info.major}.{sys.version_info.minor}"
        return hashlib.sha256(text.encode()).hexdigest()[:12]


SPECS: dict[str, VenvSpec] = {
    "convert": VenvSpec("convert", ("tensorflow-cpu==2.21.0", "tf2onnx==1.17.0", "onnx==1.23.2"),
                        "tf2onnx imports TensorFlow even for --tflite"),
    "quant": VenvSpec("quant", ("nncf==3.4.0", "openvino==2026.4.1", "onnxruntime==1.32.0", "onnx==1.23.2",
                                "sympy==1.14.0"),
                      "NNCF (OpenVINO INT8) and onnxruntime.quantization (needs onnx + sympy for preprocess)"),
    "litert": VenvSpec("litert", ("ai-edge-litert==2.3.0", "ai-edge-quantizer==0.10.0"),
                       "TF-free densify / fp16->fp32 / signature rewrite and TFLite INT8 (ai-edge-quantizer)"),
    # torch 2.13.0: the CPU wheel (a plain `torch` from PyPI is a multi-GB CUDA build). onnx2torch declares
    # torchvision, whose PyPI build cannot load its ops beside CPU torch: installed --no-deps, torchvision stubbed.
    # torchao: only nncf.strip (QDQ ONNX export) imports it; its declared deps are not needed there.
    "train": VenvSpec("train", ("torch==2.13.0", "nncf==3.4.0", "openvino==2026.4.1", "onnxruntime==1.32.0",
                                "onnx==1.23.2", "sympy==1.14.0", "opencv-python-headless==4.14.0.94"),
                      "QAT / distillation of the landmark model (torch + NNCF), export to OpenVINO IR and QDQ ONNX",
                      no_deps=("onnx2torch==1.5.15", "torchao==0.18.0")),
}


class VenvError(RuntimeError):
    pass


def venv_root(cache: Path) -> Path:
    return cache / "venvs"


def venv_dir(cache: Path, spec: VenvSpec) -> Path:
    return venv_root(cache) / f"{spec.name}-{spec.key}"


def python_of(path: Path) -> Path:
    return path / "bin" / "python"


def is_ready(cache: Path, spec: VenvSpec) -> bool:
    d = venv_dir(cache, spec)
    m = d / MARKER
    if not (m.is_file() and python_of(d).exists()):
        return False
    try:
        return json.loads(m.read_text()).get("requirements") == list(spec.requirements + spec.no_deps)
    except (OSError, ValueError):
        return False


def ensure(cache: Path, name: str) -> Path:
    """Python executable of the named build venv, creating it (pip install of the exact pins) if needed."""
    spec = SPECS[name]
    d = venv_dir(cache, spec)
    if is_ready(cache, spec):
        return python_of(d)
    venv_root(cache).mkdir(parents=True, exist_ok=True)
    with open(venv_root(cache) / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another build may be creating it right now
        if is_ready(cache, spec):
            return python_of(d)
        _create(d, spec, lock.fileno())
    return python_of(d)


def _create(d: Path, spec: VenvSpec, lock_fd: int) -> None:
    """Make the venv d (from scratch: a half-made one is removed) and mark it ready last. venv and pip inherit the
    lock: if this process is killed, the next ensure() waits for them to end before it removes and remakes d."""
    if d.exists():
        shutil.rmtree(d)
    logf = d.with_suffix(".log")
    log.info("creating build venv %s (%s): %s", d.name, spec.why, " ".join(spec.requirements))
    t0 = time.monotonic()
    base = getattr(sys, "_base_executable", sys.executable)
    cmds = [[base, "-m", "venv", str(d)],
            [str(python_of(d)), "-m", "pip", "install", "--no-input", "--only-binary=:all:", *spec.requirements]]
    if spec.no_deps:
        cmds.append([str(python_of(d)), "-m", "pip", "install", "--no-input", "--only-binary=:all:", "--no-deps",
                     *spec.no_deps])
    with open(logf, "w") as out:
        for cmd in cmds:
            out.write(f"$ {' '.join(cmd)}\n")
            out.flush()
            r = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, pass_fds=(lock_fd,))
            if r.returncode != 0:
                tail = logf.read_text(errors="replace")[-2000:]
                shutil.rmtree(d, ignore_errors=True)
                raise VenvError(f"creating build venv {spec.name!r} failed (exit {r.returncode}) running "
                                f"{' '.join(cmd)}\nlog {logf}, tail:\n{tail}")
    (d / MARKER).write_text(json.dumps({"requirements": list(spec.requirements + spec.no_deps), "created": time.time(),
                                        "seconds": round(time.monotonic() - t0, 1)}))
    log.info("build venv %s ready in %.0f s", d.name, time.monotonic() - t0)


def main() -> int:  # `python -m models.build.venvs [NAME...]`: pre-create venvs (CI warm-up)
    from edge.core.paths import cache_dir
    logging.basicConfig(level=logging.INFO)
    for n in sys.argv[1:] or list(SPECS):
        print(ensure(cache_dir(), n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
