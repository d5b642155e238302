"""Stale commands (every command is refused by its sender's `ts` once older than its limit, answered once, not run,
not cached), the default client id `<store>/<device>` (two stores' devices with one device id on one broker), and
the public `AdminConnection` the Requester builds on. Real mosquitto (tests/sync/conftest.py)."""
from __future__ import annotations

import json
import time
import tomllib

import pytest
from pydantic import ValidationError

from sync import topics
from sync.commands import CommandRouter, Incoming, builtin_handlers
from sync.config import SyncConfig
from sync.provision import Issued, snippet
from sync.request import Requester
from sync.rollout import AdminConnection
from sync.service import SyncService

from sync_helpers import device_settings, requester

T = topics.DeviceTopics("s001", "d001")
RESULTS = f"{T.base}/cmd_result/+"


def _raw(cmd_id: str, args: dict | None = None, *, age_s: float = 0.0) -> bytes:
    """A command stamped `age_s` seconds before now (negative: ahead of the clock)."""
    return json.dumps({"v": 1, "id": cmd_id, "args": args or {}, "ts": time.time() - age_s}).encode()


def _device(port: int, outbox, calls: dict, **sync) -> SyncService:
    def reload_config(args: dict) -> dict:
        calls["reload_config"] = calls.get("reload_config", 0) + 1
        return {"reloaded": True}

    def rollback(args: dict) -> dict:
        calls["model_rollback"] = calls.get("model_rollback", 0) + 1
        return {"action": "refused"}

    svc = SyncService(*device_settings(port, outbox, **sync), commands={"reload_config": reload_config})
    svc.add_command("model_rollback", rollback)
    svc.start()
    assert svc.client.wait_connected(5), svc.client.last_error
    time.sleep(0.1)  # device SUBACKs
    return svc


def test_stale_command_is_answered_once_not_run_and_a_fresh_resend_with_its_id_runs(broker, tmp_path):
    calls: dict = {}
    svc = _device(broker.port, tmp_path / "outbox.db", calls)
    try:
        with requester(broker.port, [RESULTS]) as r:
            r.send(T.cmd("reload_config"), payload=_raw("week-old", age_s=7 * 86400))
            got = r.wait(["week-old"], 5)["week-old"]
            assert got and got[0]["status"] == "error", got
            assert got[0]["reason"].startswith("command reload_config expired: sent 168.0 h ago, older than the 24 h")
            assert "[sync] command_max_age_s" in got[0]["reason"]
            assert calls.get("reload_config", 0) == 0
            time.sleep(0.3)
            assert len(r.results["week-old"]) == 1  # answered once
            # the refusal is not cached under (reload_config, week-old): a fresh resend with the same id runs
            r.send(T.cmd("reload_config"), payload=_raw("week-old"))
            got = r.wait(["week-old"], 5, each=2)["week-old"]
            assert [x["status"] for x in got] == ["error", "ok"] and calls["reload_config"] == 1
            # ... and is cached as usual: its redelivery is answered, not run again
            r.send(T.cmd("reload_config"), payload=_raw("week-old"))
            assert [x["status"] for x in r.wait(["week-old"], 5, each=3)["week-old"]] == ["error", "ok", "ok"]
            assert calls["reload_config"] == 1
            # clock skew: 10 min ahead passes, 2 days ahead is refused and names NTP
            r.send(T.cmd("ping"), payload=_raw("skew", age_s=-600))
            r.send(T.cmd("set_log_level"), payload=_raw("ahead", {"level": "DEBUG", "logger": "sf.t38"},
                                                         age_s=-2 * 86400))
            got = r.wait(["skew", "ahead"], 5)
            assert got["skew"][0]["status"] == "ok", got
            assert got["ahead"][0]["status"] == "error" and "ahead of this device's clock" in got["ahead"][0]["reason"]
            assert "NTP" in got["ahead"][0]["reason"]
            # handlers that judge their own age are not refused by the router: a rollback is wanted after an
            # outage, a snapshot request is refused (and recorded) by its own handler
            r.send(T.cmd("model_rollback"), payload=_raw("rb", {"name": "m", "version": "2"}, age_s=3 * 86400))
            r.send(T.cmd("snapshot"), payload=_raw("snap", age_s=3 * 86400))
            got = r.wait(["rb", "snap"], 5)
            assert got["rb"][0]["status"] == "ok" and calls["model_rollback"] == 1
            assert got["snap"][0]["reason"].startswith("unsupported"), got["snap"]
        assert svc.metrics()["commands"]["expired"] == 2
    finally:
        svc.stop()


