"""`python budget.py SECONDS -- LOOP_ARGS...`: fit a training run into a wall-clock budget.

Runs a short probe of loop.py (same arguments, 30 steps, into a scratch folder) to measure steps per second on
this machine, then the real run with --steps chosen so it ends inside the budget (the cosine schedule needs the
step count up front; the run stays deterministic for that step count). Prints the chosen step count.
"""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _arg(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def _set(args: list[str], name: str, value: str) -> list[str]:
    args = list(args)
    if name in args:
        args[args.index(name) + 1] = value
    else:
        args += [name, value]
    return args


def main() -> int:
    budget = float(sys.argv[1])
    args = sys.argv[sys.argv.index("--") + 1:]
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        probe = _set(_set(_set(args, "--out", tmp), "--steps", "30"), "--eval-every", "100000")
        r = subprocess.run([sys.executable, str(HERE / "loop.py"), *probe], capture_output=True, text=True)
        if r.returncode != 0:
            sys.stderr.write(r.stdout[-3000:] + r.stderr[-3000:])
            return r.returncode
        print("\n".join(ln for ln in (r.stdout + r.stderr).splitlines() if " crops/s" in ln), flush=True)
        rates = [float(m) for m in re.findall(r"\| (\d+(?:\.\d+)?) crops/s", r.stdout + r.stderr)]
    batch = int(_arg(args, "--batch") or 32)
    setup = time.monotonic() - t0
    crops_per_s = rates[-1] if rates else 1.0
    left = budget - (time.monotonic() - t0) - setup  # the real run repeats the setup
    steps = max(30, int(left * 0.85 * crops_per_s / batch))  # 15 % for held-out evaluation and checkpoints
    print(f"probe: {crops_per_s:.0f} crops/s, setup {setup:.0f} s -> {steps} steps of {batch}", flush=True)
    real = _set(_set(args, "--steps", str(steps)), "--time-limit", str(max(10, budget - (time.monotonic() - t0))))
    return subprocess.run([sys.executable, str(HERE / "loop.py"), *real]).returncode


if __name__ == "__main__":
    sys.exit(main())
