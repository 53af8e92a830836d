#!/usr/bin/env bash
# Create the project's virtual environment in .venv if it is missing or out of date (sourced by demo.sh / test.sh).
# It installs .[dev] (the core, every extra, the test tools) at the exact versions of constraints.txt, the lock the
# test suite ran on (scripts/lock.sh writes it; torch/torchvision are the pair that installs offline here).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DATAREDUCE_VENV:-$ROOT/.venv}"
STAMP="$VENV/.datareduce-installed"
WANT="$(cat "$ROOT/pyproject.toml" "$ROOT/constraints.txt" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
  echo "[env] setting up $VENV (first time: ~3 minutes, ~6 GB)" >&2
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip >&2
  "$VENV/bin/python" -m pip install -q -c "$ROOT/constraints.txt" torch torchvision >&2
  "$VENV/bin/python" -m pip install -q -c "$ROOT/constraints.txt" -e "$ROOT[dev]" >&2
  echo "$WANT" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
# Ultralytics and torch hub must never reach the network.
export YOLO_OFFLINE=1 YOLO_AUTOINSTALL=0
