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


def _epochs_without_times(run_dir):
    return [{k: v for k, v in r.items() if not k.endswith("_s")}
            for r in records.read(run_dir / records.LOG_NAME) if r["type"] == "epoch"]


def test_sigkill_mid_epoch_then_resume_repeats_the_uninterrupted_run(coco_small, tmp_path):  # noqa: F811
    """yolo_train.py with ADONIS (η 2) killed with SIGKILL in epoch 1 and continued with resume=: epoch 0 is kept
    as it was, epochs 1-2 are trained once each with the selector state restored, and the counts add up. Not
    bit-identical to the uninterrupted run: Ultralytics resumes from the checkpoint's EMA weights, not the raw
    ones (the data order and augmentations are the same: each epoch is seeded by its number)."""
    import random
    import shutil
    import signal
    import time

    import numpy as np

    flags = ["epochs=3", "seed=0", "deterministic=True", f"data={coco_small}",
             "--adonis-eta", "2", "--adonis-theta", "0.05", "--adonis-rho", "4"]
    whole = _train(tmp_path, *flags, "name=whole")
    assert whole.returncode == 0, whole.stdout[-2000:] + whole.stderr[-2000:]
    runs = tmp_path / "runs"
    epoch_s = max(r["train_time_s"] for r in records.read(runs / "whole" / records.LOG_NAME) if r["type"] == "epoch")

    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", YOLO_OFFLINE="1", YOLO_AUTOINSTALL="0")
    cmd = [sys.executable, str(SCRIPT), *TINY[1:], f"project={runs}", "--cache-dir", str(tmp_path / "cache"),
           *flags, "name=killed"]
    killed = runs / "killed"
    delay = random.Random(20240601).uniform(0.05, 0.5)  # of an epoch's duration in the uninterrupted run
    for attempt in range(4):  # on a busy machine the killed run can outpace the timed one: retry sooner
        shutil.rmtree(killed, ignore_errors=True)
        with open(tmp_path / "killed.out", "w") as out:
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            deadline = time.monotonic() + 240
            while not ((killed / records.LOG_NAME).exists() and len(_epochs_without_times(killed)) == 1
                       and (killed / "weights" / "last.pt").exists()):
                assert proc.poll() is None and time.monotonic() < deadline, \
                    (tmp_path / "killed.out").read_text()[-2000:]
                time.sleep(0.01)
            time.sleep(delay * epoch_s)  # somewhere in epoch 1
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        if proc.returncode == -signal.SIGKILL and len(_epochs_without_times(killed)) == 1:
            break
        delay /= 4
    else:
        pytest.fail("could not land the kill in epoch 1 in four tries")

    resumed = _train(tmp_path, f"resume={killed / 'weights' / 'last.pt'}", *flags[4:])
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    got, want = _epochs_without_times(killed), _epochs_without_times(runs / "whole")
    assert [e["epoch"] for e in got] == [0, 1, 2] and got[0] == want[0]
    assert [e["forward_samples"] for e in got] == [e["forward_samples"] for e in want]
    log = records.read(killed / records.LOG_NAME)
    assert [r for r in log if r["type"] == "resume"] == [{"type": "resume", "epoch": 1, "selection_state_restored": True,
                                                         "selection_counts_restored": True}]
    assert [r["type"] for r in log].count("run") == 1 and [r["type"] for r in log][-1] == "summary"
    counts = np.load(killed / "selection_counts.npy")
    assert int(counts.sum()) == sum(e["samples_backprop"] for e in got)
