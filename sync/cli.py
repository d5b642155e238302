"""`edge sync ...`: reference cloud consumer, tail of stored events/alerts, send a command, inspect an outbox."""
from __future__ import annotations

import argparse
import json
import logging
import re
import sqlite3
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)
EXIT_DEVICE_FAILED = 3  # the device answered with an error or not at all (sync/fleet_cli.py EXIT_DEVICES_FAILED)


def argtype(conv, ok, noun: str, rule: str):
    """An argparse type: conv(text) (ValueError: "not a {noun}") that must pass ok(value) (else "{text}{rule}")."""
    def parse(text: str):
        try:
            v = conv(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a {noun}") from None
        if not ok(v):
            raise argparse.ArgumentTypeError(f"{text}{rule}")
        return v
    return parse


positive = argtype(float, lambda v: 0 < v < float("inf"), "number", " must be above 0")  # seconds, days, ms
port = argtype(int, lambda v: 1 <= v <= 65535, "port number", ": a port is 1..65535")


def add_broker_arguments(p: argparse.ArgumentParser) -> None:
    """Connection flags shared by `edge sync` and `edge fleet`."""
    g = p.add_argument_group("broker")
    g.add_argument("--broker", default="127.0.0.1", help="broker host")
    g.add_argument("--port", type=port, default=1883)
    g.add_argument("--client-id", default="", help="MQTT client id (consumer: keep it fixed for its session)")
    g.add_argument("--username", default="")
    g.add_argument("--password", default="")
    g.add_argument("--password-file", default="")
    g.add_argument("--ca-file", default="", help="TLS: CA of the broker certificate (enables TLS)")
    g.add_argument("--cert-file", default="", help="TLS client certificate (needs --ca-file)")
    g.add_argument("--key-file", default="", help="TLS client key (needs --cert-file)")


def broker_options(args):
    """ClientOptions from the broker flags; ValueError naming the flag, the file and the fix when a password or TLS
    file is missing, empty or unusable, or a flag would be ignored (a client certificate without --ca-file)."""
    import ssl

    from sync.client import ClientOptions, Tls

    for flag, path in (("--password-file", args.password_file), ("--ca-file", args.ca_file),
                       ("--cert-file", args.cert_file), ("--key-file", args.key_file)):
        if path and not Path(path).is_file():
            raise ValueError(f"{flag} {path}: no such file")
    if (args.cert_file or args.key_file) and not args.ca_file:
        raise ValueError("--cert-file / --key-file need --ca-file (the CA of the broker certificate): TLS is on only "
                         "with --ca-file")
    if args.key_file and not args.cert_file:
        raise ValueError(f"--key-file {args.key_file} needs --cert-file (its certificate)")
    password = args.password or ""
    if args.password_file:
        from sync.config import read_password_file

        password = read_password_file(args.password_file, "--password-file")
    tls = None
    if args.ca_file:
        try:
            ssl.create_default_context(cafile=args.ca_file)
        except ssl.SSLError as e:
            raise ValueError(f"--ca-file {args.ca_file}: not a PEM CA certificate ({e})") from None
        tls = Tls(args.ca_file, args.cert_file, args.key_file)
        if args.cert_file:
            try:
                tls.context()
            except ssl.SSLError as e:
                raise ValueError(f"--cert-file {args.cert_file} / --key-file {args.key_file or '(none given)'}: cannot "
                                 f"load the client certificate and its key ({e}); pass the key that belongs to the "
                                 "certificate with --key-file") from None
    return ClientOptions(host=args.broker, port=args.port, client_id=args.client_id or "",
                         username=args.username or "", password=password, tls=tls)


def failure_line(cmd: str, err: Exception) -> str:
    """The one line a failed `edge sync` / `edge fleet` command exits with: the reason and, for a refused or dropped
    connection, what to check."""
    text = str(err)
    if re.match(r"CONNACK 0x8[67]", text):
        text += ": check --username and --password / --password-file (or the client certificate, --cert-file)"
    elif text.startswith("disconnected:"):
        text += (" (the broker closed the connection before accepting it: a TLS listener wants --ca-file and a "
                 "client certificate its CA signed, --cert-file / --key-file; a plain listener, no --ca-file)")
    elif "ConnectionRefusedError" in text or "gaierror" in text:
        text += " (check --broker and --port, and that the broker runs)"
    return f"{cmd}: {text}"


def json_object(text: str, flag: str = "--args") -> dict:
    """The JSON object of a command-line flag; ValueError naming the flag otherwise."""
    try:
        obj = json.loads(text)
    except ValueError as e:
        raise ValueError(f"{flag} {text!r}: not JSON ({e}); e.g. '{{\"level\": \"DEBUG\"}}'") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{flag} {text!r}: must be a JSON object, e.g. '{{\"level\": \"DEBUG\"}}'")
    return obj


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="sync_cmd", required=True)
    c = sub.add_parser("consumer", help="run the reference cloud consumer (store, dedupe, ack) until Ctrl-C")
    add_broker_arguments(c)
    c.add_argument("--db", required=True, help="SQLite file to store into")
    c.add_argument("--stats-s", type=float, default=10.0, help="log counters every N s (0 = never)")
    t = sub.add_parser("tail", help="print events and alerts stored by the consumer")
    t.add_argument("--db", required=True)
    t.add_argument("--stream", choices=["all", "alerts", "events"], default="all")
    t.add_argument("-n", type=int, default=20, help="show the last N first")
    t.add_argument("-f", "--follow", action="store_true", help="keep printing new rows")
    s = sub.add_parser("send", help="send a command to one device and print its result",
                       epilog="exit status: 0 the device answered ok; 1 the tool failed (one line on stderr says "
                       "why); 2 bad usage; 3 the device answered with an error or not at all (as `edge fleet send`); "
                       "130 interrupted")
    add_broker_arguments(s)
    s.add_argument("--store", required=True)
    s.add_argument("--device", required=True)
    s.add_argument("command", help="ping, reload_config, set_log_level, ack_alert, snapshot")
    s.add_argument("--args", default="{}", help='JSON object, e.g. \'{"level": "DEBUG"}\'')
    s.add_argument("--timeout", type=positive, default=5.0)
    o = sub.add_parser("outbox", help="show a device outbox: depth, bytes, dead letters")
    o.add_argument("path", help="outbox SQLite file")


