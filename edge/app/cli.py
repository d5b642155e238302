"""`edge` command line: config check, run, doctor, top, models, sync, fleet, bench, log, data.

Only the chosen sub-command's module is imported (COMMANDS maps names to module paths), so `edge run` never
loads build or developer tooling, `edge config check` stays fast, and a missing optional runtime only breaks the
command that needs it.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

# name -> module with add_arguments(parser) and run(args) -> int. Modules keep top-level imports light.
COMMANDS = {
    "config": ("edge.app.config_cli", "validate device configs: `edge config check FILE...`"),
    "run": ("edge.app.runner", "run the pipelines of a device config until stopped"),
    "doctor": ("edge.app.doctor", "is this device ready to run? backends, EGL, model cache, sources, storage, "
               "broker, CPU and the precision each model gets"),
    "top": ("edge.app.top", "live model / system / business view of a running `edge run` (--once: one snapshot)"),
    "models": ("models.build.cli", "the model zoo: build, list, report, train, audit, verify"),
    "sync": ("sync.cli", "MQTT tools: reference cloud consumer, tail events/alerts, send commands, show an outbox"),
    "fleet": ("sync.fleet_cli", "fleet admin: devices, commands, signed model updates and rollouts, provisioning"),
    "bench": ("edge.app.bench", "benchmarks (`edge bench --help` lists them); --json PATH writes results"),
    "log": ("edge.app.log_cli", "read on-device logs: `edge log decisions` (the decision log)"),
    "data": ("edge.app.data_cli", "stored data: `edge data purge` (outbox history, decision logs, session data)"),
}

log = logging.getLogger("edge")


def _chosen(argv: list[str]) -> str | None:
    """The sub-command named in argv (the first bare word), if any."""
    it = iter(argv)
    for a in it:
        if a == "--log-level":
            next(it, None)
        elif not a.startswith("-"):
            return a if a in COMMANDS else None
    return None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; only the sub-command chosen in argv gets its module imported and its arguments added
    (argv None: all of them, e.g. for documentation)."""
    chosen = _chosen(argv) if argv is not None else None
    p = argparse.ArgumentParser(prog="edge", description="storefront-edge: in-store edge inference runtime")
    p.add_argument("--log-level", default=None, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="log level (default INFO; `edge run` without this flag switches to its config's [logging] "
                   "level once the config is loaded, and with it until a `reload_config` command applies the "
                   "config's level)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (mod, help_) in COMMANDS.items():
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(_module=mod)
        if argv is not None and name != chosen:
            continue
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
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(argv).parse_args(argv)
    if getattr(args, "_missing", False):
        raise SystemExit(f"edge {args.command}: not available in this build")
    logging.basicConfig(level=args.log_level or "INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("OpenGL.acceleratesupport").setLevel(logging.WARNING)  # "No OpenGL_accelerate": not a fault
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
