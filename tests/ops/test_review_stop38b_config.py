"""Device config errors a technician meets (misplaced keys, tables of tables, encodings, partial model tables),
`edge doctor` on a half-configured device (outbox path taken by a folder, a corrupt outbox, missing or mismatched
broker credential files), and the README's commands and defaults against the real parsers and config models."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edge.app.cli import build_parser, main
from edge.app.config import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]
HEAD = '[device]\nid = "d1"\nstore = "s1"\nkind = "shelf-camera"\n'
DEVICE = {"id": "d1", "store": "s1", "kind": "shelf-camera"}
CAMERA = '[models.person_detector]\nname = "nanodet_m_416"\n[[cameras]]\nid = "c1"\n[cameras.source]\ntype = "demo"\n'
LOITER = ('[[analytics.zones]]\nname = "w"\npolygon = [[0, 0], [90, 0], [90, 90]]\n'
          '[[analytics.loitering]]\nname = "w"\nzone = "w"\n')


def refusal(tmp_path, body: str) -> list[str]:
    """The loader's problem lines for HEAD + body, without the file prefix."""
    p = tmp_path / "dev.toml"
    p.write_text(HEAD + body)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    return [line.removeprefix(f"{p}: ") for line in str(e.value).splitlines()]


@pytest.mark.parametrize("body, line", [
    # a typo inside a table of tables gets its "did you mean" like any other table
    ("[breaker.pipelines.mirror]\nopen_fractio = 0.5\n", "breaker.pipelines.mirror.open_fractio: Extra inputs are "
     "not permitted (fix: remove it or rename it to 'open_fraction')"),
    # an unknown name of such a table is that key, not `...mirrr.[key]`
    ("[breaker.pipelines.mirrr]\nopen_fraction = 0.5\n", "breaker.pipelines.mirrr: Input should be 'mirror' or "
     "'analytics' (fix: use one of: 'mirror' or 'analytics')"),
    # a key of [alerts] appended after the rules lands in the last rule: say where it belongs
    ("[[alerts.rules]]\nid = \"a\"\nmetric = \"loitering\"\nkey = \"w\"\nmax_gap_s = 60\n" + LOITER,
     "alerts.rules.0.max_gap_s: Extra inputs are not permitted (fix: 'max_gap_s' is a key of [alerts]: write it "
     "there, above [[alerts.rules]] (keys below a [table] header belong to that table))"),
    (CAMERA + "critical = true\n", "cameras.0.source.critical: Extra inputs are not permitted (fix: 'critical' is a "
     "key of [[cameras]]: write it there, above [cameras.source] (keys below a [table] header belong to that "
     "table))"),
    # an array of tables is written [[cameras]], not [cameras]
    ("cameras = []\n", "device.cameras: Extra inputs are not permitted (fix: 'cameras' is a section of its own: "
     "write it as [[cameras]] (keys below a [table] header belong to that table))"),
    # a table validator's own `key: ` is named in full
    ("[sync]\ncommand_max_ages = { reload_confg = 60 }\n", "sync.command_max_ages.reload_confg: no such command "
     "(known: ack_alert, ping, reload_config, set_log_level, shelf_reference, snapshot) (fix: fix the value)"),
    ("[[alerts.rules]]\nid = \"a\"\nmetric = \"loitering\"\nkey = \"w\"\n" * 2 + LOITER,
     "alerts.rules.1.id: duplicate rule id 'a' (first at alerts.rules.0.id) (fix: rename one of them)"),
    (CAMERA + '[[cameras.analytics.queues]]\nname = "q"\nzone = "nozone"\n', "cameras.0.analytics.queues.0.zone: no "
     "zone named 'nozone' in [[analytics.zones]] (defined: none) (fix: fix the value)"),
    # a value out of range says the allowed bound
    ("[http]\nport = 99999\n", "http.port: Input should be less than or equal to 65535 (fix: use a value of at most "
     "65535)"),
    ("[source]\nfps = 0\n", "source.fps: Input should be greater than 0 (fix: use a value above 0.0)"),
])
def test_errors_name_the_full_key_and_where_it_belongs(tmp_path, body, line):
    assert line in refusal(tmp_path, body)


