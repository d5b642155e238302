"""`edge fleet` / `edge sync` driven as a fleet admin would, against a real mosquitto and a real device: every
mistake (credentials, TLS files, a typo, a bad number, Ctrl-C) ends in one line that names the flag and the fix,
`--json` keeps stdout valid JSON, and the exit code tells "the tool failed" (1) from "devices failed" (3)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from devtools.broker import Broker, free_port, prod_config
from edge.app.cli import main
from sync import topics
from sync.rollout import AdminConnection
from sync.client import ClientOptions
from sync.service import SyncService

from sync_helpers import device_settings
from update_helpers import MODEL, keys, model_dir

REPO = Path(__file__).resolve().parents[2]


def edge(*args: str) -> int:
    return main(["--log-level", "ERROR", *args])


@pytest.fixture
def device(broker, tmp_path):
    """A real device (SyncService, no update agent) of s001/d001 on the broker."""
    svc = SyncService(*device_settings(broker.port, tmp_path / "outbox.db"))
    svc.start()
    assert svc.client.wait_connected(5), svc.client.last_error
    time.sleep(0.2)  # its SUBACKs and retained birth
    yield svc
    svc.stop()


def retained(port: int, topic_filter: str, wait: float = 0.5) -> list[str]:
    with AdminConnection(ClientOptions("127.0.0.1", port), [topic_filter]) as c:
        time.sleep(wait)
        return [t for t, raw, ret in c.messages if ret and raw]


def test_an_empty_password_file_is_one_line_naming_the_flag(broker, tmp_path):
    """An empty --password-file ended in an IndexError traceback from reading its first line."""
    pw = tmp_path / "pw"
    pw.write_text("")
    with pytest.raises(SystemExit, match=f"edge fleet list: --password-file {pw}: empty"):
        edge("fleet", "list", "--port", str(broker.port), "--username", "fleet-admin", "--password-file", str(pw))
    with pytest.raises(SystemExit, match=f"edge sync send: --password-file {pw}: empty"):
        edge("sync", "send", "--port", str(broker.port), "--username", "u", "--password-file", str(pw),
             "--store", "s001", "--device", "d001", "ping")
    pw.write_bytes("caf\xe9\n".encode("latin-1"))  # a file saved in a legacy encoding: the codec's own message
    with pytest.raises(SystemExit, match=f"edge fleet list: --password-file {pw}: not UTF-8 text"):
        edge("fleet", "list", "--port", str(broker.port), "--username", "fleet-admin", "--password-file", str(pw))


def test_tls_files_that_are_missing_or_unusable_are_named_with_their_flag(broker, certs, tmp_path):
    """A missing --ca-file said only "[Errno 2] No such file or directory" (no path), a junk one or a certificate
    without its key an OpenSSL code ("no certificate or crl found", "PEM lib"); --cert-file without --ca-file was
    silently ignored (plain TCP)."""
    junk = tmp_path / "junk.crt"
    junk.write_text("junk\n")
    base = ["fleet", "list", "--port", str(broker.port)]
    with pytest.raises(SystemExit, match=f"edge fleet list: --ca-file {tmp_path}/missing.crt: no such file"):
        edge(*base, "--ca-file", str(tmp_path / "missing.crt"))
    with pytest.raises(SystemExit, match=f"--ca-file {junk}: not a PEM CA certificate"):
        edge(*base, "--ca-file", str(junk))
    with pytest.raises(SystemExit, match="--cert-file .*--key-file.*cannot load the client certificate"):
        edge(*base, "--ca-file", str(certs / "ca.crt"), "--cert-file", str(certs / "cloud.crt"))
    with pytest.raises(SystemExit, match="--cert-file .*--key-file.*cannot load the client certificate"):
        edge(*base, "--ca-file", str(certs / "ca.crt"), "--cert-file", str(certs / "cloud.crt"),
             "--key-file", str(certs / "s001_d001.key"))
    with pytest.raises(SystemExit, match="--cert-file / --key-file need --ca-file"):
        edge(*base, "--cert-file", str(certs / "cloud.crt"), "--key-file", str(certs / "cloud.key"))


def test_wrong_credentials_name_the_flags_to_check(tmp_path):
    """A refused CONNACK ended with "CONNACK 0x87 Not authorized (client id ...)" and no word on what to fix."""
    b = Broker(tmp_path / "users", users={"fleet-admin": "right"}).start()
    try:
        with pytest.raises(SystemExit, match="edge fleet list: CONNACK 0x87 .*check --username and --password"):
            edge("fleet", "list", "--port", str(b.port), "--username", "fleet-admin", "--password", "wrong")
    finally:
        b.close()


def test_a_tls_listener_that_drops_the_connection_hints_at_the_client_certificate(certs, tmp_path):
    """The production services listener (client certificate required) closes a connection without one: the tool
    said "disconnected: Unspecified error" and nothing else."""
    dev, svc = free_port(), free_port()
    b = Broker(tmp_path / "prod", config=prod_config(certs, tmp_path / "prod", dev, svc), ports=[dev, svc]).start()
    try:
        with pytest.raises(SystemExit, match="edge fleet list: disconnected.*--cert-file"):
            edge("fleet", "list", "--port", str(svc), "--ca-file", str(certs / "ca.crt"))
    finally:
        b.close()


def test_publish_from_cache_with_a_model_name_typo_is_one_line(broker, tmp_path):
    """`--from-cache --name tiny_ad` ended in a KeyError traceback from the model zoo."""
    priv, _ = keys(tmp_path / "keys")
    with pytest.raises(SystemExit, match="edge fleet publish-model: unknown model 'pose_landmark_ful'; known: "):
        edge("fleet", "publish-model", "--port", str(broker.port), "--name", "pose_landmark_ful", "--version", "9",
             "--from-cache", "--cache", str(tmp_path / "cache"), "--key", str(priv))


@pytest.mark.parametrize("bad", [["--expires-days", "0"], ["--expires-days", "-1"], ["--latency-ms", "-1"],
                                 ["--latency-ms", "0"], ["--min-runtime", "abc def"]])
def test_publish_refuses_settings_every_device_would_fail_on(broker, tmp_path, capsys, bad):
    """--expires-days 0 or -1 published a manifest that had already expired, --latency-ms -1 a self-test budget no
    model meets (0 silently meant "no budget"), --min-runtime 'abc def' a floor above every runtime: all devices
    FAIL the version. Refused with nothing published."""
    priv, _ = keys(tmp_path / "keys")
    with pytest.raises(SystemExit) as e:
        edge("fleet", "publish-model", "--port", str(broker.port), "--name", MODEL, "--version", "1.1",
             "--dir", str(model_dir(tmp_path / "m")), "--key", str(priv), *bad)
    assert bad[0] in str(e.value) + capsys.readouterr().err
    assert e.value.code != 0
    assert retained(broker.port, topics.model_base(MODEL, "1.1") + "/#") == []


def test_rollout_to_no_online_device_keeps_json_stdout_clean(broker, capsys):
    """`--devices all --json` with no online device printed "no devices" on stdout, which is not JSON."""
    rc = edge("fleet", "rollout", "--port", str(broker.port), "--name", MODEL, "--version", "1.1",
              "--devices", "all", "--json")
    out, err = capsys.readouterr()
    assert rc == 2 and out == "", out
    assert "no online device" in err and "edge fleet list" in err, err


def test_a_rollout_rejected_by_devices_exits_3_not_1(broker, device, capsys):
    """An ABORTED rollout exited 1, as a broker that is down does: a script could not tell "nothing happened, try
    again" from "devices failed the version". The real device (no update agent) refuses the offer."""
    rc = edge("fleet", "rollout", "--port", str(broker.port), "--name", MODEL, "--version", "1.1",
              "--devices", "s001/d001", "--waves", "100", "--wave-timeout", "30", "--json")
    res = json.loads(capsys.readouterr().out)
    assert res["status"] == "ABORTED" and res["devices"]["s001/d001"]["state"] == "REJECTED", res
    assert rc == 3


