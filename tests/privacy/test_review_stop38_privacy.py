"""Review of the privacy area: image bytes as text (bytes reprs, latin-1 or error-decoded bytes, list and array
reprs) are refused by the payload guard; a snapshot request needs a `ts` within the age limit either way and at
most one snapshot is sent per `[privacy] snapshot_min_interval_s`; `edge data purge --dry-run` counts what the purge
removes; the purge removes the files a crash left half-written (a shelf reference's pixels, decision records)."""
from __future__ import annotations

import json
import time
import uuid

import cv2
import numpy as np
import pytest

from edge.core.events import Event
from edge.privacy.guard import check_payload, check_result, find_image_data
from sync import payloads

from privacy_helpers import faces_in, metric

DAY = 86400.0
_rng = np.random.default_rng(3)
CROP = cv2.GaussianBlur(_rng.integers(0, 255, (48, 48, 3), np.uint8), (5, 5), 0)
JPG = cv2.imencode(".jpg", CROP, [cv2.IMWRITE_JPEG_QUALITY, 70])[1].tobytes()
PNG = cv2.imencode(".png", CROP)[1].tobytes()
TINY_PNG = cv2.imencode(".png", np.zeros((2, 2, 3), np.uint8))[1].tobytes()
GREY = cv2.cvtColor(CROP, cv2.COLOR_BGR2GRAY)[:18, :18]

AS_TEXT = {  # name: (text, what the reason names)
    "bytes repr of a JPEG": (str(JPG), "escaped bytes"),
    "bytes repr of a 2x2 PNG after a word": ("blob=" + str(TINY_PNG), "PNG image"),
    "bytes repr of raw pixels": (str(CROP.tobytes()), "escaped bytes"),
    "JPEG decoded as latin-1": (JPG.decode("latin-1"), "JPEG image as text"),
    "PNG decoded as latin-1": (PNG.decode("latin-1"), "PNG image as text"),
    "JPEG decoded with errors replaced": (JPG.decode("utf-8", "replace"), "binary data in text"),
    "JPEG decoded with surrogateescape": (JPG.decode("utf-8", "surrogateescape"), "JPEG image as text"),
    "JSON text of latin-1 bytes": (json.dumps(JPG.decode("latin-1")), "escaped bytes"),
    "numpy repr of a grey crop": (str(GREY), "hex/decimal numbers"),
    "list repr of an RGB crop": (str(CROP[:10, :10].tolist()), "hex/decimal numbers"),
}


def _body(data: dict) -> str:
    return payloads.event_body("zone_entered", "events", 1.8e9, uuid.uuid4().hex, data, max_bytes=1 << 20)


@pytest.mark.parametrize("name", AS_TEXT)
def test_image_bytes_as_text_are_refused(name):
    text, why = AS_TEXT[name]
    data = {"zone": "door", "note": text}
    reason = find_image_data(data)
    assert reason is not None and why in reason, reason
    body = _body(data)
    assert why in (check_payload(body) or ""), check_payload(body)  # the stored record, at delivery
    batch = payloads.batch("d001", "s001", "e" * 16, [(1, _body({"zone": "door"})), (2, body)], False)
    assert check_payload(batch, thorough=False) is not None  # the client's screen of an already checked batch
    assert check_result("ping", data) is not None


def test_text_in_other_languages_and_short_lists_pass():
    for data in ({"notice": "Kamera in Betrieb. Ihr Bild wird nur auf diesem Gerät verarbeitet — ça va ✓ 日本語 "
                            "Größe: M, Farbe: Grün\n\tweiter"},
                 {"reason": f"polygon {[[21, 28], [119, 28], [119, 163], [21, 163]]} outside the frame (640, 480)"},
                 {"reason": "track ids " + str(list(range(60)))},
                 {"path": "C:\\x-ray\\u00-folder\\file.json", "formula": "x^2 + y^2"}):
        assert find_image_data(data) is None, data
        assert check_payload(_body(data)) is None, data


