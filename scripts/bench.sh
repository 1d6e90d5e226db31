#!/usr/bin/env bash
# Every benchmark suite side by side (or the ones named), with the node comparisons:
# prints the tables and writes benchmarks/results/latest.json and latest.png.
#
#   bash scripts/bench.sh                  # all suites
#   bash scripts/bench.sh memory redis     # some
#   bash scripts/bench.sh --quick          # a tenth of the iterations
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
cd "$ROOT"
command -v node >/dev/null 2>&1 || apt_install nodejs npm
apt_install redis-server redis-tools wrk  # wrk: the load generator of the server suite
ensure_venv "test,bench"
npm_install "$ROOT/benchmarks/node"
exec "$VENV/bin/python" -m benchmarks.run "$@"