def test_fleet_send_a_device_answers_with_an_error_exits_3(broker, device, capsys):
    """A command a device answered with an error exited 1, like a tool failure; ok answers stay 0."""
    port = ["--port", str(broker.port), "--store", "s001", "--device", "d001", "--timeout", "5"]
    assert edge("fleet", "send", "ping", *port) == 0
    assert edge("fleet", "send", "no_such_command", *port) == 3
    assert '"status": "error"' in capsys.readouterr().out


def test_sync_send_exits_like_fleet_send(broker, device, capsys):
    """`edge sync send` exited 1 for a device's error answer (1 is "the tool failed") and 2 for no answer (2 is
    argparse's bad usage); it now exits 3 for both, as `edge fleet send` does, and says so on stderr."""
    port = ["--port", str(broker.port), "--store", "s001", "--timeout", "3"]
    assert edge("sync", "send", "ping", *port, "--device", "d001") == 0
    assert edge("sync", "send", "no_such_command", *port, "--device", "d001") == 3
    assert '"status": "error"' in capsys.readouterr().out
    assert edge("sync", "send", "ping", *port, "--device", "d404") == 3
    assert "no answer from s001/d404 within 3 s" in capsys.readouterr().err


@pytest.mark.parametrize("args, why", [("[1]", "--args .*JSON object"), ("{level: 1}", "--args .*not JSON")])
def test_send_args_that_are_not_a_json_object_are_refused_before_sending(broker, args, why):
    """`--args '[1]'` was sent to devices as the command's args; `{level: 1}` failed with a bare JSON parser
    message that did not name --args."""
    with AdminConnection(ClientOptions("127.0.0.1", broker.port), [topics.ROOT + "/+/+/cmd/#"]) as c:
        with pytest.raises(SystemExit, match=f"edge fleet send: {why}"):
            edge("fleet", "send", "ping", "--port", str(broker.port), "--store", "s001", "--device", "d001",
                 "--args", args)
        with pytest.raises(SystemExit, match=f"edge sync send: {why}"):
            edge("sync", "send", "ping", "--port", str(broker.port), "--store", "s001", "--device", "d001",
                 "--args", args)
        time.sleep(0.3)
        assert c.messages == []


