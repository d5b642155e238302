"""A running device takes a signed model update over MQTT and its pose pipeline switches to the new version."""
from __future__ import annotations

import shutil
import threading
import time

import pytest

from edge.app.config import load_config
from edge.app.runner import Runtime
from models.zoo import ModelZoo
from sync import topics
from devtools.broker import Broker
from sync.client import ClientOptions
from sync.request import Requester, device_reply_filter
from sync.rollout import publish_model

MODEL = "pose_detection"


@pytest.fixture
def device_cache(tmp_path):
    """A private copy of the built pose models and the dev signing keys (activation must not touch the real cache)."""
    src = ModelZoo()
    dst = tmp_path / "cache"
    for name in (MODEL, "pose_landmark_full"):
        d = src.model_dir(name)
        if not (d / "built.json").is_file():
            pytest.fail(f"{name} is not built: run `edge models build`")
        shutil.copytree(d, dst / "models" / name / d.name, ignore=shutil.ignore_patterns("work", "logs", ".steps"))
    shutil.copytree(src.cache / "keys", dst / "keys")
    return dst


def test_running_device_installs_a_signed_update_and_swaps_its_pose_model(repo, tmp_path, device_cache):
    broker = Broker(tmp_path / "broker").start()
    stop = threading.Event()
    try:
        cfg = load_config(repo / "device_configs" / "kiosk.toml")
        cfg.sync.broker, cfg.sync.port = "127.0.0.1", broker.port
        cfg.sync.outbox_path = str(tmp_path / "outbox.sqlite")
        cfg.models.cache_dir = str(device_cache)
        for ref in (cfg.models.pose_detector, cfg.models.pose_landmarks):
            ref.backend, ref.precision = "openvino", "fp32"
        cfg.source.realtime = True
        rt = Runtime(cfg, http=False)
        th = threading.Thread(target=rt.run, args=(stop,), kwargs={"duration": 90})
        th.start()
        deadline = time.monotonic() + 30
        while rt.frames < 10 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert rt.frames >= 10

        # the fleet publishes a new detector version: the same weights, only the OpenVINO FP32 file, re-signed
        old_dir = ModelZoo(device_cache).model_dir(MODEL)
        new_src = tmp_path / "release"
        new_src.mkdir()
        for f in ("pose_detection_fp32.xml", "pose_detection_fp32.bin", "golden.npz"):
            shutil.copy(old_dir / f, new_src / f)
        opts = ClientOptions("127.0.0.1", broker.port, client_id="fleet-admin")
        publish_model(opts, MODEL, "0.10.21-r9", new_src, device_cache / "keys" / "model-signing-dev.pem")
        t = topics.DeviceTopics(cfg.device.store, cfg.device.id)
        with Requester(opts, [device_reply_filter(cfg.device.store, cfg.device.id)]) as r:
            cid = r.send(t.cmd("model_update"), {"name": MODEL, "version": "0.10.21-r9"})
            assert r.wait([cid], 10)[cid][0]["status"] == "ok"

        old_pose = rt_pose = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rt_pose = rt_stage_pose(rt)
            if rt_pose is not None and "0.10.21-r9" in rt_pose.sessions[0].info.path:
                break
            old_pose = rt_pose
            time.sleep(0.2)
        assert "0.10.21-r9" in rt_pose.sessions[0].info.path, rt.sync.metrics()
        assert old_pose is not None and old_pose is not rt_pose
        frames = rt.frames
        time.sleep(1.0)
        assert rt.frames > frames  # still processing frames on the new model
        assert ModelZoo(device_cache).artifact(MODEL, "openvino", "fp32").version == "0.10.21-r9"
    finally:
        stop.set()
        th.join(timeout=30)
        broker.close()
    assert not th.is_alive()


def rt_stage_pose(rt):
    return getattr(rt, "stage", None) and rt.stage.pose
