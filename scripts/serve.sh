#!/usr/bin/env bash
# The main job: `unistorage serve` on its embedded default (a SQLite file under ./.data/,
# on http://127.0.0.1:8585). Sets up .venv on first use. Extra arguments go to `serve`:
#
#   bash scripts/serve.sh
#   bash scripts/serve.sh --port 9000 --driver redis://localhost:6379
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
ensure_venv all
exec "$VENV/bin/unistorage" serve "$@"
