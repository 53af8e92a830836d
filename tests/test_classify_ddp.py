"""`torchrun --nproc_per_node 2 trainers/classify.py …` on the CPU (gloo): ranks step in lockstep."""
import sys

import numpy as np
import pytest
import torch.distributed

from test_classify_helpers import SMALL, log, run

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")]

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


def test_two_process_adonis_with_ids(cifar10_small, tmp_path):
    out = tmp_path / "ddp"
    run(["--data-path", cifar10_small, "--epochs", "2", *SMALL, "--adonis-eta", "1", "--adonis-omega", "-1", "--ids-alpha", "0.8",
         "--ids-image-size", "64", "--ids-cache-dir", tmp_path / "cache", "--device", "cpu", "--output-dir", out],
        launcher=TORCHRUN, timeout=240)
    run_rec, = log(out, "run")
    assert run_rec["world_size"] == 2
    ids_rec, = log(out, "ids")  # embedded on both ranks' shards, selected once
    kept = ids_rec["num_kept"][0]
    epochs = log(out, "epoch")
    for e in epochs:
        steps = e["optimizer_steps_per_rank"]
        assert len(steps) == 2 and steps[0] == steps[1] == e["optimizer_steps"]  # lockstep
        assert e["forward_samples"] == 2 * -(-kept // 2)  # each rank its padded half of the IDS subset
        assert e["samples_scored"] == e["forward_samples"]
        assert 0 < e["top1"] <= 100
    # every step trains exactly rho=32 samples on each rank, except the final flush
    assert epochs[0]["samples_backprop"] == 2 * 32 * epochs[0]["optimizer_steps"]
    counts = np.load(out / "selection_counts.npy")
    assert int(counts.sum()) == sum(e["samples_backprop"] for e in epochs)
    summary, = log(out, "summary")
    assert summary["optimizer_steps"] == sum(e["optimizer_steps"] for e in epochs)


def test_two_process_adonis_planned_last_epoch(cifar10_small, tmp_path):
    """η=3: epoch 1 is planned from cached losses and is the last one: both ranks make the same number of
    steps, train all they selected, and the run ends (the uneven-ranks case is forced in test_online)."""
    out = tmp_path / "ddp-planned"
    run(["--data-path", cifar10_small, "--epochs", "2", *SMALL, "-b", "8", "--adonis-eta", "3", "--adonis-omega", "-1", "--device", "cpu",
         "--output-dir", out], launcher=TORCHRUN, timeout=240)
    epochs = log(out, "epoch")
    assert [e["planned"] for e in epochs] == [False, True]
    for e in epochs:
        steps = e["optimizer_steps_per_rank"]
        assert steps[0] == steps[1] == e["optimizer_steps"] > 0
    assert epochs[1]["buffered"] == 0  # the last epoch trained all it had selected
    assert log(out, "summary")


def test_two_process_infobatch_plans_agree(cifar10_small, tmp_path):
    """InfoBatch's scores are gathered from both ranks, so both draw the same plan and the same step count."""
    out = tmp_path / "ddp-infobatch"
    run(["--data-path", cifar10_small, "--epochs", "2", *SMALL, "--reduce", "infobatch", "--device", "cpu",
         "--infobatch-delta", "1", "--output-dir", out], launcher=TORCHRUN, timeout=240)  # δ 1: epoch 1 prunes
    epochs = log(out, "epoch")
    assert epochs[1]["pruned_samples"] > 0
    for e in epochs:
        steps = e["optimizer_steps_per_rank"]
        assert steps[0] == steps[1]
        visited = 400 - e["pruned_samples"]
        assert e["forward_samples"] == e["samples_backprop"] == 2 * -(-visited // 2)  # padded to both ranks


def test_two_process_prune_mode(cifar10_small, tmp_path):
    """--adonis-mode prune under torchrun: epoch 0 trains everything and its training losses fill both
    ranks' caches, so epoch 1 prunes without a scoring forward, in lockstep; the last epoch (1/8, at least one)
    trains everything again."""
    out = tmp_path / "ddp-prune"
    run(["--data-path", cifar10_small, "--epochs", "3", *SMALL, "-b", "8", "--adonis-mode", "prune",
         "--device", "cpu", "--output-dir", out], launcher=TORCHRUN, timeout=240)
    epochs = log(out, "epoch")
    for e in epochs:
        steps = e["optimizer_steps_per_rank"]
        assert steps[0] == steps[1] == e["optimizer_steps"] > 0
    assert epochs[0]["samples_backprop"] == epochs[0]["forward_samples"]
    assert epochs[1]["samples_backprop"] < epochs[1]["forward_samples"]  # pruned
    assert epochs[2]["samples_backprop"] >= epochs[2]["forward_samples"]  # all, plus what epoch 1 carried over
    assert epochs[1]["samples_scored"] == 0  # every loss came from epoch 0's training steps
    assert int(np.load(out / "selection_counts.npy").sum()) == sum(e["samples_backprop"] for e in epochs)