def test_a_model_table_without_name_keeps_its_default_model(tmp_path):
    """`[models.pose_landmarks.openvino]` alone (or `[models.pose_landmarks]` with only `threads`) tunes the default
    model; it used to fail with `models.pose_landmarks.name: Field required`."""
    p = tmp_path / "dev.toml"
    p.write_text(HEAD + "[models.pose_detector]\nthreads = 1\n[models.pose_landmarks.openvino]\nnum_streams = 2\n")
    cfg = load_config(p)
    assert (cfg.models.pose_detector.name, cfg.models.pose_detector.threads) == ("pose_detection", 1)
    assert cfg.models.pose_landmarks.name == "pose_landmark_full"
    assert cfg.models.pose_landmarks.backend_options()["openvino"].num_streams == 2
    # the person detector has no default model: its name stays required
    assert "models.person_detector.name: Field required (fix: add this key)" in refusal(
        tmp_path, '[models.person_detector]\nbackend = "openvino"\n')


def test_byte_order_mark_is_accepted_and_other_encodings_name_the_line(tmp_path):
    p = tmp_path / "dev.toml"
    p.write_bytes(b"\xef\xbb\xbf" + HEAD.encode())  # saved by a Windows editor
    assert load_config(p).device.id == "d1"
    p.write_bytes(b"\xef\xbb\xbf" + HEAD.encode() + '[sync]\nbroker = "caf\xe9"\n'.encode("latin-1"))
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value) == f"{p}: not UTF-8 text: byte 0xe9 at line 6 (fix: save the file as UTF-8)"


def test_config_check_warns_about_analytics_that_would_see_nobody(tmp_path, capsys):
    p = tmp_path / "dev.toml"
    p.write_text(HEAD + "[pose]\nenabled = false\n" + LOITER)
    assert main(["config", "check", str(p)]) == 0
    err = capsys.readouterr().err
    assert (f"{p}: warning: analytics: [[analytics.zones]], [[analytics.loitering]] will see nobody: [pose] is off "
            "and [models.person_detector] is not set (fix:") in err


# ---------------------------------------------------------------------------------------------- edge doctor

def doctor(tmp_path, body: str) -> tuple[subprocess.CompletedProcess, dict]:
    """`edge doctor --config` (the real CLI) on a device with pose off and an empty model cache: nothing required."""
    cfg = tmp_path / "dev.toml"
    cfg.write_text(HEAD + "[pose]\nenabled = false\n" + body)
    report = tmp_path / "report.json"
    r = subprocess.run([sys.executable, "-m", "edge.app.cli", "doctor", "--config", str(cfg), "--egl-timeout",
                        "0.001", "--broker-timeout", "0.5", "--json", str(report)], capture_output=True, text=True,
                       timeout=180, env=dict(os.environ, STOREFRONT_EDGE_CACHE=str(tmp_path / "cache")))
    return r, json.loads(report.read_text())


def test_doctor_outbox_taken_by_a_folder_is_a_problem_and_a_corrupt_one_a_warning(tmp_path):
    """`edge run` stops with a traceback when its outbox path is a folder, and moves a corrupt outbox aside (its
    events unsent): the doctor says so before, and reads the file without touching it."""
    outbox = tmp_path / "data" / "ob.sqlite"
    outbox.mkdir(parents=True)
    r, rep = doctor(tmp_path, f'[sync]\noutbox_path = "{outbox}"\n')
    assert r.returncode == 1, r.stdout
    assert (f"PROBLEM: outbox {outbox} is not a file (fix: move it away, or set [sync] outbox_path to another "
            "file)") in r.stdout
    outbox.rmdir()
    outbox.write_bytes(b"not a database" * 100)
    r, rep = doctor(tmp_path, f'[sync]\noutbox_path = "{outbox}"\n')
    assert r.returncode == 0, r.stdout  # edge run starts (on a new outbox)
    assert f"warning: outbox {outbox} is corrupt (file is not a database): edge run will move it aside" in r.stdout
    assert f"recover them first with `sqlite3 {outbox} .recover`" in rep["storage"]["outbox"]["problem"]
    assert sorted(p.name for p in outbox.parent.iterdir()) == ["ob.sqlite"]  # not moved, no -wal / -shm made


def test_doctor_does_not_call_a_running_device_s_outbox_corrupt(tmp_path):
    """The doctor reads the outbox without locks: while the running device checkpoints it, a page can read as
    damage. When an `edge run` holds the outbox's run lock (it opened the file, so it was sound at its start) the
    doctor does not tell the operator to recover a healthy outbox."""
    from edge.app.data_cli import RunLock

    outbox = tmp_path / "data" / "ob.sqlite"
    outbox.parent.mkdir(parents=True)
    outbox.write_bytes(b"not a database" * 100)  # what a torn read looks like to SQLite
    lock = RunLock(outbox.with_name(outbox.name + ".lock"))
    assert lock.acquire()  # as `edge run` holds it
    try:
        r, rep = doctor(tmp_path, f'[sync]\noutbox_path = "{outbox}"\n')
    finally:
        lock.release()
    assert r.returncode == 0, r.stdout
    assert not [ln for ln in r.stdout.splitlines() if "corrupt" in ln], r.stdout
    assert rep["storage"]["outbox"]["problem"] is None, rep["storage"]


