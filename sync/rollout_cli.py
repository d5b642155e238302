"""`edge fleet publish-model | unpublish-model | rollout | status` (model updates; registered by sync/fleet_cli.py)."""
from __future__ import annotations

import json
import sys

from sync import topics
from sync.cli import add_broker_arguments, argtype, broker_options, positive
from sync.update_shadow import summary as shadow_summary

COMMANDS = ("publish-model", "unpublish-model", "rollout", "status")
EXIT_NO_DEVICES, EXIT_ABORTED, EXIT_INTERRUPTED = 2, 3, 130  # 1: the tool failed (sync/fleet_cli.py)


_percent = argtype(float, lambda v: 0 <= v <= 100, "number", ": a percentage is 0..100")


def add_arguments(sub) -> None:
    p = sub.add_parser("publish-model", help="sign a model version and publish it as retained 256 KiB chunks")
    add_broker_arguments(p)
    p.add_argument("--name", required=True)
    p.add_argument("--version", required=True, help="version offered to devices (must be newer than theirs)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-cache", action="store_true", help="the built files of --name in the model cache")
    src.add_argument("--dir", help="a folder with the artefacts (+ .bin), golden.npz and optionally built.json")
    p.add_argument("--cache", help="model cache (default: $STOREFRONT_EDGE_CACHE or the user cache)")
    p.add_argument("--key", required=True, help="fleet Ed25519 private key (PEM) that devices pin")
    p.add_argument("--chunk-kb", type=int, default=256, help="chunk size in KiB (max 256)")
    p.add_argument("--expires-days", type=positive, default=30.0, help="devices refuse the manifest after this "
                   "many days")
    p.add_argument("--min-runtime", default="0", help="lowest storefront-edge version that may install it")
    p.add_argument("--latency-ms", type=positive, help="self-test latency budget per artefact (median, 1 sample)")
    p.add_argument("--replace", action="store_true", help="overwrite a version that is already published (devices "
                   "downloading it fail; a new build should get a new version)")
    u = sub.add_parser("unpublish-model", help="clear the retained manifest and chunks of a model version")
    add_broker_arguments(u)
    u.add_argument("--name", required=True)
    u.add_argument("--version", required=True)
    r = sub.add_parser("rollout", help="staged rollout of a published version, with abort and rollback")
    add_broker_arguments(r)
    r.add_argument("--name", required=True)
    r.add_argument("--version", required=True)
    r.add_argument("--devices", required=True, help="STORE/DEVICE,... or 'all' (the devices whose retained state "
                   "is online)")
    r.add_argument("--waves", default="1,10,50,100", help="cumulative percentages of the devices per wave")
    r.add_argument("--abort-failure-pct", type=_percent, default=20.0, help="abort above this share of failures")
    r.add_argument("--wave-timeout", type=positive, default=900.0, help="seconds a device may take (else TIMED_OUT)")
    r.add_argument("--rollout-id", help="resume the rollout of this id (printed at its start) after the tool was "
                   "killed: devices accept its rollback only from the rollout that installed the version")
    r.add_argument("--no-shadow-abort", action="store_true", help="a device's shadow rejection counts as one failure "
                   "against --abort-failure-pct instead of aborting the wave at once")
    r.add_argument("--json", action="store_true", help="print the result as one JSON object (logs go to stderr)")
    r.epilog = ("exit status: 0 SUCCEEDED; 1 the tool failed (one line on stderr); 2 no device to offer to; "
                "3 ABORTED (devices failed, those that had installed it were told to roll back); 130 interrupted "
                "(rerun with --rollout-id to resume)")
    s = sub.add_parser("status", help="per-device model update state (retained statuses)")
    add_broker_arguments(s)
    s.add_argument("--wait", type=positive, default=1.0)
    s.add_argument("--json", action="store_true")


def run(args) -> int:
    return {"publish-model": _publish, "unpublish-model": _unpublish, "rollout": _rollout,
            "status": _status}[args.fleet_cmd](args)


def _publish(args) -> int:
    from sync.rollout import publish_model

    try:
        topics.check_version(args.min_runtime)
    except ValueError as e:
        raise ValueError(f"--min-runtime: {e}") from None
    if args.from_cache:
        from models.zoo import ModelZoo

        try:
            src = ModelZoo(args.cache).model_dir(args.name)
        except KeyError as e:  # a typo in --name: the zoo's message lists the known models
            raise ValueError(e.args[0]) from None
    else:
        src = args.dir
    selftest = {"latency_ms": args.latency_ms} if args.latency_ms else None
    out = publish_model(broker_options(args), args.name, args.version, src, args.key,
                        chunk_size=args.chunk_kb << 10, expires_s=args.expires_days * 86400,
                        min_runtime=args.min_runtime, selftest=selftest, replace=args.replace)
    print(json.dumps(out))
    return 0