# ------------------------------------------------------------------------------------------------ snapshots
@pytest.fixture
def snapshots(repo):
    """The runtime's Snapshots handler (real anonymiser, fixed backend) over a package photo as the main camera's
    newest frame, behind a real CommandRouter; call it with (args, ts) -> the result sent."""
    from calibration.photos import staged_path
    from edge.app.config import load_config
    from edge.app.snapshots import Snapshots
    from edge.core.frames import Frame
    from edge.privacy.config import PrivacyConfig
    from sync.commands import CommandRouter, Incoming

    cfg = load_config(repo / "device_configs" / "kiosk.toml")
    for ref in (cfg.models.face_detector, cfg.models.pose_detector, cfg.models.pose_landmarks):
        ref.backend, ref.precision = "onnxruntime", "fp32"
    cfg.privacy = PrivacyConfig(snapshots=True, snapshot_requesters=["store-manager"])
    image = cv2.imread(str(staged_path("zidane.jpg")), cv2.IMREAD_COLOR)
    frame = Frame(image, 1, time.monotonic(), time.time())
    snaps = Snapshots(cfg, lambda: frame)
    sent: list[dict] = []
    router = CommandRouter("d001", "s001", {"snapshot": snaps.handle}, lambda cmd, raw: sent.append(json.loads(raw)))

    def ask(ts, cmd_id: str | None = None) -> dict:
        req = {"v": 1, "id": cmd_id or uuid.uuid4().hex, "args": {"by": "store-manager", "reason": "queue check"}}
        if ts is not None:
            req["ts"] = ts
        router.handle(Incoming("snapshot", json.dumps(req).encode(), False))
        return sent[-1]

    ask.privacy = cfg.privacy
    yield ask
    snaps.close()


def test_a_snapshot_request_without_a_send_time_or_from_the_future_is_refused(snapshots, decision_log):
    from edge.core.decisions import read_decisions

    refused0 = metric("edge_snapshots_total", outcome="refused")
    no_ts = snapshots(None)
    ahead = snapshots(time.time() + 3600)  # a clock an hour ahead: its age cannot be judged
    assert no_ts["status"] == "error" and "has no ts" in no_ts["reason"], no_ts
    assert ahead["status"] == "error" and "ahead of this device's clock" in ahead["reason"], ahead
    assert metric("edge_snapshots_total", outcome="refused") - refused0 == 2
    decision_log.flush()
    recs = [r for r in read_decisions(decision_log.folder) if r["kind"] == "snapshot"]
    assert [r["data"]["granted"] for r in recs] == [False, False]


def test_at_most_one_snapshot_per_interval(snapshots, decision_log):
    import base64

    snapshots.privacy.snapshot_min_interval_s = 2
    first = snapshots(time.time())
    assert first["status"] == "ok", first
    img = cv2.imdecode(np.frombuffer(base64.b64decode(first["result"]["image"]), np.uint8), cv2.IMREAD_COLOR)
    assert faces_in(img) == []
    again = snapshots(time.time())
    assert again["status"] == "error" and "at most one per 2 s" in again["reason"], again
    assert "snapshot_min_interval_s" in again["reason"]
    time.sleep(2.1)
    assert snapshots(time.time())["status"] == "ok"


def test_what_is_sent_is_checked_after_jpeg_encoding(repo):
    """The check for a face left runs on the decoded JPEG that is sent: on zidane.jpg, JPEG compression of the
    blurred picture gave two faces over 0.5 that the check of the unencoded picture did not see."""
    import base64

    from calibration.photos import staged_path
    from edge.app.config import ModelsSection
    from edge.privacy.anonymise import Anonymiser
    from models.zoo import ModelZoo

    models = ModelsSection()
    for ref in (models.face_detector, models.pose_detector, models.pose_landmarks):
        ref.backend, ref.precision = "onnxruntime", "fp32"
    a = Anonymiser.open(ModelZoo(), models, max_width=640, jpeg_quality=70)
    try:
        res = a.snapshot(cv2.imread(str(staged_path("zidane.jpg")), cv2.IMREAD_COLOR))
    finally:
        a.close()
    sent = cv2.imdecode(np.frombuffer(base64.b64decode(res["image"]), np.uint8), cv2.IMREAD_COLOR)
    assert faces_in(sent) == []


