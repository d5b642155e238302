"""The `snapshot` command on a running device (edge run's Runtime, a real mosquitto): off by default, only for the
configured requesters with a purpose, always anonymised, every request in the decision log; the device's local
pages carry the shopper notice."""
from __future__ import annotations

import base64
import json
import threading
import time
import urllib.request

import cv2
import numpy as np
import pytest

from privacy_helpers import faces_in, metric, wait_until


def _runtime(repo, tmp_path, broker, **privacy):
    from edge.app.config import load_config
    from edge.app.runner import Runtime
    from edge.privacy.config import PrivacyConfig

    cfg = load_config(repo / "device_configs" / "kiosk.toml")
    cfg.http.port = 0
    cfg.sync.broker, cfg.sync.port = "127.0.0.1", broker.port
    cfg.sync.outbox_path = str(tmp_path / "outbox.sqlite")
    cfg.sync.telemetry_interval_s = 0
    cfg.privacy = PrivacyConfig(**privacy)
    return Runtime(cfg)


def _run(rt):
    stop = threading.Event()
    th = threading.Thread(target=rt.run, args=(stop,), kwargs={"duration": 120})
    th.start()
    assert wait_until(lambda: rt.http is not None and rt.frames >= 10 and rt.sync.client is not None
                      and rt.sync.client.connected, 90), "runtime did not start"
    time.sleep(0.2)  # device SUBACKs
    return stop, th


def test_snapshot_for_an_allowed_requester_is_anonymised_and_recorded(repo, tmp_path, broker):
    from edge.core.decisions import read_decisions
    from sync import topics
    from sync.client import ClientOptions
    from sync.request import Requester

    rt = _runtime(repo, tmp_path, broker, snapshots=True, snapshot_requesters=["store-manager"],
                  snapshot_max_width=480)
    taken0, refused0 = metric("edge_snapshots_total", outcome="taken"), metric("edge_snapshots_total",
                                                                               outcome="refused")
    stop, th = _run(rt)
    t = topics.DeviceTopics(rt.cfg.device.store, rt.cfg.device.id)
    try:
        base = f"http://127.0.0.1:{rt.http.port}"
        kiosk = urllib.request.urlopen(base + "/kiosk/", timeout=5).read().decode()
        assert rt.cfg.privacy.notice.split(".")[0] in kiosk and 'id="privacy-notice"' in kiosk
        about = urllib.request.urlopen(base + "/privacy", timeout=5).read().decode()
        assert "Every face in it is blurred" in about  # snapshots are on: the page says so
        with Requester(ClientOptions("127.0.0.1", broker.port), [f"{t.base}/cmd_result/+"]) as r:
            ok = r.send(t.cmd("snapshot"), {"by": "store-manager", "reason": "check the kiosk queue"})
            stranger = r.send(t.cmd("snapshot"), {"by": "someone", "reason": "curious"})
            nobody = r.send(t.cmd("snapshot"), {"reason": "no name"})
            purpose = r.send(t.cmd("snapshot"), {"by": "store-manager"})
            other_cam = r.send(t.cmd("snapshot"), {"by": "store-manager", "reason": "x", "camera": "aisle-3"})
            fleet = r.send(topics.fleet_cmd("snapshot"), {"by": "store-manager", "reason": "every store at once"})
            store = r.send(topics.fleet_cmd("snapshot", rt.cfg.device.store), {"by": "store-manager", "reason": "x"})
            stale = r.send(t.cmd("snapshot"), cmd_id="stale-1", payload=json.dumps(  # waited an hour at the broker
                {"v": 1, "id": "stale-1", "args": {"by": "store-manager", "reason": "x"},
                 "ts": time.time() - 3600}).encode())
            got = r.wait([ok, stranger, nobody, purpose, other_cam, fleet, store, stale], 60)
    finally:
        stop.set()
        th.join(60)
    res = got[ok][0]
    assert res["status"] == "ok", res
    snap = res["result"]
    img = cv2.imdecode(np.frombuffer(base64.b64decode(snap["image"]), np.uint8), cv2.IMREAD_COLOR)
    assert img.shape[:2] == (snap["height"], snap["width"]) and snap["width"] == 480  # 640 demo frames, downscaled
    assert faces_in(img) == []
    assert snap["by"] == "store-manager" and snap["camera"] == "main" and snap["frame_age_s"] < 10
    for cid, why in ((stranger, "not in [privacy] snapshot_requesters"), (nobody, "args.by"),
                     (purpose, "purpose"), (other_cam, "main camera only"),
                     (fleet, "only when addressed to this device"), (store, "only when addressed to this device"),
                     (stale, "while the device was offline")):
        assert got[cid][0]["status"] == "error" and why in got[cid][0]["reason"], got[cid]
    assert metric("edge_snapshots_total", outcome="taken") - taken0 == 1
    assert metric("edge_snapshots_total", outcome="refused") - refused0 == 5
    recs = [x for x in read_decisions(tmp_path / f"decisions-{rt.cfg.device.id}") if x["kind"] == "snapshot"]
    assert len(recs) == 6
    (granted,) = [x for x in recs if x["data"]["granted"]]
    assert granted["subject"] == "store-manager" and granted["data"]["purpose"] == "check the kiosk queue"
    assert granted["data"]["sha256"] == snap["sha256"] and granted["seq"] == snap["decision_seq"]
    assert "image" not in granted["data"] and snap["image"][:50] not in str(recs)
    assert {x["subject"] for x in recs if not x["data"]["granted"]} == {"someone", "?", "store-manager"}


def test_snapshots_are_off_by_default_and_say_so(repo):
    from edge.app.config import load_config
    from edge.app.snapshots import Snapshots
    from sync.commands import CommandError

    cfg = load_config(repo / "device_configs" / "tryon-mirror.toml")
    assert cfg.privacy.snapshots is False and cfg.privacy.snapshot_requesters == []
    snaps = Snapshots(cfg, lambda: pytest.fail("no frame may be taken while snapshots are off"))
    with pytest.raises(CommandError, match=r"off on this device \(\[privacy\] snapshots = false\)"):
        snaps.handle({"by": "store-manager", "reason": "x", "camera": ""})