def test_doctor_reads_a_live_outbox_without_side_files(tmp_path):
    from sync.outbox import Outbox

    outbox = tmp_path / "data" / "ob.sqlite"
    box = Outbox(outbox).open()
    try:
        before = sorted(p.name for p in outbox.parent.iterdir())
        r, rep = doctor(tmp_path, f'[sync]\noutbox_path = "{outbox}"\n')
        assert r.returncode == 0, r.stdout
        assert rep["storage"]["outbox"]["problem"] is None
        assert sorted(p.name for p in outbox.parent.iterdir()) == before
    finally:
        box.close()


def test_doctor_survives_a_backend_choice_cache_of_the_wrong_shape(tmp_path):
    """`auto` ignores and rewrites a choice cache that is not a JSON object; the doctor used to stop on it with an
    AttributeError traceback."""
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "backend_choice.json").write_text("[1, 2]")
    r, rep = doctor(tmp_path, f'[sync]\noutbox_path = "{tmp_path / "ob.sqlite"}"\n')
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert rep["models"]["auto_choices"] == [] and "ignoring choice cache" in r.stderr


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory) -> dict[str, str]:
    """s1/d1's certificate and key from the fleet CA (make_certs.sh, `edge fleet provision`), and another device's
    key."""
    from sync.provision import provision

    d = tmp_path_factory.mktemp("pki")
    subprocess.run(["bash", str(REPO / "sync" / "mosquitto" / "make_certs.sh"), str(d)], check=True,
                   capture_output=True, timeout=120)
    files = provision("s1/d1", d, d / "out", broker="127.0.0.1")["files"]
    other = provision("s1/d2", d, d / "out", broker="127.0.0.1")["files"]
    return {"ca_file": files["ca"], "cert_file": files["cert"], "key_file": files["key"], "other_key": other["key"]}


def tls(ca_file: str, cert_file: str, key_file: str) -> dict:
    return {"broker": "127.0.0.1", "port": 1, "tls": True, "ca_file": ca_file, "cert_file": cert_file,
            "key_file": key_file}


def test_doctor_checks_the_broker_credential_files_edge_run_loads_at_start(tmp_path, provisioned):
    """`edge run` reads the password file and loads the TLS files when it starts its MQTT client (a missing one
    stops it with a traceback); the doctor names each bad file and the fix."""
    from edge.app.doctor import sync_file_problems

    pf = provisioned
    good = tls(pf["ca_file"], pf["cert_file"], pf["key_file"])
    assert sync_file_problems(parse_config({"device": DEVICE, "sync": good})) == []
    missing = tmp_path / "gone" / "ca.crt"
    assert sync_file_problems(parse_config({"device": DEVICE, "sync": good | {"ca_file": str(missing)}})) == [
        f"sync.ca_file: {missing} not found (fix: copy it to the device, e.g. from `edge fleet provision`'s output, "
        "or correct the path)"]
    swapped = sync_file_problems(parse_config({"device": DEVICE, "sync": good | {"key_file": pf["other_key"]}}))
    assert len(swapped) == 1 and swapped[0].startswith("sync: the TLS files do not load (") and swapped[0].endswith(
        "(fix: use the PEM files `edge fleet provision` wrote for this device)"), swapped
    (tmp_path / "empty").write_text("")
    assert sync_file_problems(parse_config({"device": DEVICE, "sync": {
        "broker": "127.0.0.1", "password_file": str(tmp_path / "empty")}})) == [
        f"sync.password_file: {tmp_path / 'empty'} is empty (fix: put the broker password on its first line)"]
    (tmp_path / "latin").write_bytes("caf\xe9".encode("latin-1"))
    assert sync_file_problems(parse_config({"device": DEVICE, "sync": {
        "broker": "127.0.0.1", "password_file": str(tmp_path / "latin")}})) == [
        f"sync.password_file: {tmp_path / 'latin'} is not UTF-8 text (fix: put the broker password on its first "
        "line, saved as UTF-8)"]
    # no broker: nothing is read, nothing to check
    assert sync_file_problems(parse_config({"device": DEVICE, "sync": {"password_file": str(missing)}})) == []

    r, _ = doctor(tmp_path, f'[sync]\noutbox_path = "{tmp_path / "ob.sqlite"}"\nbroker = "127.0.0.1"\nport = 1\n'
                  f'tls = true\nca_file = "{missing}"\npassword_file = "{tmp_path / "nopw"}"\n')
    assert r.returncode == 1, r.stdout
    assert f"PROBLEM: sync.ca_file: {missing} not found (fix:" in r.stdout
    assert f"PROBLEM: sync.password_file: cannot read {tmp_path / 'nopw'}: No such file or directory (fix:" in r.stdout


