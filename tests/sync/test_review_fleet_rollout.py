"""Fleet rollout defects found in review, each against a real mosquitto and real update agents: duplicate devices,
offers the broker refuses, wave percentages, a late offer answer after an abort, and resuming a rollout after
the admin tool was killed with SIGKILL."""
from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from devtools.broker import Broker, prod_acl
from sync import topics
from sync.client import ClientOptions
from sync.rollout import AdminConnection, Rollout, wave_sizes

from sync_helpers import wait_until
from update_helpers import MODEL, Device, published_fleet

CHUNK = 64 << 10
REPO = Path(__file__).resolve().parents[2]


def opts(port: int, **kw) -> ClientOptions:
    return ClientOptions("127.0.0.1", port, **kw)



@pytest.fixture
def fleet(broker, tmp_path):
    return published_fleet(broker.port, tmp_path, CHUNK)


def test_wave_sizes_round_exactly_and_refuse_bad_percentages():
    assert wave_sizes(375, [8.8, 100]) == [33, 375]  # float 375 * 8.8 / 100 = 33.00000000000001, not 34
    assert wave_sizes(250, [64.4, 100]) == [161, 250]
    assert wave_sizes(5, [1, 10, 50, 100]) == [1, 3, 5]  # never a wave of 0 devices
    for bad in ([10, 5], [0, 100], [150], [math.nan], [-1, 100]):
        with pytest.raises(ValueError, match="cumulative percentages"):
            wave_sizes(10, bad)


def test_duplicate_device_is_offered_once_and_does_not_time_out(broker, tmp_path, fleet):
    pub, base = fleet
    dev = Device(broker.port, tmp_path / "d1", pub, base=base).start()
    try:
        res = Rollout(opts(broker.port), MODEL, "1.1", [("s001", "d001"), ("s001", "d001")], waves=[100],
                      wave_timeout_s=20, rollback_timeout_s=2).run()
        assert res["status"] == "SUCCEEDED", res
        assert res["waves"] == [{"s001/d001": "SUCCEEDED"}]
        assert dev.current() == "1.1" and dev.agent.metrics()["offers"] == 1
    finally:
        dev.stop()


def test_offers_refused_by_the_broker_fail_the_rollout_at_once(tmp_path, capsys):
    """The `cloud` user may not write commands (sync/mosquitto/acl): the broker answers the offer's PUBACK with
    0x87. The admin must hear that, not wait the wave timeout for TIMED_OUT devices."""
    b = Broker(tmp_path / "acl-broker", users={"cloud": "pw"}, acl=prod_acl()).start()
    try:
        with pytest.raises(ConnectionError, match="Not authorized"):
            Rollout(opts(b.port, username="cloud", password="pw"), MODEL, "1.1", [("s001", "d001")], waves=[100],
                    wave_timeout_s=5, rollback_timeout_s=1).run()
        from edge.app.cli import main

        with pytest.raises(SystemExit, match="edge fleet rollout: broker refused 1 publishes: PUBACK 0x87"):
            main(["fleet", "rollout", "--port", str(b.port), "--username", "cloud", "--password", "pw",
                  "--name", MODEL, "--version", "1.1", "--devices", "s001/d001", "--wave-timeout", "5"])
    finally:
        b.close()


def test_late_already_active_answer_does_not_hide_a_refused_rollback(broker, tmp_path, fleet):
    """d001 already runs 1.1 (an earlier rollout installed it) and is offline when a second rollout of 1.1 aborts.
    When it comes back it answers the queued offer "already active" (SUCCEEDED), then refuses the rollback (the
    version belongs to the earlier rollout): the result must say ROLLBACK_REFUSED, not SUCCEEDED."""
    pub, base = fleet
    d1 = Device(broker.port, tmp_path / "d1", pub, base=base).start()
    d2 = None
    try:
        first = Rollout(opts(broker.port), MODEL, "1.1", [("s001", "d001")], waves=[100], wave_timeout_s=20).run()
        assert first["status"] == "SUCCEEDED", first
        d1.stop()
        d1 = None
        d2 = Device(broker.port, tmp_path / "d2", pub, device="d002", base=base, healthy=False).start()
        out: dict = {}
        rollout = Rollout(opts(broker.port), MODEL, "1.1", [("s001", "d002"), ("s001", "d001")], waves=[100],
                          abort_failure_pct=20, wave_timeout_s=60, rollback_timeout_s=30)
        with AdminConnection(opts(broker.port), [topics.DeviceTopics("s001", "d001").cmd("model_rollback")]) as spy:
            t = threading.Thread(target=lambda: out.update(rollout.run()))
            t.start()
            try:
                assert wait_until(lambda: spy.messages, 60), "the rollout never aborted"
                d1 = Device(broker.port, tmp_path / "d1", pub).start()  # back online after the abort
            finally:
                t.join(90)
        assert out["status"] == "ABORTED", out
        assert out["rolled_back"] == {"s001/d001": "ROLLBACK_REFUSED"}, out
        assert "rollout " + first["rollout"] in out["devices"]["s001/d001"]["reason"], out
        assert d1.current() == "1.1"
    finally:
        for d in (d1, d2):
            if d is not None:
                d.stop()


def test_rollout_killed_mid_way_resumes_with_its_id_and_can_still_roll_back(broker, tmp_path, fleet, capsys):
    """kill -9 of `edge fleet rollout` after wave 1 succeeded; the admin reruns it with the id it printed at its
    start. Wave 2 fails and the rollout aborts: the device that the killed run updated accepts the rollback (it
    refuses one from another rollout), so it goes back to 1.0."""
    pub, base = fleet
    d1 = Device(broker.port, tmp_path / "d1", pub, base=base).start()
    d2 = Device(broker.port, tmp_path / "d2", pub, device="d002", base=base, healthy=False).start()
    args = ["fleet", "rollout", "--port", str(broker.port), "--name", MODEL, "--version", "1.1",
            "--devices", "s001/d001,s001/d002", "--waves", "50,100", "--wave-timeout", "60"]
    err_path = tmp_path / "killed.err"
    try:
        with open(err_path, "wb") as err:
            p = subprocess.Popen([sys.executable, "-m", "edge.app.cli", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                                 stderr=err, start_new_session=True)
        try:
            assert wait_until(lambda: d1.last.get("state") == "SUCCEEDED", 60), d1.agent.models()
        finally:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(10)
        m = re.search(r"--rollout-id (\S+)", err_path.read_text())
        assert m, err_path.read_text()[-2000:]
        from edge.app.cli import main

        capsys.readouterr()
        assert main([*args, "--rollout-id", m.group(1), "--json"]) == 3  # ABORTED
        res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert res["rollout"] == m.group(1) and res["status"] == "ABORTED", res
        assert res["rolled_back"] == {"s001/d001": "ROLLED_BACK"}, res
        assert d1.current() == "1.0" and d2.current() == "1.0"
    finally:
        d1.stop()
        d2.stop()
