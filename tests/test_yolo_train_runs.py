"""trainers/yolo_train.py never trains over a run of ours: Ultralytics' exist_ok=True would reuse its folder."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from datareduce import records
from test_yolo_train import coco_small  # noqa: F401  (the 24-image COCO128 cut)

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "trainers" / "yolo_train.py"
TINY = ["epochs=1", "imgsz=96", "batch=8", "plots=False", "device=cpu", "workers=0"]

pytestmark = pytest.mark.slow


def _train(tmp_path, *argv):
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", YOLO_OFFLINE="1", YOLO_AUTOINSTALL="0")
    env.pop("DATAREDUCE_CONFIG", None)
    cmd = [sys.executable, str(SCRIPT), *TINY, f"project={tmp_path / 'runs'}", "--cache-dir", str(tmp_path / "cache"),
           *map(str, argv)]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_exist_ok_does_not_train_over_a_run(coco_small, tmp_path):  # noqa: F811
    first = _train(tmp_path, f"data={coco_small}", "name=done")
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    done = tmp_path / "runs" / "done"
    log = (done / records.LOG_NAME).read_bytes()
    assert [r["type"] for r in records.read(done / records.LOG_NAME)] == ["run", "epoch", "summary"]

    again = _train(tmp_path, f"data={coco_small}", "name=done", "exist_ok=True")
    assert again.returncode == 2, again.stdout[-2000:] + again.stderr[-2000:]
    assert "Traceback" not in again.stderr
    assert again.stderr.strip().splitlines()[-1] == (
        f"yolo_train.py: error: {done} already holds a run (log.jsonl) that exist_ok=True would train over; "
        f"pass resume={done / 'weights' / 'last.pt'} to continue it, or another name= for a new run")
    assert (done / records.LOG_NAME).read_bytes() == log  # untouched
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["done"]
