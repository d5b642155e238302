"""`edge fleet ...`: list devices from their retained state, send a command to a device, a store or the fleet,
provision a device's certificate (sync/provision.py); model updates (publish-model, unpublish-model, rollout,
status) live in sync/rollout_cli.py."""
from __future__ import annotations

import argparse
import json
import sys
import time

from sync import rollout_cli
from sync.cli import add_broker_arguments, broker_options, failure_line, json_object, positive

EXIT_DEVICES_FAILED = 3  # a device answered with an error or not at all, a rollout ABORTED (1: the tool failed)
EXIT_INTERRUPTED = 130  # Ctrl-C


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.epilog = ("exit status: 0 done; 1 the tool failed (one line on stderr says why: broker, credentials, bad "
                "argument, key or file); 2 bad usage, or a rollout with no device to offer to; 3 devices failed (a "
                "command answered with an error or not at all, a rollout ABORTED); 130 interrupted (Ctrl-C)")
    sub = p.add_subparsers(dest="fleet_cmd", required=True)
    ls = sub.add_parser("list", help="devices and their retained state (online/offline, bdSeq, models)")
    add_broker_arguments(ls)
    ls.add_argument("--wait", type=positive, default=1.0, help="seconds to collect retained states")
    ls.add_argument("--json", action="store_true", help="print JSON lines")
    s = sub.add_parser("send", help="send a command to a device (--store --device), a store (--store) or all")
    add_broker_arguments(s)
    s.add_argument("command")
    s.add_argument("--store", help="only this store")
    s.add_argument("--device", help="only this device (needs --store)")
    s.add_argument("--args", default="{}", help="JSON object")
    s.add_argument("--timeout", type=positive, default=5.0, help="seconds to collect results (with --device: at "
                   "most, until it answers)")
    rollout_cli.add_arguments(sub)
    from sync import provision

    provision.add_arguments(sub.add_parser("provision", help="issue a device's certificate (fleet CA) and its "
                                                             "[sync] config snippet; access comes from the "
                                                             "pattern ACL"))


def run(args) -> int:
    """Run the sub-command; a refused or failed operation (broker down or refusing, bad argument, key or
    manifest) exits with its one-line reason instead of a traceback."""
    try:
        if args.fleet_cmd in rollout_cli.COMMANDS:
            return rollout_cli.run(args)
        if args.fleet_cmd == "provision":
            from sync import provision

            return provision.run(args)
        return _list(args) if args.fleet_cmd == "list" else _send(args)
    except (OSError, ValueError) as e:  # OSError: ConnectionError, TimeoutError; ValueError: UpdateError, SignatureError
        raise SystemExit(failure_line(f"edge fleet {args.fleet_cmd}", e)) from None
    except KeyboardInterrupt:
        print(f"edge fleet {args.fleet_cmd}: interrupted{_INTERRUPTED.get(args.fleet_cmd, '')}", file=sys.stderr)
        return EXIT_INTERRUPTED


_INTERRUPTED = {  # what an interrupted command may have left behind (rollout: sync/rollout_cli.py says it)
    "publish-model": ": chunks sent so far stay retained, without the manifest devices need to start; run it again "
                     "(or `edge fleet unpublish-model`)",
    "unpublish-model": ": some retained messages of the version may be left; run it again",
    "send": ": the command may have reached devices already",
}


def _list(args) -> int:
    from sync.rollout import read_states

    states = read_states(broker_options(args), args.wait)
    rollout_cli.report_skipped(states.skipped)
    for (store, device), st in sorted(states.items()):
        if args.json:
            print(json.dumps({"store": store, "device": device, **st}))
        else:
            seen = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(st.get("ts") or 0))
            print(f"{store}/{device:<16} {st.get('status', '?'):<8} bdSeq={st.get('bdSeq')} {st.get('kind', '')} "
                  f"sw={st.get('sw', '')} models={json.dumps(st.get('models', {}))} since {seen}")
    if not states and not args.json:
        print("no devices (no retained state on this broker)")
    return 0


def _send(args) -> int:
    from sync import topics
    from sync.request import Requester, device_reply_filter

    cmd_args = json_object(args.args)
    if args.device and not args.store:
        raise SystemExit("--device needs --store")
    if args.device:
        topic = topics.DeviceTopics(args.store, args.device).cmd(args.command)
    else:
        topic = topics.fleet_cmd(args.command, args.store)
    reply = device_reply_filter(args.store or "+", args.device or "+", args.command)
    with Requester(broker_options(args), [reply]) as r:
        cid = r.send(topic, cmd_args)
        r.flush(10)  # a command the broker refuses (PUBACK 0x87: the ACL forbids this user) raises here
        time.sleep(args.timeout) if not args.device else r.wait([cid], args.timeout)
        results = r.results.get(cid, [])
    for res in results:
        print(json.dumps(res))
    print(f"{len(results)} result(s), {sum(x.get('status') == 'ok' for x in results)} ok")
    return 0 if results and all(x.get("status") == "ok" for x in results) else EXIT_DEVICES_FAILED