def test_command_that_waited_in_the_offline_device_session_is_refused_at_reconnect(broker, tmp_path):
    """The leftover: a command published while the device is offline waits in its persistent session and used
    to run whenever the device came back. Limit 1 s for reload_config, 2 s offline."""
    calls: dict = {}
    settings = {"command_max_ages": {"reload_config": 1}}
    svc = _device(broker.port, tmp_path / "outbox.db", calls, **settings)
    svc.stop()
    with requester(broker.port, [RESULTS]) as r:
        queued = r.send(T.cmd("reload_config"), {})  # QoS 1, queued in the device's session
        ping = r.send(T.cmd("ping"), {})  # the 24 h default: still runs
        r.flush()
        time.sleep(2.0)
        svc = _device(broker.port, tmp_path / "outbox.db", calls, **settings)
        try:
            got = r.wait([queued, ping], 5)
            assert got[queued] and got[queued][0]["status"] == "error", got
            assert "expired" in got[queued][0]["reason"]
            assert "[sync] command_max_ages.reload_config" in got[queued][0]["reason"]
            assert got[ping] and got[ping][0]["status"] == "ok", got
            assert calls.get("reload_config", 0) == 0
            fresh = r.send(T.cmd("reload_config"), {})
            assert r.wait([fresh], 5)[fresh][0]["status"] == "ok" and calls["reload_config"] == 1
        finally:
            svc.stop()


def test_non_finite_ts_is_a_bad_request_and_never_reaches_a_self_aged_handler():
    """`ts: NaN` compared false against every limit, so a model_update offer stamped NaN passed its age check."""
    out: list[dict] = []
    seen: list[dict] = []
    handlers = {**builtin_handlers(), "model_update": lambda args: seen.append(args) or {"state": "QUEUED"}}
    router = CommandRouter("d1", "s1", handlers, lambda cmd, raw: out.append(json.loads(raw)))
    for ts in ("NaN", "Infinity", "-Infinity"):
        router.handle(Incoming("model_update", f'{{"id": "x", "args": {{}}, "ts": {ts}}}'.encode(), False))
    assert not seen
    assert [o["status"] for o in out] == ["error"] * 3
    assert all(o["reason"].startswith("bad request: ts") for o in out), out


def test_a_device_whose_clock_was_never_set_runs_commands_without_an_age_check(caplog):
    """A device at 1970 (no RTC, NTP not reached yet) sees every stamped command as decades ahead: it would refuse
    them all, the reload_config that could fix it too. It runs them, and says once why there is no age check; a set
    clock still refuses the same command a week old, and the default limit keeps a night offline (16 h) valid."""
    import logging

    out: list[dict] = []
    week_old = f'{{"id": "x", "args": {{}}, "ts": {time.time() - 7 * 86400}}}'.encode()
    for clock in (lambda: 3600.0, time.time):
        router = CommandRouter("d1", "s1", builtin_handlers(), lambda cmd, raw: out.append(json.loads(raw)),
                               clock=clock)
        with caplog.at_level(logging.WARNING, logger="sync.commands"):
            for _ in range(2):
                router.handle(Incoming("ping", week_old, False))
        router.handle(Incoming("ping", _raw("night", age_s=16 * 3600), False))
    assert [o["status"] for o in out] == ["ok", "ok", "ok", "error", "error", "ok"], out
    assert "expired" in out[3]["reason"]
    assert caplog.text.count("the device clock is not set") == 1


