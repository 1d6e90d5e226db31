#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the tests need (redis-server,
# PostgreSQL, Chromium, wrk, node and npm packages, a virtual environment), runs the linters and
# the type checker, then pytest. The tests start their own servers (redis-server, a 3-node Redis
# Cluster, PostgreSQL, an S3-compatible server, the unistorage HTTP server) on free ports and
# stop them afterwards.
#
# Before pytest it builds the wheel and sdist and smoke-tests the wheel in a fresh virtual
# environment, runs the driver test kit against the example driver package installed there,
# and builds the documentation site in strict mode (tests/test_docs_site.py opens that build).
#
#   bash scripts/test.sh                 # everything
#   bash scripts/test.sh -k redis -x     # extra arguments go to pytest
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"

command -v node >/dev/null 2>&1 || apt_install nodejs npm
apt_install redis-server redis-tools chromium postgresql wrk  # wrk: tests/test_bench_loadgen.py
ensure_venv "test,bench"  # bench: the peer libraries, so mypy checks the benchmarks too
npm_install "$ROOT/tests/node"
npm_install "$ROOT/benchmarks/node"

echo "== ruff check";          "$VENV/bin/ruff" check .
echo "== ruff format --check"; "$VENV/bin/ruff" format --check .
echo "== mypy --strict";       "$VENV/bin/mypy" --strict

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
package_check "$WORK/package"
docs_build "$WORK/site"
export UNISTORAGE_SITE="$WORK/site"

# Two phases: the suite in parallel processes (pytest-xdist; each starts its own servers),
# then the load tests alone, as they need the whole machine (500 clients against one server).
# Both phases run whatever the first gives; a phase that the arguments leave empty (exit
# status 5) is not a failure.
WORKERS="$(nproc)"; [ "$WORKERS" -gt 4 ] && WORKERS=4
STATUS=0
phase() { "$VENV/bin/pytest" "$@" || { local rc=$?; [ "$rc" -eq 5 ] || [ "$STATUS" -ne 0 ] || STATUS=$rc; }; }
echo "== pytest, $WORKERS processes: everything but the load tests"
phase -n "$WORKERS" -m "not slow" "$@"
echo "== pytest: the load tests, alone"
phase -m slow "$@"
exit "$STATUS"