@pytest.mark.parametrize("cmd", [["fleet", "list", "--wait", "-1"], ["fleet", "send", "ping", "--timeout", "-1"],
                                 ["fleet", "status", "--wait", "-1"],
                                 ["fleet", "rollout", "--name", MODEL, "--version", "1", "--devices", "s1/d1",
                                  "--abort-failure-pct", "-5"]])
def test_negative_durations_and_percentages_are_usage_errors(cmd, capsys):
    """`--wait -1` / `--timeout -1` ended in "sleep length must be non-negative"; `--abort-failure-pct -5` aborted
    every rollout on its first device."""
    with pytest.raises(SystemExit) as e:
        edge(*cmd, "--port", str(free_port()))
    assert e.value.code == 2 and re.search(r"argument --(wait|timeout|abort-failure-pct)", capsys.readouterr().err)


def test_ctrl_c_mid_rollout_names_the_id_to_resume_with_and_no_traceback(broker, tmp_path):
    """Ctrl-C while a wave waits ended in a KeyboardInterrupt traceback; the admin needs the rollout id to resume."""
    err_path = tmp_path / "err"
    with open(err_path, "wb") as err:
        p = subprocess.Popen([sys.executable, "-m", "edge.app.cli", "fleet", "rollout", "--port", str(broker.port),
                              "--name", MODEL, "--version", "1.1", "--devices", "s001/d001", "--wave-timeout", "120",
                              "--json"], cwd=REPO, stdout=subprocess.PIPE, stderr=err,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 30
        while "wave 1" not in err_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(p.pid, signal.SIGINT)
        out, _ = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    text = err_path.read_text()
    rid = re.search(r"rollout (r-\w+): if this tool", text).group(1)
    assert p.returncode == 130 and "Traceback" not in text, text
    assert f"rollout {rid} interrupted" in text and f"--rollout-id {rid}" in text.split("interrupted", 1)[1], text
    assert json.loads(out)["status"] == "INTERRUPTED"


@pytest.mark.parametrize("cmd", [["fleet", "list", "--wait", "60"],
                                 ["sync", "send", "ping", "--store", "s001", "--device", "d001", "--timeout", "60"]])
def test_ctrl_c_of_a_waiting_tool_is_one_line_and_exit_130(broker, tmp_path, cmd):
    """Ctrl-C while `edge fleet list` collects states or `edge sync send` waits for an answer ended in a
    KeyboardInterrupt traceback."""
    p = subprocess.Popen([sys.executable, "-m", "edge.app.cli", *cmd, "--port", str(broker.port)], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        time.sleep(3)  # connected and waiting (the import and connect take about 1 s)
        os.kill(p.pid, signal.SIGINT)
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130 and b"Traceback" not in err, err.decode()
    assert f"edge {cmd[0]} {cmd[1]}: interrupted".encode() in err, err.decode()


def test_provision_refuses_a_certificate_that_is_expired_at_once(certs, tmp_path):
    """`--days 0` issued a certificate that expired the moment it was made (the device can never connect)."""
    with pytest.raises(SystemExit, match="edge fleet provision: --days 0: .*at least 1"):
        edge("fleet", "provision", "s009/d009", "--ca-dir", str(certs), "--out", str(tmp_path / "out"), "--days", "0")
    assert not (tmp_path / "out").exists()


def test_provision_out_that_is_a_file_is_named(certs, tmp_path):
    """`--out FILE` failed with "[Errno 17] File exists" about the file, not what to pass."""
    f = tmp_path / "f"
    f.write_text("")
    with pytest.raises(SystemExit, match=f"edge fleet provision: --out {f} is a file"):
        edge("fleet", "provision", "s009/d009", "--ca-dir", str(certs), "--out", str(f))
