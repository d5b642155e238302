"""`edge log decisions`: read the on-device decision log (docs/OPERATIONS.md).

    edge log decisions --config device_configs/kiosk.toml --since 2h --kind circuit,alert
    edge log decisions --dir /var/lib/storefront-edge/decisions-kiosk-01 --json | jq .
"""
from __future__ import annotations

import json
import logging
import os
import sys
from collections import deque
from pathlib import Path

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="log_command", required=True, metavar="LOG")
    d = sub.add_parser("decisions", help="decisions the runtime took, with their inputs (oldest first)",
                       description="decisions the runtime took, with their inputs (oldest first)")
    where = d.add_mutually_exclusive_group(required=True)
    where.add_argument("--config", help="device TOML: the log of its [decisions] path (default beside the outbox)")
    where.add_argument("--dir", help="the decision log folder itself")
    d.add_argument("--since", help="only records since: 90s, 15m, 2h, 7d, 1w ago, ISO 8601 time or epoch seconds")
    d.add_argument("--kind", help="only these kinds, comma-separated: " + ", ".join(_kinds()))
    d.add_argument("--limit", type=int, default=0, help="only the newest N records (0 = all)")
    d.add_argument("--json", action="store_true", help="one JSON record per line (with its data)")


def _kinds() -> tuple[str, ...]:
    from edge.core.decisions import KINDS

    return KINDS


def run(args) -> int:
    from edge.core.decisions import ReadStats, format_record, parse_kinds, parse_since, read_decisions

    try:
        since = parse_since(args.since) if args.since else None
        kinds = parse_kinds(args.kind)
        if args.limit < 0:
            raise ValueError(f"--limit {args.limit}: use 0 (all) or a positive number")
    except ValueError as e:
        print(f"edge log decisions: {e}", file=sys.stderr)
        return 2
    folder = _folder(args)
    if folder is None:
        return 2
    if not folder.is_dir():
        print(f"edge log decisions: no decision log in {folder} (the runtime writes it while `edge run` runs with "
              "[decisions] enabled = true)", file=sys.stderr)
        return 1
    stats = ReadStats()
    recs = read_decisions(folder, since=since, kinds=kinds, stats=stats)
    if args.limit:
        recs = deque(recs, maxlen=args.limit)
    out = sys.stdout
    n = 0
    try:
        for rec in recs:
            out.write((json.dumps(rec) if args.json else format_record(rec)) + "\n")
            n += 1
        out.flush()
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        stdout_gone()
        return 0
    if stats.skipped:
        print(f"edge log decisions: skipped {stats.skipped} torn or unreadable line(s)", file=sys.stderr)
    if n == 0 and not args.json:
        print("no decisions match", file=sys.stderr)
    return 0


def stdout_gone() -> None:
    """After a BrokenPipeError on stdout (`| head` closed it): point stdout at /dev/null, so that the flush at exit
    does not fail again (Python's "Exception ignored ... BrokenPipeError")."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _folder(args) -> Path | None:
    if args.dir:
        return Path(args.dir).expanduser()
    from edge.app.config import ConfigError, load_config
    from edge.app.operations import decision_log_dir

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"edge log decisions: invalid config:\n{e}", file=sys.stderr)
        return None
    return decision_log_dir(cfg)
