#!/usr/bin/env bash
# Regenerate constraints.txt, the lock scripts/env.sh installs with (and so CI and the test suite run on): every
# package `pip install -e .[dev]` resolves to, at an exact version.
#
#   scripts/lock.sh            the versions installed in the project venv (.venv, or $DATAREDUCE_VENV): lock what
#                              was tested. The venv's set is first resolved afresh from the package index, so a
#                              lock is only written when it installs (fails on a version the index no longer has).
#   scripts/lock.sh --upgrade  the newest releases pyproject.toml's ranges allow (torch/torchvision keep the pins
#                              of the current lock): then run scripts/test.sh (env.sh re-installs when the lock
#                              changes), and commit the new lock only if the suite passes.
#
# Packages the venv holds that .[dev] does not need are left out; nothing is installed or removed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DATAREDUCE_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
LOCK="$ROOT/constraints.txt"
UPGRADE=0
case "${1:-}" in
  "") ;;
  --upgrade) UPGRADE=1 ;;
  *) echo "usage: scripts/lock.sh [--upgrade]" >&2; exit 2 ;;
esac
[ -x "$PY" ] || { echo "lock.sh: no venv at $VENV: run scripts/env.sh first (or set DATAREDUCE_VENV)" >&2; exit 2; }
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# The pins to resolve with: the venv's whole set (pip, setuptools and wheel included), or for --upgrade only the
# torch/torchvision pair of the current lock (the pair that installs offline on our machines).
if [ "$UPGRADE" = 1 ]; then
  grep -E '^(torch|torchvision)==' "$LOCK" > "$TMP/pins.txt"
else
  "$PY" -m pip freeze --all --exclude-editable | grep -v -E '^(datareduce|-e )' > "$TMP/pins.txt"
fi
# Resolve .[dev] from scratch (as a fresh venv would), installing nothing; the report lists the whole set.
"$PY" -m pip install --dry-run --ignore-installed --quiet --report "$TMP/report.json" \
  -c "$TMP/pins.txt" -e "$ROOT[dev]" >&2
"$PY" - "$TMP/report.json" "$UPGRADE" > "$TMP/constraints.txt" <<'EOF'
import json, platform, sys

report, upgrade = json.load(open(sys.argv[1])), sys.argv[2] == "1"
pins = sorted({(i["metadata"]["name"], i["metadata"]["version"]) for i in report["install"]
               if i["metadata"]["name"].lower() != "datareduce"}, key=lambda nv: nv[0].lower())
how = "scripts/lock.sh --upgrade (newest in range; run the suite before committing)" if upgrade else \
      "scripts/lock.sh from the tested venv"
print("# The lock: every package `pip install -e .[dev]` resolves to, at the version the test suite ran on.")
print(f"# Written by {how}; Python {platform.python_version()}, {sys.platform} {platform.machine()}.")
print("# scripts/env.sh installs with `-c constraints.txt`; a package a platform does not need is simply not installed.")
print("# torch/torchvision: the pair that installs offline on our machines (taken from local disk).")
for name, version in pins:
    print(f"{name}=={version}")
EOF
for pkg in torch torchvision; do
  grep -q -E "^$pkg==" "$TMP/constraints.txt" || { echo "lock.sh: $pkg missing from the resolved set" >&2; exit 1; }
done
mv "$TMP/constraints.txt" "$LOCK"
echo "lock.sh: wrote $LOCK ($(grep -c '==' "$LOCK") packages)" >&2
