#!/usr/bin/env bash
# Set up storefront-edge on a fresh Debian/Ubuntu machine: system packages, the venv, the model zoo.
#   bash scripts/setup.sh          runtime (Mesa EGL for the try-on renderer)
#   bash scripts/setup.sh --test   + what the tests need (mosquitto broker, headless Chromium)
# Idempotent: a second run only checks. Needs network access to the Debian mirror and PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

pkgs=(libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0 libgl1)
(( want_test )) && pkgs+=(mosquitto mosquitto-clients chromium chromium-driver)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if (( ${#missing[@]} )); then
  echo "[setup] installing Debian packages: ${missing[*]}"
  sudo_=""; [[ $(id -u) -ne 0 ]] && sudo_="sudo"
  $sudo_ apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_ apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

py=${PYTHON:-$(command -v python3.11 || true)}
[[ -n "$py" ]] || { echo "[setup] Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }
[[ -x .venv/bin/python ]] || "$py" -m venv .venv

extras=""; (( want_test )) && extras="[test]"
stamp=".venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)${extras}"
if [[ ! -f "$stamp" ]]; then
  echo "[setup] installing the project into .venv"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e ".${extras}"
  touch "$stamp"
fi

echo "[setup] building the model zoo (cached; a second run is a no-op)"
.venv/bin/edge models build
