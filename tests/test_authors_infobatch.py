"""bench/authors_infobatch.py: the authors' InfoBatch driving our recipe, and its plain loop (--full) against
trainers/classify.py. The authors' run is skipped unless their infobatch/infobatch.py can be found: the file named
by DATAREDUCE_INFOBATCH_SRC, or extracted from a local mirror of NUS-HPC-AI-Lab/InfoBatch (MIRROR)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench import data
from test_classify_helpers import REPO, env, log
from test_classify_helpers import run as run_classify

SCRIPT = REPO / "bench" / "authors_infobatch.py"
MIRROR = Path("/work/.mirror/NUS-HPC-AI-Lab+InfoBatch/repo")  # a bare git dir; optional
# 40 train / 20 test images, resnet20, batches of 8, one thread: seconds per epoch.
TINY = ["--preset", "cifar10", "--model", "resnet20", "-b", "8", "--workers", "0", "--device", "cpu",
        "--print-freq", "1000"]


@pytest.fixture(scope="module")
def cifar10_tiny(cifar10_root) -> Path:
    return data.subset_tree(cifar10_root, "cifar10-4-2", {"train": 4, "test": 2})


@pytest.fixture
def infobatch_src(tmp_path) -> Path:
    given = os.environ.get("DATAREDUCE_INFOBATCH_SRC")
    if given:
        if not Path(given).is_file():
            pytest.skip(f"DATAREDUCE_INFOBATCH_SRC={given}: no such file")
        return Path(given)
    if MIRROR.is_dir() and shutil.which("git"):
        proc = subprocess.run(["git", f"--git-dir={MIRROR}", "show", "HEAD:infobatch/infobatch.py"],
                              capture_output=True, timeout=60)
        if proc.returncode == 0:
            path = tmp_path / "infobatch.py"
            path.write_bytes(proc.stdout)
            return path
    pytest.skip("the authors' infobatch.py not found (set DATAREDUCE_INFOBATCH_SRC to a copy of "
                "NUS-HPC-AI-Lab/InfoBatch's infobatch/infobatch.py)")


def run(args, check=True, timeout=120):
    proc = subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], cwd=REPO, env=env(), capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"authors_infobatch.py failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                             f"{proc.stderr[-3000:]}")
    return proc


def test_authors_infobatch_smoke(cifar10_tiny, infobatch_src, tmp_path):
    """Two epochs with their wrapper and sampler (δ 1: the second epoch prunes): the log has classify.py's schema;
    a finished run is not overwritten without --overwrite."""
    out = tmp_path / "ib"
    run(["--data-path", cifar10_tiny, *TINY, "--epochs", 2, "--infobatch-delta", 1,
         "--infobatch-src", infobatch_src, "--output-dir", out])
    (run_rec,), epochs, (summary,) = log(out, "run"), log(out, "epoch"), log(out, "summary")
    assert run_rec["method"] == "authors-infobatch" and run_rec["num_train"] == 40
    assert run_rec["reduce"]["infobatch"] == {"ratio": 0.5, "delta": 1.0}  # our defaults' ratio
    assert [e["epoch"] for e in epochs] == [0, 1]
    assert epochs[0]["samples_backprop"] == 40  # equal first scores: nothing is below the mean
    assert 0 < epochs[1]["samples_backprop"] < 40  # pruned by their rule
    assert epochs[1]["pruned_samples"] == 40 - epochs[1]["samples_backprop"]
    assert epochs[1]["optimizer_steps"] == -(-epochs[1]["samples_backprop"] // 8)  # one epoch, not endless
    assert summary["samples_backprop"] == sum(e["samples_backprop"] for e in epochs)
    assert summary["final_top1"] == epochs[-1]["top1"] is not None
    conditions = json.loads((out / "conditions.json").read_text())  # as bench/run.py records a run's start
    assert conditions["parallel"] == 1 and conditions["threads"] >= 1 and "other_trainers_at_start" in conditions
    again = run(["--data-path", cifar10_tiny, *TINY, "--epochs", 2, "--infobatch-src", infobatch_src,
                 "--output-dir", out], check=False)
    assert again.returncode == 2 and "already holds a finished run" in again.stderr
    assert again.stderr.count("\n") == 1


def test_missing_authors_file_is_one_line(tmp_path):
    proc = run(["--infobatch-src", tmp_path / "nope.py", "--output-dir", tmp_path / "out"], check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("authors_infobatch.py: error: --infobatch-src") and proc.stderr.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_full_loop_matches_classify(cifar10_tiny, tmp_path):
    """--full (the plain loop, no authors' code) back-propagates what classify.py's full run does in epoch 0,
    with the same steps and, on the CPU, the same losses (same data order, init and recipe)."""
    run(["--data-path", cifar10_tiny, *TINY, "--epochs", 1, "--full", "--output-dir", tmp_path / "plain"])
    run_classify(["--data-path", cifar10_tiny, *TINY, "--epochs", 1, "--output-dir", tmp_path / "classify"])
    (plain,), (ours,) = log(tmp_path / "plain", "epoch"), log(tmp_path / "classify", "epoch")
    assert plain["samples_backprop"] == ours["samples_backprop"] == 40
    assert plain["optimizer_steps"] == ours["optimizer_steps"]
    assert plain["train_loss"] == pytest.approx(ours["train_loss"], rel=1e-5)
    assert plain["val_loss"] == pytest.approx(ours["val_loss"], rel=1e-5)
