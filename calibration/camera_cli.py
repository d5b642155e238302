"""Camera calibration command: `python -m calibration.camera_cli checkerboard DIR ...` or `... fov ...`.

Prints (or writes with --out) the `[tryon.camera]` TOML snippet to paste into the device config.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tomllib
from pathlib import Path

log = logging.getLogger(__name__)


def _pattern(s: str) -> tuple[int, int]:
    try:
        c, r = (int(v) for v in s.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError("use COLSxROWS inner corners, e.g. 9x6") from None
    return c, r


def write_snippet(path: str | Path, text: str) -> None:
    """Write the snippet atomically; OSError if the path holds anything but an earlier snippet (a device config)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        try:
            old = tomllib.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, tomllib.TOMLDecodeError):
            old = None
        tryon = (old or {}).get("tryon", {})
        if old is None or set(old) - {"tryon"} or not isinstance(tryon, dict) or set(tryon) - {"camera"}:
            raise FileExistsError(f"{path} holds more than a [tryon.camera] snippet (a device config?); not "
                                  "overwritten: write to a new file and paste its [tryon.camera] into the config")
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="method", required=True)
    cb = sub.add_parser("checkerboard", help="calibrate from a folder of checkerboard photos")
    cb.add_argument("folder")
    cb.add_argument("--pattern", type=_pattern, default=(9, 6), help="inner corners COLSxROWS (default 9x6)")
    cb.add_argument("--square-mm", type=float, default=25.0, help="checker square size in mm")
    fov = sub.add_parser("fov", help="estimate the focal length from the horizontal field of view")
    fov.add_argument("--width", type=int, required=True)
    fov.add_argument("--height", type=int, required=True)
    fov.add_argument("--hfov", type=float, required=True, help="horizontal field of view in degrees")
    for sp in (cb, fov):
        sp.add_argument("--out", help="write the TOML snippet to this file (default: stdout)")


def run(args) -> int:
    from calibration.camera import CalibrationError, calibrate_checkerboard, from_hfov, image_files  # noqa: PLC0415
    try:
        if args.method == "checkerboard":
            files = image_files(args.folder)
            cal = calibrate_checkerboard(files, args.pattern, args.square_mm / 1000.0)
        else:
            cal = from_hfov(args.width, args.height, args.hfov)
        text = cal.to_toml()
    except (CalibrationError, OSError) as e:
        log.error("calibration failed: %s", e)
        return 1
    if cal.rms_px is not None:
        log.info("reprojection RMS %.3f px (pinhole) over %d views; %.3f px with lens distortion", cal.rms_px,
                 cal.views_used, cal.lens_rms_px)
    if args.out:
        try:
            write_snippet(args.out, text)
        except OSError as e:
            log.error("cannot write %s: %s", args.out, e.strerror if e.filename else e)
            return 1
        log.info("wrote %s: paste its [tryon.camera] section into the device config", args.out)
    else:
        sys.stdout.write(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m calibration.camera_cli", description=__doc__.splitlines()[0])
    add_arguments(p)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
