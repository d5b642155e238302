"""Publishing a second build as an already published name@version must be refused with nothing sent (devices
mid-download would get chunks that do not match their manifest, and the fleet two builds of one version) unless
it is meant: `replace=True` / `--replace`. Real mosquitto, real Ed25519 keys, a real update agent."""
from __future__ import annotations

import json
import time

import pytest

from edge.app.cli import main
from sync import topics
from sync.client import ClientOptions
from sync.rollout import AlreadyPublished, publish_model

from sync_helpers import requester, wait_until
from update_helpers import MODEL, Device, keys, model_dir

CHUNK = 64 << 10


def retained(port: int, version: str) -> dict[str, bytes]:
    """topic -> payload of every message of MODEL@version retained on the broker (manifest and chunks)."""
    with requester(port, [topics.model_base(MODEL, version) + "/#"]) as r:
        assert wait_until(lambda: len(r.raw) >= 2, 5), r.raw
        n = -1
        while n != len(r.raw):  # the broker sends the retained messages in one burst after the SUBACK
            n = len(r.raw)
            time.sleep(0.3)
        return {t: p for t, p, _ in r.raw}


def test_republishing_a_version_is_refused_unless_replace(broker, tmp_path, capsys):
    priv, pub = keys(tmp_path / "keys")
    opts = ClientOptions("127.0.0.1", broker.port)
    first, second = model_dir(tmp_path / "a", seed=2), model_dir(tmp_path / "b", n=10_000, seed=5)  # fewer chunks
    assert publish_model(opts, MODEL, "1.1", first, priv, chunk_size=CHUNK)["replaced"] is False
    before = retained(broker.port, "1.1")

    with pytest.raises(AlreadyPublished, match="1.1 is already published"):
        publish_model(opts, MODEL, "1.1", second, priv, chunk_size=CHUNK)
    cli = ["fleet", "publish-model", "--port", str(broker.port), "--name", MODEL, "--version", "1.1",
           "--dir", str(second), "--key", str(priv), "--chunk-kb", "64"]
    with pytest.raises(SystemExit, match="^edge fleet publish-model: .*1.1 is already published.*--replace"):
        main(cli)
    assert retained(broker.port, "1.1") == before  # neither the chunks nor the manifest changed

    assert main([*cli, "--replace"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["replaced"] is True
    after = retained(broker.port, "1.1")
    assert set(after) < set(before)  # the old build's extra chunks are gone, not left retained
    assert all(after[t] != before[t] for t in after)  # the second build's manifest and chunks
    dev = Device(broker.port, tmp_path / "dev", pub, base=model_dir(tmp_path / "v1.0", seed=0)).start()
    try:  # the replaced version is consistent: it installs
        with requester(broker.port, []) as r:
            r.send(topics.DeviceTopics("s001", "d001").cmd("model_update"), {"name": MODEL, "version": "1.1"})
            r.flush()
        assert wait_until(lambda: dev.last.get("state") == "SUCCEEDED", 20), dev.last
    finally:
        dev.stop()


def test_an_unpublished_version_can_be_published_again(broker, tmp_path, capsys):
    priv, _ = keys(tmp_path / "keys")
    opts = ClientOptions("127.0.0.1", broker.port)
    publish_model(opts, MODEL, "2.0", model_dir(tmp_path / "a", seed=2), priv, chunk_size=CHUNK)
    assert main(["fleet", "unpublish-model", "--port", str(broker.port), "--name", MODEL, "--version", "2.0"]) == 0
    assert publish_model(opts, MODEL, "2.0", model_dir(tmp_path / "b", seed=5), priv, chunk_size=CHUNK)["replaced"] \
        is False
