"""`edge config check FILE...`: validate device configs; exit 1 and name file, key and fix on errors; warn (exit 0)
about old keys and analytics that would see nobody."""
from __future__ import annotations

import sys


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="config_cmd", required=True)
    c = sub.add_parser("check", help="validate one or more device TOML files")
    c.add_argument("files", nargs="+")


def run(args) -> int:
    from edge.app.config import ConfigError, blind_analytics, load_config

    bad = 0
    for f in args.files:
        try:
            cfg = load_config(f)
        except ConfigError as e:
            bad += 1
            print(str(e), file=sys.stderr)
            continue
        print(f"{f}: ok ({cfg.device.kind}, device {cfg.device.id})")
        for note in cfg.migrations:  # old keys still accepted: say where they moved
            print(f"{f}: migrate: {note}", file=sys.stderr)
        if why := blind_analytics(cfg):  # valid, but the analytics could never count anyone
            print(f"{f}: warning: {why}", file=sys.stderr)
    return 1 if bad else 0
