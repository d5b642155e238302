"""kill -9 of a real device process between alert transitions, and inside one: the alert goes on under the same
id after each restart (from the state file beside the outbox, as `BehaviourStage.from_config` wires it), the cloud's
ack_alert reaches it, and the outbox ends with exactly one opened / acked / resolved of that one alert."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

from edge.alerts.state import AlertState
from sync.outbox import Outbox

from ops_util import REPO
from payload_schemas import check_event

# One device process: the kiosk config (rule kiosk_help: help_requested(kiosk), for_s 0, clear_for_s 3) on a real
# outbox. Reads one JSON command a line (update / ack over the MQTT command handler), answers one JSON line.
# KILL_ON=<event kind>: the process kills itself with SIGKILL when that event is handed to the outbox.
DEVICE = textwrap.dedent("""
    import json, os, signal, sys, time
    from edge.alerts import ack_command_handler
    from edge.app.behaviour import BehaviourStage
    from edge.app.config import load_config
    from sync.outbox import Outbox

    cfg = load_config(sys.argv[1])
    cfg.sync.outbox_path = sys.argv[2]
    outbox = Outbox(cfg.sync.resolved_outbox_path(cfg.device.id)).open()

    class Sink:
        def emit(self, ev):
            if ev.kind == os.environ.get("KILL_ON"):
                os.kill(os.getpid(), signal.SIGKILL)
            outbox.emit(ev)

    stage = BehaviourStage.from_config(cfg, Sink(), source="main", frame_size=(640, 480))
    ack_alert = ack_command_handler(stage.engine)
    print(json.dumps(stage.engine.active()), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "update":
            out = [e.kind for e in stage.engine.update({("help_requested", "kiosk"): cmd["value"]}, cmd["t"],
                                                       time.time())]
        else:
            out = ack_alert({"event_id": cmd["id"], "by": "hq-ops"})
        print(json.dumps(out), flush=True)
""")


class Device:
    """A device process; `ask` sends a command and reads its answer."""

    def __init__(self, tmp_path, kill_on: str = ""):
        env = {**os.environ, "KILL_ON": kill_on, "PYTHONPATH": str(REPO)}
        self.proc = subprocess.Popen([sys.executable, "-c", DEVICE, str(REPO / "device_configs" / "kiosk.toml"),
                                      str(tmp_path / "outbox.sqlite")], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, cwd=REPO, env=env)
        self.active = json.loads(self.proc.stdout.readline())

    def ask(self, **cmd):
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        return json.loads(line) if line else None  # None: the process is gone

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        assert self.proc.wait(30) == -signal.SIGKILL


def alert_events(tmp_path) -> list[dict]:
    with Outbox(tmp_path / "outbox.sqlite") as ob:
        rows = ob.fetch("reliable", 0, 1000)
    return [json.loads(body) for _, stream, _, body, _ in rows if stream == "alerts"]


def test_alert_survives_kill_9_between_and_inside_transitions(tmp_path):
    a = Device(tmp_path)
    assert a.active == [] and a.ask(op="update", value=True, t=0.0) == ["alert_opened"]
    a.kill()  # between transitions
    (opened,) = alert_events(tmp_path)
    alert_id = opened["data"]["alert_id"]
    state = tmp_path / "alert-state-kiosk-01.json"  # beside the outbox
    assert [s.alert.alert_id for s in AlertState.model_validate_json(state.read_bytes()).alerts] == [alert_id]

    b = Device(tmp_path)
    assert [(x["alert_id"], x["state"]) for x in b.active] == [(alert_id, "open")]
    assert b.ask(op="update", value=True, t=0.0) == []  # still holds: no second alert
    out = b.ask(op="ack", id=opened["event_id"])  # the cloud acks by the event id it received
    assert out["alert_id"] == alert_id and out["state"] == "acked" and out["changed"]
    b.kill()

    # killed inside the resolve: after the state was saved, before the outbox had the event
    c = Device(tmp_path, kill_on="alert_resolved")
    assert [(x["alert_id"], x["state"], x["acked_by"]) for x in c.active] == [(alert_id, "acked", "hq-ops")]
    assert [c.ask(op="update", value=False, t=float(t)) for t in range(3)] == [[], [], []]
    assert c.ask(op="update", value=False, t=3.0) is None  # SIGKILL in the emit
    assert c.proc.wait(30) == -signal.SIGKILL
    assert [e["kind"] for e in alert_events(tmp_path)] == ["alert_opened", "alert_acked"]

    d = Device(tmp_path)  # the restart sends the saved alert_resolved; nothing is left open
    assert d.active == [] and d.ask(op="update", value=False, t=0.0) == []
    d.proc.stdin.close()
    assert d.proc.wait(30) == 0
    events = alert_events(tmp_path)
    assert [(e["kind"], e["data"]["alert_id"]) for e in events] == [
        ("alert_opened", alert_id), ("alert_acked", alert_id), ("alert_resolved", alert_id)]
    assert events[2]["data"]["resolution"] == "cleared" and events[2]["data"]["acked_by"] == "hq-ops"
    for e in events:
        check_event(e)
    saved = AlertState.model_validate_json(state.read_bytes())
    assert saved.alerts == [] and saved.pending == [] and "kiosk_help" in saved.cooldowns