def test_min_interval_is_a_checked_setting():
    from edge.app.config import ConfigError, parse_config

    base = {"device": {"id": "k", "store": "s", "kind": "kiosk"}}
    assert parse_config(base, "k.toml").privacy.snapshot_min_interval_s == 10
    with pytest.raises(ConfigError, match=r"privacy.snapshot_min_interval_s: .*greater than or equal to 1"):
        parse_config({**base, "privacy": {"snapshot_min_interval_s": 0}}, "k.toml")


# ------------------------------------------------------------------------------------------------ purge
def _shelf_cfg(repo, tmp_path):
    from edge.app.config import load_config

    cfg = load_config(repo / "device_configs" / "shelf-camera.toml")
    cfg.sync.outbox_path = str(tmp_path / "outbox.sqlite")
    cfg.analytics.planogram.reference_dir = str(tmp_path / "shelf")
    return cfg


def test_dry_run_counts_what_the_purge_removes(repo, tmp_path):
    """A try-on session the broker refused (made and dead-lettered 10 days ago) is removed with the sessions (7 days): the
    dry run counted it nowhere before."""
    from edge.app.data_cli import purge
    from sync.outbox import RELIABLE, Outbox

    cfg = _shelf_cfg(repo, tmp_path)
    now = time.time()
    with Outbox(cfg.sync.resolved_outbox_path(cfg.device.id)) as ob:
        for age in (10, 10, 1):
            seq = ob.emit(Event("tryon_session", {"sku": "S", "duration_s": 3.0}))
            ob.dead_letter(RELIABLE, [seq], "PUBACK 0x87 not authorized")
            ob.db.execute("UPDATE dead_letter SET ts = ?, created = ? WHERE id = (SELECT MAX(id) FROM dead_letter)",
                          (now - age * DAY, now - age * DAY))
        old = ob.emit(Event("tryon_session", {"sku": "S", "duration_s": 3.0}))
        ob.db.execute("UPDATE reliable SET created = ? WHERE seq = ?", (now - 10 * DAY, old))
        for age in (40, 1):
            ob.emit(Event("bad kind!", {"x": age}))  # invalid: dead-lettered
            ob.db.execute("UPDATE dead_letter SET ts = ? WHERE id = (SELECT MAX(id) FROM dead_letter)",
                          (now - age * DAY,))
    for mode in ({}, {"older_than": "5d"}, {"all_": True}):
        dry = purge(cfg, dry_run=True, **mode)
        assert (dry["session_records"], dry["dead_letters"]) == ((4, 2) if mode.get("all_") else (3, 1)), dry
    dry = purge(cfg, dry_run=True)
    done = purge(cfg)
    assert (dry["session_records"], dry["dead_letters"]) == (done["session_records"], done["dead_letters"]) == (3, 1)


def test_purge_removes_what_a_crash_left_half_written(repo, tmp_path):
    """A process killed inside write_atomic leaves `.<name>.<pid>.tmp` beside the file: a shelf reference's pixels,
    decision records. The purge removes them (the run lock says no process writes them), other files stay."""
    from edge.app.data_cli import purge
    from edge.app.operations import decision_log_dir

    cfg = _shelf_cfg(repo, tmp_path)
    shelf = tmp_path / "shelf"
    shelf.mkdir()
    png = cv2.imencode(".png", CROP)[1].tobytes()
    (shelf / "reference.png").write_bytes(png)
    (shelf / ".reference.png.4242.tmp").write_bytes(png)
    (shelf / ".valid.png.4242.tmp").write_bytes(png)
    (shelf / "notes.txt").write_text("the store's own file")
    dec = decision_log_dir(cfg)
    dec.mkdir(parents=True)
    (dec / ".decisions.jsonl.4243.tmp").write_bytes(b'{"seq":1,"ts":1.0,"kind":"alert"}\n')
    (dec / ".decisions.2.jsonl.4243.tmp").write_bytes(b"")
    dry = purge(cfg, dry_run=True, older_than="1h")
    assert dry["leftover_files"] == 4 and (shelf / ".reference.png.4242.tmp").exists()
    done = purge(cfg, older_than="1h")  # the reference itself is newer than the cutoff: it stays
    assert done["leftover_files"] == 4 and done["shelf_references"] == 0
    assert sorted(p.name for p in shelf.iterdir()) == ["notes.txt", "reference.png"]
    assert not list(dec.glob(".*.tmp"))


