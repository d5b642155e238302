"""`edge` command line: config check, run, doctor, models, bench, sync, fleet.

Sub-command modules are imported only when used, so `edge config check` stays fast and a
missing optional runtime only breaks the command that needs it.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> module with add_arguments(parser) and run(args) -> int. Modules keep top-level imports light.
COMMANDS = {
    "config": ("edge.config_cli", "validate device configs"),
    "run": ("edge.runner", "run the pipelines of a device config until stopped"),
    "doctor": ("edge.doctor", "report backends, EGL, model cache and broker reachability"),
    "models": ("models.cli", "build, list and report models of the zoo"),
    "sync": ("sync.cli", "MQTT tools: reference cloud consumer, tail events/alerts, send commands"),
    "fleet": ("sync.fleet_cli", "fleet admin: publish and watch model updates"),
    "bench": ("edge.bench", "benchmarks (pose, tryon, sync, backends); --json PATH writes results"),
}

log = logging.getLogger("edge")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge", description="storefront-edge: in-store edge inference runtime")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (mod, help_) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(_module=mod)
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
            sp.set_defaults(_missing=True)  # not part of this build
            continue
        m.add_arguments(sp)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "_missing", False):
        raise SystemExit(f"edge {args.command}: not available in this build")
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