# ---------------------------------------------------------------------------------------------- README and help

def _subcommands(command: str) -> set[str]:
    """The sub-commands of `edge <command>` as its real parser has them."""
    import argparse

    top = build_parser([command])
    sub = next(a for a in top._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return set(next(a for a in sub._actions if isinstance(a, argparse._SubParsersAction)).choices)


def test_readme_commands_exist_and_list_every_benchmark():
    from edge.app.bench import TARGETS

    rows = re.findall(r"^\| `edge ([a-z]+) ([^`]*)` \|", (REPO / "README.md").read_text(), re.M)
    named: dict[str, set[str]] = {}
    for command, rest in rows:
        words = re.findall(r"(?:^| / )([a-z][a-z_-]*)", re.sub(r"\[.*?\]|--\S+(?: [A-Z]+)?", "", rest))
        if command in ("models", "bench", "sync", "data", "log", "config"):
            named.setdefault(command, set()).update(words)
    for command, words in named.items():
        assert words <= _subcommands(command), (command, words - _subcommands(command))
    assert named["bench"] == set(TARGETS)


def _default(model, name: str):
    f = model.model_fields[name]
    return f.default_factory() if f.default_factory is not None else f.default


# README table rows whose keys live in another table: the row's header -> that table
_ROW_TABLE = {"models.person_detector": ("people",), "analytics": ("analytics", "tracker"), "[cameras]": ("cameras", 0),
              "models.<model>.onnxruntime": ("models", "pose_landmarks", "onnxruntime"),
              "models.<model>.openvino": ("models", "pose_landmarks", "openvino"),
              "models.<model>.tflite": ("models", "pose_landmarks", "tflite")}


def test_readme_config_defaults_are_the_models_defaults():
    """Every "`key` <number or true/false>" of the README's configuration table is that key's default."""
    from edge.app.config import _model_at

    rows = re.findall(r"^\| `\[([^\]]+\]?)\]`[^|]* \| (.*) \|$", (REPO / "README.md").read_text(), re.M)
    pairs = re.compile(r"((?:`\w+`(?: / )?)+) (-?\d+(?:\.\d+)?|true|false)(?![\w.])")
    checked = 0
    for header, cells in rows:
        model = _model_at(_ROW_TABLE.get(header, tuple(header.split("."))))
        assert model is not None, header
        for names, value in pairs.findall(cells):
            want = {"true": True, "false": False}.get(value, value)
            for name in re.findall(r"`(\w+)`", names):
                got = _default(model, name)
                assert (got == want if isinstance(want, bool) else float(got) == float(want)), (header, name, got)
                checked += 1
    assert checked >= 50  # the table was read (its rows, keys and values)


def test_an_explicit_log_level_wins_over_the_config_in_edge_run(tmp_path):
    """`edge --log-level DEBUG run` used to be switched back to the config's [logging] level (INFO) once the
    config loaded; without the flag the config's level still applies."""
    import subprocess
    import sys

    cfg = tmp_path / "device.toml"
    cfg.write_text(f'[device]\nid = "ll-01"\nstore = "s1"\nkind = "kiosk"\n\n[source]\ntype = "demo"\n\n'
                   f'[http]\nenabled = false\n\n[logging]\nlevel = "INFO"\n\n'
                   f'[sync]\nbroker = ""\noutbox_path = "{tmp_path / "outbox.sqlite"}"\n\n'
                   f'[decisions]\npath = "{tmp_path / "decisions"}"\n')
    runs = {}
    for flag in (["--log-level", "DEBUG"], []):
        r = subprocess.run([sys.executable, "-m", "edge.app.cli", *flag, "run", "--config", str(cfg), "--max-frames",
                            "10"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        runs[bool(flag)] = r.stderr
    assert " DEBUG edge.pose.tracker: track 1 started" in runs[True] and " DEBUG " not in runs[False]
