"""`edge models build | list | report | verify | train`: the model zoo command line (heavy imports inside run)."""
from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="models_cmd", required=True, metavar="ACTION")
    b = sub.add_parser("build", help="build (or update) the zoo: convert, quantize, verify, sign")
    b.add_argument("--only", action="append", metavar="NAME", help="build only this model (repeatable)")
    b.add_argument("--cache", metavar="DIR", help="cache dir (default: $STOREFRONT_EDGE_CACHE or the user cache)")
    b.add_argument("--skip-int8", action="store_true", help="FP32 artefacts only (no calibration/quantization)")
    b.add_argument("--signing-key", metavar="PEM", help="Ed25519 private key (default: dev key in the cache)")
    b.add_argument("--no-progress", action="store_true")
    ls = sub.add_parser("list", help="list built artefacts")
    ls.add_argument("--json", action="store_true", help="JSON array, one object per built file")
    ls.add_argument("--cache", metavar="DIR")
    r = sub.add_parser("report", help="FP32 vs INT8 agreement on the held-out set + latency; updates model cards")
    r.add_argument("--only", action="append", metavar="NAME")
    r.add_argument("--cache", metavar="DIR")
    r.add_argument("--runs", type=int, default=50, help="timed runs per artefact (median reported)")
    r.add_argument("--threads", type=int, default=2)
    r.add_argument("--no-write", action="store_true", help="print only; do not update cards/reports")
    t = sub.add_parser("train", help="QAT / distillation of the landmark model (isolated train venv; hours on CPU)")
    from models.build.train_cli import add_arguments as train_arguments
    train_arguments(t)
    a = sub.add_parser("audit", help="accuracy per group of people and conditions vs MediaPipe; card Audit sections")
    from models.build.audit import add_arguments as audit_arguments
    audit_arguments(a)
    v = sub.add_parser("verify", help="check signatures and hashes of built models")
    v.add_argument("--cache", metavar="DIR")
    v.add_argument("--public-key", metavar="PEM")


def run(args: argparse.Namespace) -> int:
    """Run the sub-command; a committed manifest that does not validate exits 1 with its one-line reason."""
    from models.manifest import ManifestError

    try:
        return {"build": _build, "list": _list, "report": _report, "verify": _verify, "train": _train,
                "audit": _audit}[args.models_cmd](args)
    except ManifestError as e:
        log.error("edge models %s: %s", args.models_cmd, e)
        return 1


def _audit(args) -> int:
    from models.build.audit import run as audit
    return audit(args)


def _train(args) -> int:
    from models.build.train_cli import run as train
    return train(args)


def _build(args) -> int:
    from edge.core.paths import cache_dir
    from models.build.chain import BuildError, build
    from models.build.venvs import VenvError
    from models.manifest import ManifestError
    from models.sign import SignatureError
    from models.build.audit import AuditGateError, gate

    try:
        gate(args.only, cache_dir(args.cache))  # a default precision the model audit flags: refuse before building
        res = build(cache_dir(args.cache), args.only, args.skip_int8, args.signing_key, not args.no_progress)
        gate(args.only, cache_dir(args.cache))  # ... and against the files just built
    except (BuildError, VenvError, ManifestError, SignatureError, AuditGateError, OSError) as e:
        print(f"edge models build: FAILED\n{e}")  # OSError: e.g. the disk filled up outside a step
        return 1
    print(f"edge models build: {len(res.ran)} step(s) ran, {len(res.skipped)} up to date, {res.seconds:.1f} s"
          + ("" if res.ran else " (nothing to do)"))
    return 0


def _list(args) -> int:
    import json

    from models.zoo import ModelZoo

    zoo = ModelZoo(args.cache)
    arts = zoo.artifacts()

    def disk_bytes(a) -> int:
        """The artefact's bytes on disk: an OpenVINO .xml with its weights (.bin) beside it."""
        weights = a.path.with_suffix(".bin")
        return a.size_bytes + (weights.stat().st_size if a.format == "openvino" and weights.is_file() else 0)

    if args.json:
        print(json.dumps([{"name": a.name, "version": a.version, "task": a.task, "backend": a.backend,
                           "precision": a.precision, "path": str(a.path), "sha256": a.sha256,
                           "size_bytes": a.size_bytes, "disk_bytes": disk_bytes(a), "format": a.format}
                          for a in arts], indent=1))
        return 0
    if not arts:
        print(f"no models built in {zoo.cache}: run `edge models build`")
        return 0
    for a in arts:
        print(f"{a.name:28s} {a.version:12s} {a.backend:12s} {a.precision:10s} {disk_bytes(a) / 1e6:7.2f} MB  {a.path}")
    return 0


def _verify(args) -> int:
    from models.sign import SignatureError
    from models.zoo import ModelNotBuilt, ModelZoo

    zoo = ModelZoo(args.cache, public_key=args.public_key)
    bad = 0
    for n in zoo.names():
        try:
            zoo.verify(n)
            print(f"{n}: OK")
        except (SignatureError, ModelNotBuilt) as e:
            print(f"{n}: FAILED: {e}")
            bad += 1
    return 1 if bad else 0


def _report(args) -> int:
    from models.build.report import run_report
    return run_report(args)
