"""`edge bench TARGET [--json PATH]`: benchmarks; each target module defines add_arguments(p) and run(args)."""
from __future__ import annotations

import importlib

TARGETS = {
    "pose": "devtools.bench.pose",
    "tryon": "devtools.bench.tryon",
    "sync": "devtools.bench.sync",
    "backends": "devtools.bench.backends",
    "behaviour": "devtools.bench.behaviour",
    "streams": "devtools.bench.streams",
    "shelf": "devtools.bench.shelf",
    "latency": "devtools.bench.latency",
    "ops": "devtools.bench.ops",
    "privacy": "devtools.bench.privacy",
    "coldstart": "devtools.bench.coldstart",
    "gestures": "devtools.bench.gestures",
}


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="bench_target", required=True)
    for name, mod in TARGETS.items():
        m = _try_import(mod)
        sp = sub.add_parser(name, help=_summary(m))
        sp.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
        sp.set_defaults(_bench_module=mod)
        if m is not None and hasattr(m, "add_arguments"):
            m.add_arguments(sp)


def _summary(m) -> str | None:
    """A bench module's docstring's first sentence, without its "`edge bench X ...`:" prefix."""
    first = ((m.__doc__ or "").strip().split("\n\n")[0] if m is not None else "").replace("\n", " ")
    first = first.split("`: ", 1)[-1].split(". ")[0].rstrip(".")
    return first or None


def _try_import(mod):
    try:
        return importlib.import_module(mod)
    except ModuleNotFoundError as e:
        if e.name == mod:  # target not built yet
            return None
        raise


def run(args) -> int:
    m = _try_import(args._bench_module)
    if m is None:
        raise SystemExit(f"benchmark {args.bench_target!r} is not available in this build")
    return m.run(args)