def test_max_age_settings_are_checked_with_the_key_named():
    assert SyncConfig.model_validate({"command_max_ages": {"reload_config": 600}}).command_max_ages == {
        "reload_config": 600.0}
    with pytest.raises(ValidationError, match="valid number"):  # quoted: a TOML typo, refused (config_base)
        SyncConfig.model_validate({"command_max_ages": {"reload_config": "600"}})
    cases = [({"command_max_age_s": 0}, "command_max_age_s = 0"),
             ({"command_max_age_s": 40 * 86400}, "30 days"),
             ({"command_max_ages": {"ping": float("nan")}}, "command_max_ages.ping = nan"),
             ({"command_max_ages": {"reload_cofig": 60}}, "command_max_ages.reload_cofig: no such command"),
             ({"command_max_ages": {"model_update": 60}}, "update_offer_max_age_s"),
             ({"command_max_ages": {"snapshot": 60}}, "judges its own age")]
    for settings, message in cases:
        with pytest.raises(ValidationError, match=message.replace(".", r"\.")):
            SyncConfig.model_validate(settings)


# ---------------------------------------------------------------- client id
def test_default_client_id_is_store_and_device_and_an_explicit_one_is_kept(broker, tmp_path):
    assert SyncConfig().resolved_client_id("s1", "mirror-01") == "s1/mirror-01"
    assert SyncConfig(client_id="custom").resolved_client_id("s1", "mirror-01") == "custom"
    svc = SyncService(*device_settings(broker.port, tmp_path / "o.db", client_id="custom"))
    svc.start()
    try:
        assert svc.client.wait_connected(5) and svc.client.opts.client_id == "custom"
    finally:
        svc.stop()


def test_same_device_id_in_two_stores_share_a_broker_without_taking_over_each_other(broker, tmp_path):
    """Two stores each with a device `mirror-01` and no `[sync] client_id`: with the device id as the client id
    they took over each other's persistent session (reconnect loop); with `<store>/<device>` both stay up."""
    devs = [SyncService(*device_settings(broker.port, tmp_path / f"{store}.db", device="mirror-01", store=store))
            for store in ("s1", "s2")]
    for d in devs:
        d.start()
    try:
        assert all(d.client.wait_connected(5) for d in devs)
        time.sleep(1.5)  # a takeover loop reconnects every 0.1-0.5 s here
        assert [d.client.connect_count for d in devs] == [1, 1], [d.client.last_error for d in devs]
        assert [d.client.opts.client_id for d in devs] == ["s1/mirror-01", "s2/mirror-01"]
        assert all(d.client.connected for d in devs)
        with requester(broker.port, [f"{topics.ROOT}/+/mirror-01/cmd_result/+"]) as r:
            ids = [r.send(topics.DeviceTopics(s, "mirror-01").cmd("ping"), {}) for s in ("s1", "s2")]
            got = r.wait(ids, 5)
            assert [got[i][0]["store"] for i in ids] == ["s1", "s2"]
    finally:
        for d in devs:
            d.stop()


def test_provisioned_snippet_with_the_longest_ids_is_a_valid_sync_section():
    """`edge fleet provision` writes `client_id = "<store>/<device>"`: 129 characters with 64-character ids."""
    issued = Issued("s" * 64, "d" * 64, b"", None)
    text = snippet(issued, broker="mqtt.example.net", port=8883, install_dir="/etc/storefront")
    cfg = SyncConfig.model_validate(tomllib.loads(text)["sync"])
    assert cfg.client_id == issued.identity and len(cfg.client_id) == 129


def test_requester_builds_on_the_public_admin_connection():
    assert issubclass(Requester, AdminConnection)
