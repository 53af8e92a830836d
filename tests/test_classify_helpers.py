"""Helpers for the trainers/classify.py tests (no tests here): run the script as a user would, read its log."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "trainers" / "classify.py"
# Small and fast: resnet20 on the 400-image CIFAR-10 subset; one thread per process (the CI box is shared).
SMALL = ["--model", "resnet20", "-b", "32", "--workers", "0", "--print-freq", "1000"]
TIME_FIELDS = {"train_time_s", "cumulative_train_time_s", "eval_time_s", "score_time_s", "select_time_s",
               "time_s", "wall_time_s", "embed_time_s"}


def env(**extra):
    e = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    e.update(extra)
    return e


def run(args, cwd=None, timeout=180, check=True, launcher=None):
    cmd = (launcher or [sys.executable]) + [str(SCRIPT), *map(str, args)]
    proc = subprocess.run(cmd, cwd=cwd or REPO, env=env(), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def log(out_dir, kind=None):
    recs = [json.loads(line) for line in (Path(out_dir) / "log.jsonl").read_text().splitlines()]
    return [r for r in recs if kind is None or r["type"] == kind]


def without_times(record):
    return {k: v for k, v in record.items() if k not in TIME_FIELDS}
