#!/usr/bin/env bash
# The demo: creates the environment if missing, then shows IDS and ADONIS on a dataset that ships with scikit-learn.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
exec datareduce demo "$@"
