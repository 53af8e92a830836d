"""A run interrupted after epoch 1 and resumed selects exactly as an uninterrupted one (ADONIS + IDS γ switch)."""
import numpy as np
import pytest
import torch

from test_classify_helpers import SMALL, log, run, without_times

pytestmark = pytest.mark.slow


def test_resume_repeats_the_uninterrupted_run(cifar10_small, tmp_path):
    common = ["--data-path", cifar10_small, "--epochs", "3", *SMALL,
              # η=2: losses scored in epoch 0 are reused in epoch 1 and re-scored in epoch 2, across the resume;
              # a partial buffer carries over every epoch boundary; the IDS subset switches at epoch 2
              "--adonis-eta", "2", "--adonis-alpha", "0.4", "--adonis-omega", "-1",
              "--ids-alpha", "0.6", "--ids-gamma", "2", "--ids-image-size", "64",
              "--ids-cache-dir", tmp_path / "cache"]
    whole, part = tmp_path / "whole", tmp_path / "part"
    run([*common, "--output-dir", whole])
    proc = run([*common, "--output-dir", part, "--stop-after", "1"])
    assert "--resume" in proc.stdout
    assert [e["epoch"] for e in log(part, "epoch")] == [0] and not log(part, "summary")
    ckpt = torch.load(part / "checkpoint.pth", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 0 and ckpt["selection"][0]["accumulator"]["held"] > 0  # a partial buffer is saved
    run([*common, "--resume", part / "checkpoint.pth"])  # output dir: the checkpoint's folder

    a, b = log(whole, "epoch"), log(part, "epoch")
    assert [e["epoch"] for e in b] == [0, 1, 2]
    assert [without_times(e) for e in a] == [without_times(e) for e in b]
    assert [e["samples_scored"] for e in a][1] == 0  # the η-reuse crossed the resume
    assert np.array_equal(np.load(whole / "selection_counts.npy"), np.load(part / "selection_counts.npy"))
    wa = torch.load(whole / "checkpoint.pth", map_location="cpu", weights_only=False)
    wb = torch.load(part / "checkpoint.pth", map_location="cpu", weights_only=False)
    for k, v in wa["model"].items():
        assert torch.equal(v, wb["model"][k]), k
    assert len(log(part, "summary")) == 1 and len(log(part, "ids")) == 1