def run(args) -> int:
    """Run the sub-command; a broker that is down or refuses, or a bad argument, exits with its one-line reason."""
    try:
        return {"consumer": _consumer, "tail": _tail, "send": _send, "outbox": _outbox}[args.sync_cmd](args)
    except (OSError, ValueError, sqlite3.Error) as e:  # OSError: ConnectionError and TimeoutError too
        raise SystemExit(failure_line(f"edge sync {args.sync_cmd}", e)) from None
    except KeyboardInterrupt:  # the consumer and tail -f stop on Ctrl-C themselves
        print(f"edge sync {args.sync_cmd}: interrupted", file=sys.stderr)
        return 130


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _consumer(args) -> int:
    import signal

    from sync.consumer import Consumer

    signal.signal(signal.SIGTERM, _raise_interrupt)  # `kill PID`: stop cleanly (publish acks, close the DB)

    log = logging.getLogger("sync.consumer")
    opts = broker_options(args)
    opts.client_id = opts.client_id or "storefront-cloud-consumer"
    c = Consumer(opts, args.db).start()
    print(f"consumer {opts.client_id} -> {args.db} (Ctrl-C to stop)", flush=True)
    try:
        last = time.monotonic()
        while True:
            time.sleep(0.5)
            if args.stats_s and time.monotonic() - last >= args.stats_s:
                last = time.monotonic()
                log.info("connected=%s %s", c.client.connected, c.stats)
    except KeyboardInterrupt:
        pass
    finally:
        c.stop()
    return 0


def _tail(args) -> int:
    db = sqlite3.connect(f"file:{args.db}?mode=ro", uri=True, timeout=30)
    where = "" if args.stream == "all" else f"WHERE stream = '{args.stream}'"
    sql = f"SELECT id, device, store, seq, stream, kind, ts, historical, data FROM events {where}"
    rows = db.execute(f"SELECT * FROM ({sql} ORDER BY id DESC LIMIT ?) ORDER BY id", (args.n,)).fetchall()
    last = 0
    try:
        while True:
            for rid, device, store, seq, stream, kind, ts, hist, data in rows:
                stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts or 0))
                flag = " (historical)" if hist else ""
                print(f"{stamp} {store}/{device} #{seq} {stream:<6} {kind}{flag} {data}", flush=True)
                last = max(last, rid)
            if not args.follow:
                return 0
            time.sleep(0.5)
            joiner = "AND" if where else "WHERE"
            rows = db.execute(f"{sql} {joiner} id > ? ORDER BY id", (last,)).fetchall()
    except KeyboardInterrupt:
        return 0
    finally:
        db.close()


def _send(args) -> int:
    from sync import topics
    from sync.request import Requester, device_reply_filter

    cmd_args = json_object(args.args)
    t = topics.DeviceTopics(args.store, args.device)
    with Requester(broker_options(args), [device_reply_filter(args.store, args.device, args.command)]) as r:
        cid = r.send(t.cmd(args.command), cmd_args)
        got = r.wait([cid], args.timeout)[cid]
    if not got:
        print(f"edge sync send: no answer from {args.store}/{args.device} within {args.timeout:g} s (offline, or "
              "busy: see `edge fleet list`)", file=sys.stderr)
        return EXIT_DEVICE_FAILED
    print(json.dumps(got[0], indent=2))
    return 0 if got[0].get("status") == "ok" else EXIT_DEVICE_FAILED


def _outbox(args) -> int:
    from sync.outbox import Outbox

    if not Path(args.path).is_file():
        log.error("edge sync outbox: %s is not a file (the outbox is [sync] outbox_path of the device config)",
                  args.path)
        return 1
    try:  # an inspection: a corrupt file is reported, not moved aside as `edge run` does
        with Outbox(args.path, quarantine_corrupt=False) as ob:
            print(json.dumps({**ob.metrics(), "dead_letters": ob.dead_letters(20)}, indent=2))
    except sqlite3.DatabaseError as e:
        log.error("edge sync outbox: %s cannot be read as an outbox (%s); `edge run` moves a corrupt outbox aside "
                  "and starts a new one, `sqlite3 %s .recover` may save its rows", args.path, e, args.path)
        return 1
    return 0
