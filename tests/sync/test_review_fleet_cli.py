"""`edge fleet` must refuse bad input and report a down broker, a bad key or an incomplete model folder with a
one-line reason (SystemExit), never a traceback, and never send anything for a malformed device list."""
from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from devtools.broker import free_port
from edge.app.cli import main

from update_helpers import MODEL, keys, model_dir


def fleet(*args: str) -> None:
    main(["--log-level", "ERROR", "fleet", *args])


@pytest.mark.parametrize("devices, why", [("s001", "expected STORE/DEVICE"), ("s001/+", "invalid device id"),
                                          ("s001/d001,#/d002", "invalid store id")])
def test_rollout_refuses_a_malformed_device_list(broker, devices, why):
    with pytest.raises(SystemExit, match=f"edge fleet rollout: .*{why}"):
        fleet("rollout", "--port", str(broker.port), "--name", MODEL, "--version", "1.1", "--devices", devices)


@pytest.mark.parametrize("waves", ["1,x", "10,5", "0,100", "nan"])
def test_rollout_refuses_bad_waves(broker, waves):
    with pytest.raises(SystemExit, match="edge fleet rollout: .*(--waves|cumulative percentages)"):
        fleet("rollout", "--port", str(broker.port), "--name", MODEL, "--version", "1.1", "--devices", "s001/d001",
              "--waves", waves)


@pytest.mark.parametrize("cmd", [["status"], ["rollout", "--name", MODEL, "--version", "1.1", "--devices", "s001/d001"]])
def test_broker_down_is_one_line(cmd):
    port = str(free_port())  # nothing listens there
    with pytest.raises(SystemExit, match=f"edge fleet {cmd[0]}: cannot connect to 127.0.0.1:{port}"):
        fleet(cmd[0], "--port", port, *cmd[1:])


def test_publish_model_bad_key_or_folder_is_one_line(broker, tmp_path):
    src = model_dir(tmp_path / "v1.1")
    priv, _ = keys(tmp_path / "keys")
    ec_key = tmp_path / "ec.pem"
    ec_key.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    base = ["publish-model", "--port", str(broker.port), "--name", MODEL, "--version", "1.1"]
    with pytest.raises(SystemExit, match="edge fleet publish-model: .*not an Ed25519 private key"):
        fleet(*base, "--dir", str(src), "--key", str(ec_key))
    with pytest.raises(SystemExit, match="edge fleet publish-model: .*No such file"):
        fleet(*base, "--dir", str(src), "--key", str(tmp_path / "missing.pem"))
    (src / "golden.npz").unlink()
    with pytest.raises(SystemExit, match="edge fleet publish-model: .*golden.npz.*missing"):
        fleet(*base, "--dir", str(src), "--key", str(priv))
    with pytest.raises(SystemExit, match="edge fleet publish-model: chunk size"):
        fleet(*base, "--dir", str(src), "--key", str(priv), "--chunk-kb", "512")


def test_edge_sync_send_and_tail_errors_are_one_line(tmp_path):
    port = str(free_port())
    with pytest.raises(SystemExit, match=f"edge sync send: cannot connect to 127.0.0.1:{port}"):
        main(["--log-level", "ERROR", "sync", "send", "--port", port, "--store", "s001", "--device", "d001", "ping"])
    with pytest.raises(SystemExit, match="edge sync tail: unable to open database file"):
        main(["sync", "tail", "--db", str(tmp_path / "missing.db")])
