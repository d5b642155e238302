"""Fixtures of the operations tests: a real mosquitto, a reference consumer, and one real mirror runtime (demo source,
pose models, try-on) synced to them, shared by the monitoring tests of a module."""
from __future__ import annotations

import threading

import pytest

from devtools.broker import Broker

from ops_util import REPO, scrape, wait_until  # noqa: F401 - re-exported for fixtures


@pytest.fixture(scope="module")
def ops_broker(tmp_path_factory):
    b = Broker(tmp_path_factory.mktemp("broker")).start()
    yield b
    b.close()


@pytest.fixture(scope="module")
def mirror_run(ops_broker, tmp_path_factory):
    """A running mirror device (tryon-mirror.toml: demo source at camera pace, pose, try-on) with its [sync] on the
    test broker (telemetry every second) and a reference consumer storing what it sends. Yields a namespace with
    the runtime, the local HTTP base URL, the consumer database and the device's data folder."""
    from edge.app.config import load_config
    from edge.app.monitor import RuntimeMonitor
    from edge.app.runner import Runtime
    from sync.client import ClientOptions
    from sync.consumer import Consumer

    work = tmp_path_factory.mktemp("mirror")
    consumer = Consumer(ClientOptions(host="127.0.0.1", port=ops_broker.port, client_id="ops-cloud"),
                        work / "cloud.sqlite").start()
    assert consumer.client.wait_connected(10)
    cfg = load_config(REPO / "device_configs" / "tryon-mirror.toml")
    cfg.http.port = 0
    cfg.source.realtime = True
    cfg.sync.broker, cfg.sync.port = "127.0.0.1", ops_broker.port
    cfg.sync.outbox_path = str(work / "data" / "outbox.sqlite")
    cfg.sync.telemetry_interval_s = 1.0
    # a small baseline so the run takes it (and then reports drift) within seconds
    old = RuntimeMonitor.sample_every, RuntimeMonitor.baseline_samples
    RuntimeMonitor.sample_every, RuntimeMonitor.baseline_samples = 2, 20
    rt = Runtime(cfg)
    stop = threading.Event()
    th = threading.Thread(target=rt.run, args=(stop,), kwargs={"duration": 240}, daemon=True)
    th.start()
    try:
        assert wait_until(lambda: rt.http is not None and rt.frames >= 90, 180), "the mirror produced no frames"
        assert wait_until(lambda: getattr(rt.monitor.inputs.get("main"), "baseline", None) is not None, 60), \
            "no input baseline taken"
        yield type("MirrorRun", (), {"rt": rt, "url": f"http://127.0.0.1:{rt.http.port}",
                                     "db": work / "cloud.sqlite", "data": work / "data", "cfg": cfg})
    finally:
        stop.set()
        th.join(60)
        RuntimeMonitor.sample_every, RuntimeMonitor.baseline_samples = old
        consumer.stop()

