"""A simulated device process for the kill -9 tests: SyncService + ModelUpdateAgent until a final update state.

    python update_device.py --port P --root DIR --pub PEM [--rate BYTES_PER_S] [--window N]
                            [--health ok|fail|hang|kill] [--load-at-boot]

Prints one JSON line when started and one with the agent's models when the update is final (exit 0), or
exits 3 after --timeout-s. `--health` is the runtime's post-activation check of any version but 1.0 (`hang`:
prints {"health_check": V} and never returns, so the test can kill the process during it; `kill`: the check kills
the process, like a model that crashes on load). `--load-at-boot` does what the runtime does before the agent
starts: `ModelStore.guard_boot()`, then load the active version (with `--health kill`, a version other than 1.0
kills the process there).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]  # + tests/

from update_helpers import MODEL, Device, run_until_final  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--pub", required=True)
    p.add_argument("--base", help="folder installed as version 1.0 on first start")
    p.add_argument("--rate", type=float, default=0.0)
    p.add_argument("--window", type=int, default=8)
    p.add_argument("--timeout-s", type=float, default=60.0)
    p.add_argument("--health", choices=("ok", "fail", "hang", "kill"), default="ok")
    p.add_argument("--load-at-boot", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s dev %(levelname)s %(name)s: %(message)s")
    root = Path(args.root)
    base = Path(args.base) if args.base and not (root / "cache" / "models" / MODEL).exists() else None
    dev = Device(args.port, root, Path(args.pub), base=base, max_bytes_per_s=args.rate, window=args.window)

    def bad(version: str) -> bool:
        if version == "1.0" or args.health == "ok":
            return False
        if args.health == "hang":
            print(json.dumps({"health_check": version}), flush=True)
            time.sleep(3600)
        if args.health == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        return True

    def on_activated(name: str, version: str) -> bool:
        dev.activated.append((name, version))
        return not bad(version)

    dev.agent.installer.on_activated = on_activated
    if args.load_at_boot:
        from sync.update_installer import ModelStore

        ModelStore(dev.zoo).guard_boot()
        bad(dev.agent.active(MODEL) or "1.0")
    return run_until_final(dev, args.timeout_s)


if __name__ == "__main__":
    sys.exit(main())
