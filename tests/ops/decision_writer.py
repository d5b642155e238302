"""A real decision-log writer process for the crash test: appends records forever, printing each seq once it is
durable (fsynced), until it is killed."""
from __future__ import annotations

import sys

from edge.core.decisions import DecisionLog


def main() -> None:
    folder, max_bytes = sys.argv[1], int(sys.argv[2])
    log = DecisionLog(folder, max_bytes=max_bytes, segments=4).open()
    print("open", log._seq, flush=True)
    i = 0
    while True:
        seq = log.record("circuit", "pipeline/mirror", {"i": i, "pad": "x" * 150}, reason=f"record {i}", wait=True)
        print(seq, flush=True)
        i += 1


if __name__ == "__main__":
    main()