def test_purge_removes_damaged_copies_past_the_history_retention(repo, tmp_path):
    """The outbox and alert states the device moved aside as damaged (never read again) hold undeliverable records:
    they go after `history_retention_days` like dead letters, and with --all; the live files stay."""
    import os

    from edge.app.behaviour import alert_state_path
    from edge.app.data_cli import purge

    cfg = _shelf_cfg(repo, tmp_path)
    ob = cfg.sync.resolved_outbox_path(cfg.device.id)
    state = alert_state_path(cfg, cfg.alerts)
    ob.parent.mkdir(parents=True, exist_ok=True)
    old = [ob.with_name(ob.name + ".corrupt-20250101T000000"), ob.with_name(ob.name + ".corrupt-20250101T000000-wal"),
           state.with_name(state.name + ".damaged-20250101T000000")]
    new = [ob.with_name(ob.name + ".corrupt-20990101T000000"), state.with_name(state.name + ".damaged-20990101T000000")]
    for f in old + new:
        f.write_bytes(b"tryon_session MARKER")
    for f in old:
        os.utime(f, (time.time() - 40 * DAY,) * 2)
    state.write_text("{}")  # the live state file
    assert purge(cfg, dry_run=True)["quarantined_files"] == 3 and all(f.exists() for f in old)
    assert purge(cfg)["quarantined_files"] == 3
    assert not any(f.exists() for f in old) and all(f.exists() for f in new) and state.exists()
    assert purge(cfg, all_=True)["quarantined_files"] == 2
    assert not any(f.exists() for f in new) and state.exists()


def test_purge_keeps_a_corrupt_outbox_where_it_is_and_ages_copies_from_their_move(repo, tmp_path):
    """`edge data purge` (a dry run above all) never moves a corrupt outbox aside: it stops on it (the command exits
    1 naming the file), which stays as it was. A copy `edge run` moved aside today is kept for the history retention
    even when its data is older (a rename keeps the mtime): it counts from the time in its name."""
    import os
    import sqlite3

    from edge.app.data_cli import purge

    cfg = _shelf_cfg(repo, tmp_path)
    ob = cfg.sync.resolved_outbox_path(cfg.device.id)
    ob.parent.mkdir(parents=True, exist_ok=True)
    ob.write_bytes(b"\x00not an sqlite database\xff" * 300)
    before = sorted(p.name for p in ob.parent.iterdir())
    for dry_run in (True, False):  # `edge data purge` reports this error with the file and exits 1
        with pytest.raises(sqlite3.DatabaseError):
            purge(cfg, dry_run=dry_run)
        assert sorted(p.name for p in ob.parent.iterdir()) == before
    ob.unlink()
    moved = ob.with_name(ob.name + ".corrupt-" + time.strftime("%Y%m%dT%H%M%S"))  # moved aside just now
    moved.write_bytes(b"tryon_session MARKER")
    os.utime(moved, (time.time() - 40 * DAY,) * 2)  # ...holding data last written 40 days ago
    assert purge(cfg)["quarantined_files"] == 0 and moved.exists()


def test_escaped_accented_text_and_terminal_colours_are_not_image_data():
    """Ordinary text the byte checks took for binary: accented text as JSON (`\\u00e9` is a letter, not a byte of
    latin-1-decoded binary) and program output with ANSI colour codes (ESC is a control character). Binary written
    the same ways is still refused."""
    import json

    import cv2
    import numpy as np

    from edge.privacy.guard import find_image_data

    text = json.dumps("Café crème, élève à l'école, très générale; Größe, Straße, für Bären. " * 20)
    log_line = "\x1b[31mERROR\x1b[0m pose model failed on \x1b[1mcam-2\x1b[0m, retrying " * 20
    assert find_image_data({"note": text}) is None and find_image_data({"stderr": log_line}) is None
    jpg = cv2.imencode(".jpg", np.random.default_rng(1).integers(0, 255, (48, 48, 3), np.uint8))[1].tobytes()
    for leak in (json.dumps(jpg[300:].decode("latin-1")), str(jpg[300:]), "\x1b[0m" + jpg[300:].decode("latin-1")):
        assert find_image_data({"note": leak}) is not None
