"""Helpers for the model-update tests: a real tiny ONNX model (hand-encoded protobuf, no `onnx` package),
golden outputs, fleet keys, a test zoo with a `tiny_add` manifest, and a simulated device (service + agent)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from models import manifest as manifests
from models.zoo import ModelZoo
from sync import topics
from sync.client import ClientOptions
from sync.model_update import ModelUpdateAgent, UpdateOptions
from sync.service import SyncService

from sync_helpers import device_settings, requester

MODEL = "tiny_add"


# ---------------------------------------------------------------- minimal protobuf writer for ONNX
def _varint(n: int) -> bytes:
    out = b""
    while True:
        b, n = n & 0x7F, n >> 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def _f(num: int, value) -> bytes:
    if isinstance(value, int):
        return _varint(num << 3) + _varint(value)
    if isinstance(value, str):
        value = value.encode()
    return _varint(num << 3 | 2) + _varint(len(value)) + value


def _value_info(name: str, shape: list[int]) -> bytes:
    dims = b"".join(_f(1, _f(1, d)) for d in shape)
    tensor_type = _f(1, 1) + _f(2, dims)  # elem_type FLOAT, shape
    return _f(1, name) + _f(2, _f(1, tensor_type))


def tiny_onnx(path: Path, n: int, seed: int = 0) -> np.ndarray:
    """Write an ONNX model y = x + B (B: n float32 constants, so the file is ~4n bytes). Returns B."""
    b = np.random.default_rng(seed).standard_normal((1, n)).astype(np.float32)
    init = _f(1, 1) + _f(1, n) + _f(2, 1) + _f(8, "B") + _f(9, b.tobytes())
    node = _f(1, "x") + _f(1, "B") + _f(2, "Identity") + _f(3, "add") + _f(4, "Add")
    graph = (_f(1, node) + _f(2, "tiny") + _f(5, init) + _f(11, _value_info("x", [1, n]))
             + _f(12, _value_info("Identity", [1, n])))
    model = _f(1, 8) + _f(2, "storefront-tests") + _f(7, graph) + _f(8, _f(1, "") + _f(2, 13))
    path.write_bytes(model)
    return b


def model_dir(d: Path, n: int = 40_000, seed: int = 0, golden_error: float = 0.0) -> Path:
    """A publishable folder: tiny_add.onnx + golden.npz (outputs off by golden_error to fail the self-test)."""
    d.mkdir(parents=True, exist_ok=True)
    b = tiny_onnx(d / f"{MODEL}.onnx", n, seed)
    x = np.random.default_rng(seed + 1).standard_normal((2, n)).astype(np.float32)
    np.savez_compressed(d / "golden.npz", **{"input:x": x, "output:Identity": x + b + np.float32(golden_error)})
    return d


def keys(d: Path, name: str = "fleet") -> tuple[Path, Path]:
    """(private PEM, public PEM) of a new Ed25519 key pair."""
    d.mkdir(parents=True, exist_ok=True)
    k = Ed25519PrivateKey.generate()
    priv, pub = d / f"{name}.pem", d / f"{name}.pub.pem"
    priv.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption()))
    pub.write_bytes(k.public_key().public_bytes(serialization.Encoding.PEM,
                                                serialization.PublicFormat.SubjectPublicKeyInfo))
    return priv, pub


def manifest_dir(d: Path) -> Path:
    """Committed manifests plus `tiny_add` (a copy of the face detector's with the name changed)."""
    d.mkdir(parents=True, exist_ok=True)
    for p in manifests.MANIFEST_DIR.glob("*.toml"):
        (d / p.name).write_text(p.read_text())
    face = (manifests.MANIFEST_DIR / "face_detection_full_range.toml").read_text()
    (d / f"{MODEL}.toml").write_text(face.replace('name = "face_detection_full_range"', f'name = "{MODEL}"'))
    return d


def install_base(zoo: ModelZoo, src: Path, version: str) -> None:
    """Put a first version of tiny_add in the cache as if an earlier update had installed it."""
    import os
    import shutil

    mdir = zoo.cache / "models" / MODEL
    shutil.copytree(src, mdir / version)
    (mdir / version / "built.json").write_text('{"payload": {"artifacts": []}}')
    os.symlink(version, mdir / "current")


class Device:
    """One simulated device: SyncService + ModelUpdateAgent with its own cache, outbox and health check."""

    def __init__(self, port: int, root: Path, pub: Path, device: str = "d001", healthy: bool = True,
                 base: Path | None = None, sync: dict | None = None, **opts) -> None:
        self.root = root
        self.activated: list[tuple[str, str]] = []
        self.healthy = healthy
        self.zoo = ModelZoo(root / "cache", manifest_dir=manifest_dir(root / "manifests"))
        if base is not None:
            install_base(self.zoo, base, "1.0")
        self.svc = SyncService(*device_settings(port, root / "outbox.db", device=device, **(sync or {})))
        self.agent = ModelUpdateAgent(self.svc.identity, self.zoo, self.svc, self._on_activated,
                                      UpdateOptions(public_key=pub, **opts))

    def _on_activated(self, name: str, version: str) -> bool:
        self.activated.append((name, version))
        return self.healthy or version == "1.0"

    def start(self) -> "Device":
        self.svc.start()
        assert self.svc.client.wait_connected(5)
        self.agent.start()
        time.sleep(0.1)  # SUBACKs
        return self

    def stop(self) -> None:
        self.agent.stop()
        self.svc.stop(0.5)

    @property
    def last(self) -> dict:
        return self.agent.models().get(MODEL, {}).get("last") or {}

    def events(self) -> list[dict]:
        """model_update events in the device outbox (no consumer in these tests: they stay there)."""
        import json
        import sqlite3

        db = sqlite3.connect(self.svc.outbox.path)
        try:
            rows = db.execute("SELECT body FROM reliable WHERE kind = 'model_update' ORDER BY seq").fetchall()
        finally:
            db.close()
        return [json.loads(r[0])["data"] for r in rows]

    def current(self) -> str:
        """The version its `current` link points at."""
        import os

        return os.readlink(self.zoo.cache / "models" / MODEL / "current")


def published_fleet(port: int, tmp_path: Path, chunk_size: int = 64 << 10) -> tuple[Path, Path]:
    """A fleet key pair, version 1.0's folder (a device's base install) and version 1.1 of MODEL published on the
    broker at `port`, signed with that key. Returns (public key, 1.0 folder)."""
    from sync.client import ClientOptions
    from sync.rollout import publish_model

    priv, pub = keys(tmp_path / "keys")
    base = model_dir(tmp_path / "v1.0", seed=0)
    publish_model(ClientOptions("127.0.0.1", port), MODEL, "1.1", model_dir(tmp_path / "v1.1", seed=2), priv,
                  chunk_size=chunk_size)
    return pub, base


def opts(port: int) -> ClientOptions:
    return ClientOptions("127.0.0.1", port)


def command(port: int, name: str, args: dict, device: str = "d001") -> dict:
    """Send a command to test device `device` of store s001 and return its one result."""
    t = topics.DeviceTopics("s001", device)
    with requester(port, [f"{t.base}/cmd_result/+"]) as r:
        cid = r.send(t.cmd(name), args)
        got = r.wait([cid], 10)[cid]
    assert got, f"no answer to {name}"
    return got[0]


def run_until_final(dev: "Device", timeout_s: float,
                    states: tuple[str, ...] = ("SUCCEEDED", "FAILED", "ROLLED_BACK")) -> int:
    """A device process's main loop: start, print {"started": true}, then, once its update is in one of `states`
    (final), print its models and activations and return 0; 3 after `timeout_s`."""
    import json

    dev.start()
    print(json.dumps({"started": True}), flush=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if dev.last.get("state") in states:
            print(json.dumps({"models": dev.agent.models(), "activated": dev.activated}), flush=True)
            dev.stop()
            return 0
        time.sleep(0.05)
    dev.stop()
    return 3
