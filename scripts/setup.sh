#!/usr/bin/env bash
# Shared set-up for scripts/test.sh and scripts/serve.sh: Debian packages, a virtual
# environment in .venv with the project installed, and (for tests) the npm packages.
# Safe to run again: each step is skipped when its result is already there.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
  # apt_install PACKAGE... : install the Debian packages that are missing.
  local missing=()
  for package in "$@"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

ensure_venv() {
  # ensure_venv EXTRAS : create .venv and install the project with the given extras.
  local extras="$1"
  if ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
    apt_install python3-venv
  fi
  if [ ! -x "$VENV/bin/python" ]; then
    echo "setup: creating $VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
  fi
  local stamp="$VENV/.installed-$extras"
  if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    echo "setup: installing unistorage[$extras] into $VENV"
    "$VENV/bin/python" -m pip install -q -e "$ROOT[$extras]"
    touch "$stamp"
  fi
}

npm_install() {
  # npm_install DIR : install the npm packages of DIR/package.json when they are missing.
  local dir="$1"
  # Again whenever package.json changed since the last install (a new package or alias).
  if [ -f "$dir/package.json" ] && { [ ! -d "$dir/node_modules" ] || [ "$dir/package.json" -nt "$dir/node_modules" ]; }; then
    echo "setup: npm install in $dir"
    (cd "$dir" && npm install --no-audit --no-fund --loglevel=error >/dev/null && touch node_modules)
  fi
}
