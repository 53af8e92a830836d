"""Fault injection with real processes: trainers/classify.py killed with SIGKILL mid-epoch and resumed computes
exactly what an uninterrupted run computes, and a checkpoint being written when the process dies never replaces the
last good one. The kill points are drawn from a seeded generator, so a failure reproduces."""
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from test_classify_helpers import REPO, SCRIPT, SMALL, env, log, run, without_times

pytestmark = pytest.mark.slow
SEED = 20240601


def _wait_for(predicate, proc, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"the process ended ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.005)


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
METHODS = {  # η-reuse across the kill, InfoBatch's scores and plan, the IDS γ switch at epoch 2
    "adonis": ["--adonis-eta", "2"],
    "infobatch": ["--reduce", "infobatch", "--infobatch-delta", "0.67"],
    "ids-gamma": ["--ids-alpha", "0.6", "--ids-gamma", "2", "--ids-image-size", "64"],
}


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("ddp", [False, True], ids=["1-process", "2-process"])
def test_sigkill_in_epoch_1_then_resume_repeats_the_uninterrupted_run(cifar10_small, tmp_path, method, ddp):
    extra = ["--ids-cache-dir", tmp_path / "cache"] if method == "ids-gamma" else []
    launcher = TORCHRUN if ddp else [sys.executable]
    common = ["--data-path", cifar10_small, *SMALL, "--epochs", "3", *METHODS[method], *extra,
              *(["--device", "cpu"] if ddp else [])]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    run([*common, "--output-dir", whole], launcher=launcher, timeout=300)
    epochs = log(whole, "epoch")
    epoch1 = epochs[1]["train_time_s"] + epochs[1]["eval_time_s"]  # how long epoch 1 takes on this machine

    cmd = [*launcher, str(SCRIPT), *map(str, common), "--output-dir", str(killed)]
    rng = random.Random(f"{SEED}-{method}-{ddp}")
    ckpt = killed / "checkpoint.pth"
    delay = rng.uniform(0.05, 0.6)  # of epoch 1's duration in the uninterrupted run
    for attempt in range(4):  # a busy machine can make the killed run much faster than the timed one: retry sooner
        shutil.rmtree(killed, ignore_errors=True)
        with open(tmp_path / "killed.out", "w") as out:
            # its own session: the kill reaches every process of the job (torchrun's agent and both ranks)
            proc = subprocess.Popen(cmd, cwd=REPO, env=env(), stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            _wait_for(ckpt.exists, proc, 180, "epoch 0's checkpoint")  # os.replace: it appears whole
            time.sleep(delay * epoch1)  # somewhere in epoch 1
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
        saved = torch.load(ckpt, map_location="cpu", weights_only=True)  # what the kill left is loadable
        if proc.returncode == -signal.SIGKILL and saved["epoch"] == 0:
            break
        delay /= 4
    else:
        pytest.fail("could not land the kill in epoch 1 in four tries")
    assert not log(killed, "summary")

    run([*common, "--resume", ckpt], launcher=launcher, timeout=300)
    a, b = log(whole, "epoch"), log(killed, "epoch")
    assert [e["epoch"] for e in b] == [0, 1, 2] and len(log(killed, "summary")) == 1
    assert [without_times(e) for e in a] == [without_times(e) for e in b]
    assert np.array_equal(np.load(whole / "selection_counts.npy"), np.load(killed / "selection_counts.npy"))
    wa = torch.load(whole / "checkpoint.pth", map_location="cpu", weights_only=True)
    wb = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert all(torch.equal(v, wb["model"][k]) for k, v in wa["model"].items())


WRITER = """
import sys, torch
sys.path.insert(0, sys.argv[4])
from datareduce.atomic import write_torch
path, mode, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
state = lambda v: {"version": v, "weights": torch.full((n,), float(v))}
write_torch(path, state(0))
print("ready", flush=True)
v = 1
while True:
    print("writing", v, flush=True)
    write_torch(path, state(v)) if mode == "atomic" else torch.save(state(v), path)
    v += 1
"""
N = 8 * 1024 * 1024  # 32 MB of float32: a write long enough to be caught in the middle


def _kill_mid_write(tmp_path, mode, fraction):
    """Run a writer that rewrites ``ckpt.pth`` in a loop and SIGKILL it once the file being written holds
    ``fraction`` of its bytes; returns (the version it was writing, the path)."""
    path = tmp_path / f"{mode}-ckpt.pth"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path), mode, str(N), str(REPO)], env=env(),
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    full = path.stat().st_size

    def partial():
        files = list(tmp_path.glob(f".{path.name}.*.tmp")) if mode == "atomic" else [path]
        for f in files:
            try:
                size = f.stat().st_size
            except FileNotFoundError:  # renamed into place meanwhile
                continue
            if fraction * full <= size < full:
                return True
        return False

    _wait_for(partial, proc, 60, f"a {mode} write {fraction:.0%} done")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    lines = proc.stdout.read().split()
    writing = int(lines[-1]) if lines and lines[-1].isdigit() else 1
    return writing, path


@pytest.mark.parametrize("trial", range(3))
def test_a_kill_during_a_checkpoint_write_keeps_the_previous_one(tmp_path, trial):
    rng = random.Random(SEED + trial)
    writing, path = _kill_mid_write(tmp_path, "atomic", rng.uniform(0.05, 0.95))
    kept = torch.load(path, map_location="cpu", weights_only=True)  # loadable: the old file, never half a new one
    assert kept["version"] == writing - 1
    assert torch.equal(kept["weights"], torch.full((N,), float(writing - 1)))
    assert list(tmp_path.glob(f".{path.name}.*.tmp")), "the kill did not land in the write"  # what it left


def test_the_harness_does_catch_a_torn_write(tmp_path):
    """The same kill on a plain torch.save to the checkpoint's own path leaves a broken file: the check above
    would see a non-atomic write."""
    _, path = _kill_mid_write(tmp_path, "plain", random.Random(SEED).uniform(0.05, 0.95))
    with pytest.raises(Exception):
        torch.load(path, map_location="cpu", weights_only=True)
