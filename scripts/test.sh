#!/usr/bin/env bash
# The whole test suite: creates the environment if missing, then runs pytest on every core, one test file per
# worker at a time (CI runs exactly this).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
exec python -m pytest -q -p no:cacheprovider -n auto --dist loadfile "$@"
