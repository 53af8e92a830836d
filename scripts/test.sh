#!/usr/bin/env bash
# The whole test suite: creates the environment if missing, then runs pytest (CI runs exactly this).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
exec python -m pytest -q -p no:cacheprovider "$@"
