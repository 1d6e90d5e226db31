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

package_check() {
  # package_check WORK : the distribution as users get it, in the empty directory WORK. Builds
  # unistorage's sdist and wheel (the wheel from the sdist) and checks them with twine; installs
  # the wheel into a fresh virtual environment and runs tests/test_packaging.py there, from a
  # directory outside the checkout, so it tests the installed package; then builds the example
  # driver (examples/contributing_driver, a package of its own), installs it beside
  # unistorage[testing] and runs the driver test kit against it in that package's directory.
  local work="$1"
  mkdir -p "$work"
  local dist="$work/dist" venv="$work/venv" log="$work/build.log"
  echo "== package: build, twine check"
  if ! "$VENV/bin/python" -m build --outdir "$dist" "$ROOT" >"$log" 2>&1; then
    cat "$log"
    return 1
  fi
  "$VENV/bin/twine" check --strict "$dist"/unistorage-* || return 1
  local wheel
  wheel="$(ls "$dist"/unistorage-*.whl)"
  cp -r "$ROOT/examples/contributing_driver" "$work/example"  # built outside the checkout
  rm -rf "$work/example/build" "$work/example"/*.egg-info
  if ! "$VENV/bin/python" -m build --wheel --outdir "$dist" "$work/example" >"$log" 2>&1; then
    cat "$log"
    return 1
  fi
  echo "== package: smoke tests of the installed wheel"
  python3 -m venv "$venv" || return 1
  "$venv/bin/python" -m pip install -q --disable-pip-version-check "$wheel" pytest || return 1
  mkdir "$work/smoke"
  cp "$ROOT/tests/test_packaging.py" "$work/smoke/"
  printf '[pytest]\n' >"$work/smoke/pytest.ini"
  (cd "$work/smoke" && UNISTORAGE_SOURCE="$ROOT" "$venv/bin/pytest" -q -p no:cacheprovider) || return 1
  echo "== package: the driver test kit against the example driver package"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check \
    "$wheel[testing]" "$dist"/unistorage_dict-*.whl || return 1
  (cd "$work" && "$venv/bin/python" -c "
import storage, unistorage_dict
for module in (storage, unistorage_dict):
    assert module.__file__.startswith('$venv/'), module.__file__
print('installed:', storage.__name__, storage.__version__, unistorage_dict.__name__)") || return 1
  (cd "$ROOT/examples/contributing_driver" && "$venv/bin/pytest" -q -p no:cacheprovider) || return 1
}

docs_build() {
  # docs_build SITE : the documentation site, in strict mode (a broken link or reference fails).
  echo "== mkdocs build --strict"
  NO_MKDOCS_2_WARNING=1 "$VENV/bin/mkdocs" build --strict --quiet -f "$ROOT/mkdocs.yml" -d "$1"
}