def _unpublish(args) -> int:
    from sync.rollout import unpublish_model

    n = unpublish_model(broker_options(args), args.name, args.version)
    print(f"cleared {n} retained messages" if n else f"{args.name}@{args.version} is not published")
    return 0 if n else 1


def _devices(args) -> list[tuple[str, str]]:
    if args.devices != "all":
        from sync.provision import parse_identity

        return [parse_identity(x.strip()) for x in args.devices.split(",") if x.strip()]
    from sync.rollout import read_states

    states = read_states(broker_options(args), 1.0)
    report_skipped(states.skipped)
    return sorted(k for k, st in states.items() if st.get("status") == "online")


def report_skipped(skipped: list[tuple[str, str]]) -> None:
    """Tell the operator which retained messages were unreadable and left out (stderr: stdout stays data)."""
    for topic, why in skipped:
        print(f"skipped malformed retained message on {topic}: {why}", file=sys.stderr)


def _rollout(args) -> int:
    from sync.rollout import Rollout

    try:
        waves = [float(x) for x in args.waves.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"--waves {args.waves!r}: expected comma-separated percentages, e.g. 1,10,50,100") from None
    devices = _devices(args)
    if not devices:  # stderr: with --json, stdout holds only JSON
        why = "no online device on this broker (`edge fleet list` shows them)" if args.devices == "all" else \
            f"--devices {args.devices!r} names none"
        print(f"edge fleet rollout: no devices: {why}; name them with --devices STORE/DEVICE,...", file=sys.stderr)
        return EXIT_NO_DEVICES
    ro = Rollout(broker_options(args), args.name, args.version, devices, waves=waves,
                 abort_failure_pct=args.abort_failure_pct, wave_timeout_s=args.wave_timeout,
                 shadow_abort=not args.no_shadow_abort, rollout_id=args.rollout_id)
    print(f"rollout {ro.id}: if this tool is interrupted, run it again with --rollout-id {ro.id} to resume",
          file=sys.stderr, flush=True)
    try:
        res = ro.run()
    except KeyboardInterrupt:
        print(f"rollout {ro.id} interrupted: the {args.name}@{args.version} offers (and any rollbacks) sent so far "
              f"stay with the devices; run the same command with --rollout-id {ro.id} to resume it (its abort can "
              "still roll them back)", file=sys.stderr)
        if args.json:
            print(json.dumps({"rollout": ro.id, "name": args.name, "version": args.version, "status": "INTERRUPTED",
                              "reason": "interrupted (Ctrl-C)"}))
        return EXIT_INTERRUPTED
    if args.json:
        print(json.dumps(res))
    else:
        print(f"rollout {res['rollout']} {args.name}@{args.version}: {res['status']} in {res['seconds']} s"
              + (f" ({res['reason']})" if res["reason"] else ""))
        for i, w in enumerate(res["waves"], 1):
            print(f"  wave {i}: " + ", ".join(f"{k}={v}" for k, v in w.items()))
        for k, d in res["devices"].items():
            if d.get("shadow"):
                print(f"  {k}: {shadow_summary(d['shadow'])}")
        if res["rolled_back"]:
            print("  rolled back: " + ", ".join(f"{k}={v}" for k, v in res["rolled_back"].items()))
        if res.get("skipped_messages"):
            print(f"  skipped {res['skipped_messages']} malformed status/result messages", file=sys.stderr)
    return 0 if res["status"] == "SUCCEEDED" else EXIT_ABORTED


def _status(args) -> int:
    from sync.rollout import read_statuses

    rows = read_statuses(broker_options(args), args.wait)
    report_skipped(rows.skipped)
    for (store, device), st in sorted(rows.items()):
        if args.json:
            print(json.dumps({"store": store, "device": device, **st}))
            continue
        job = st.get("job") or {}
        prog = job.get("progress") or {}
        done = f" {prog.get('chunks_done', 0)}/{prog['chunks_total']} chunks" if prog.get("chunks_total") else ""
        active = ", ".join(f"{n}={m.get('active')}" for n, m in (st.get("models") or {}).items())
        if prog.get("shadow_target") and job.get("state") == "SHADOW":
            done = f" {prog.get('shadow_samples', 0)}/{prog['shadow_target']} shadow samples"
        shadow = shadow_summary(job.get("shadow"))
        print(f"{store}/{device:<16} {job.get('name')}@{job.get('version')} {str(job.get('state')):<11}{done}"
              f"{' - ' + job['reason'] if job.get('reason') else ''}{' | ' + shadow if shadow else ''}"
              f" | active: {active}")
    if not rows and not args.json:
        print("no update status on this broker")
    return 0

