#!/usr/bin/env bash
# Run the whole test suite on a fresh machine: set-up (system packages, venv, models) then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
exec .venv/bin/python -m pytest -q "$@"
