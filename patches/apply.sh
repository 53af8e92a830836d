#!/usr/bin/env bash
# Apply datareduce's patch to an upstream checkout: ultralytics/yolov5 (train.py) or pytorch/vision
# (references/classification/train.py). See patches/README.md.
#
#   patches/apply.sh [--check | --reverse] UPSTREAM_DIR
#
# UPSTREAM_DIR: the root of a yolov5 checkout, the root of a pytorch/vision checkout, or a standalone copy of
# vision's references/classification folder. A git checkout is not required: the check is on the patched file's
# content (its git blob hash), so a tarball of the pinned commit works too.
#   --check    only say whether the patch applies; change nothing
#   --reverse  remove a patch applied earlier
set -euo pipefail

# Pinned upstream versions (the patches were made against these files).
YOLOV5_COMMIT=5081342f04fb287fc2e5f2b5a4e06752b7937b1c   # ultralytics/yolov5 master, 2026-08-21
YOLOV5_BLOB=c7af649503d0743c697820048afff90682b6553b     # train.py at that commit
VISION_COMMIT=428a54c96e82226c0d2d8522e9cbfdca64283da0   # pytorch/vision main, 2025-06-03
VISION_BLOB=d52124fcf33111a7fc033d39c0bbf0b2541bfb39     # references/classification/train.py (unchanged since 3b5e6fc4)

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mode=apply
while [ $# -gt 0 ]; do
  case "$1" in
    --check) mode=check; shift ;;
    --reverse) mode=reverse; shift ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "apply.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
if [ $# -ne 1 ]; then
  echo "usage: $0 [--check | --reverse] UPSTREAM_DIR" >&2
  exit 2
fi
DIR="$(cd "$1" 2>/dev/null && pwd)" || { echo "apply.sh: $1 is not a directory" >&2; exit 2; }
command -v git >/dev/null || { echo "apply.sh: git is needed (for 'git apply')" >&2; exit 2; }

strip=1
if [ -f "$DIR/train.py" ] && [ -f "$DIR/utils/loss.py" ] && [ -f "$DIR/models/yolo.py" ]; then
  kind="ultralytics/yolov5"; target=train.py; patch="$HERE/yolov5-train.patch"
  commit=$YOLOV5_COMMIT; blob=$YOLOV5_BLOB
elif [ -f "$DIR/references/classification/train.py" ]; then
  kind="pytorch/vision"; target=references/classification/train.py; patch="$HERE/vision-classification.patch"
  commit=$VISION_COMMIT; blob=$VISION_BLOB
elif [ -f "$DIR/train.py" ] && [ -f "$DIR/presets.py" ] && [ -f "$DIR/sampler.py" ]; then
  if git -C "$DIR" rev-parse --is-inside-work-tree >/dev/null 2>&1 \
     && [ "$(git -C "$DIR" rev-parse --show-toplevel)" != "$DIR" ]; then
    echo "apply.sh: $DIR is a folder inside a git checkout: pass the checkout's root instead" >&2
    exit 2
  fi
  kind="pytorch/vision references/classification (standalone copy)"; target=train.py; strip=3
  patch="$HERE/vision-classification.patch"; commit=$VISION_COMMIT; blob=$VISION_BLOB
else
  echo "apply.sh: $DIR is neither a yolov5 checkout (train.py, utils/loss.py, models/yolo.py)" >&2
  echo "          nor a pytorch/vision checkout (references/classification/train.py)" >&2
  exit 2
fi

echo "upstream:  $kind at $DIR"
in_git=no
if git -C "$DIR" rev-parse --is-inside-work-tree >/dev/null 2>&1 \
   && [ "$(git -C "$DIR" rev-parse --show-toplevel)" = "$DIR" ]; then
  in_git=yes
  head=$(git -C "$DIR" rev-parse HEAD 2>/dev/null || echo unknown)
  echo "checkout:  commit $head (patch pinned to $commit)"
fi
have=$(git hash-object "$DIR/$target")
run_apply() { (cd "$DIR" && git apply -p"$strip" "$@" "$patch"); }

if run_apply --reverse --check >/dev/null 2>&1; then
  if [ "$mode" = reverse ]; then
    run_apply --reverse
    echo "removed:   $(basename "$patch") from $target"
  else
    echo "already applied: $target carries $(basename "$patch"); nothing to do"
  fi
  exit 0
fi
if [ "$mode" = reverse ]; then
  echo "apply.sh: $(basename "$patch") is not applied to $target; nothing to remove" >&2
  exit 1
fi

if [ "$have" = "$blob" ]; then
  echo "target:    $target is the pinned version (blob $blob)"
else
  echo "target:    $target differs from the pinned version (blob $have, pinned $blob)"
fi
if ! err=$(run_apply --check 2>&1); then
  echo "$err" >&2
  echo "apply.sh: the patch does not apply to this $target. Either" >&2
  if [ "$in_git" = yes ]; then
    echo "  * put the pinned file in place and re-run:   git -C \"$DIR\" checkout $commit -- $target" >&2
    echo "    (or check out the whole pinned commit:      git -C \"$DIR\" checkout $commit)" >&2
    echo "  * or let git merge it into your version:     (cd \"$DIR\" && git apply --3way -p$strip \"$patch\")" >&2
    echo "    (needs the pinned commit $commit in the checkout's history; resolve the conflict markers it leaves)" >&2
  else
    if [ "$kind" = "ultralytics/yolov5" ]; then
      url="https://raw.githubusercontent.com/ultralytics/yolov5/$commit/train.py"
    else
      url="https://raw.githubusercontent.com/pytorch/vision/$commit/references/classification/train.py"
    fi
    echo "  * replace $target with the pinned version and re-run: $url" >&2
    echo "  * or use a git checkout of the upstream repository, where git's 3-way merge can help" >&2
  fi
  exit 1
fi
if [ "$have" != "$blob" ]; then
  echo "note:      the patch applies cleanly to your version all the same"
fi
if [ "$mode" = check ]; then
  echo "check:     $(basename "$patch") applies cleanly (nothing changed)"
  exit 0
fi
run_apply
echo "applied:   $(basename "$patch") to $target"
echo "next:      pip install datareduce into the environment that runs $target, then add e.g."
echo "           --ids-alpha 0.8 --adonis-eta 3 to its command line (see patches/README.md)"
