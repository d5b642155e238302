"""The service supervisor (edge/app/service.py) with two streams stalled at once: each stream's recovery is logged
and recorded when it happens, and the watchdog pings resume only once none is stalled."""
from __future__ import annotations

import threading
import time

from edge.app.service import ServiceConfig, ServiceSupervisor
from edge.core import decisions
from edge.core.decisions import DecisionLog, DecisionLogConfig, read_decisions

from ops_util import StreamFeed
from systemd_double import NotifySocket
from waiting import wait_until


def test_each_stream_recovery_is_recorded_while_another_stays_stalled(tmp_path):
    sock = NotifySocket(tmp_path)
    dlog = DecisionLog.from_config(DecisionLogConfig(), tmp_path / "decisions").open()
    decisions.set_default(dlog)
    feed = StreamFeed(("main", "cam2", "cam3"))
    flowing = feed.flowing
    sup = ServiceSupervisor(ServiceConfig(stall_s=0.4), feed.progress, threading.Event(),
                            env={"NOTIFY_SOCKET": sock.env_value, "WATCHDOG_USEC": "200000"}).start()
    try:
        sup.ready()
        flowing["cam2"] = flowing["cam3"] = False
        assert wait_until(lambda: set(sup.stalled) == {"cam2", "cam3"}, 10), sup.stalled
        flowing["cam2"] = True
        assert wait_until(lambda: set(sup.stalled) == {"cam3"}, 10), sup.stalled
        t_cam2 = time.monotonic()
        assert wait_until(lambda: any(r["subject"] == "recovered" for r in _service(dlog, tmp_path)), 10)
        assert sock.times("WATCHDOG", "1", since=t_cam2) == []  # cam3 is still stalled: no ping
        flowing["cam3"] = True
        assert wait_until(lambda: not sup.stalled, 10), sup.stalled
        assert wait_until(lambda: sock.times("WATCHDOG", "1", since=t_cam2), 10)
    finally:
        feed.close()
        sup.close()
        decisions.set_default(None)
        dlog.close()
        sock.close()
    recs = [r for r in read_decisions(tmp_path / "decisions", kinds=["service"]) if r["subject"] == "recovered"]
    assert [r["data"]["streams"] for r in recs] == [["cam2"], ["cam3"]], recs
    assert recs[0]["data"]["still_stalled"] == ["cam3"] and "still stalled: cam3" in recs[0]["reason"]
    assert "watchdog pings resume" in recs[1]["reason"]


def _service(dlog, tmp_path) -> list[dict]:
    dlog.flush()
    return list(read_decisions(tmp_path / "decisions", kinds=["service"]))
