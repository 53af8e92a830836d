"""End-to-end runs of trainers/classify.py on real data (a 400-image CIFAR-10 subset) for every method."""
import json

import numpy as np
import pytest
import torch

from test_classify_helpers import REPO, SMALL, log, run

pytestmark = pytest.mark.slow

EPOCH_FIELDS = {"epoch", "train_time_s", "cumulative_train_time_s", "samples_scored", "samples_backprop",
                "optimizer_steps", "train_loss", "top1", "top5", "lr", "forward_samples"}


@pytest.fixture(scope="module")
def embed_cache(tmp_path_factory):
    """One embedding cache for the module: the second IDS run reuses the first one's features."""
    return tmp_path_factory.mktemp("embed-cache")


def _counts(out):
    counts = np.load(out / "selection_counts.npy")
    assert counts.dtype == np.uint16 and counts.shape == (400,)
    return counts


def test_full_with_config_file(cifar10_small, tmp_path):
    out = tmp_path / "full"
    run(["--config", REPO / "configs" / "cifar10-resnet20-cpu.yaml", "--data-path", cifar10_small,
         "--epochs", "2", *SMALL, "--output-dir", out])
    run_rec, = log(out, "run")
    assert run_rec["args"]["lr_milestones"] == [5, 9, 12] and run_rec["args"]["batch_size"] == 32  # CLI wins
    epochs = log(out, "epoch")
    assert [e["epoch"] for e in epochs] == [0, 1]
    for e in epochs:
        assert EPOCH_FIELDS <= set(e)
        assert e["samples_backprop"] == e["forward_samples"] == 400 and e["samples_scored"] == 0
        assert e["optimizer_steps"] == 13  # ceil(400 / 32)
        assert 0 <= e["top1"] <= e["top5"] <= 100
    assert epochs[1]["cumulative_train_time_s"] == pytest.approx(
        epochs[0]["train_time_s"] + epochs[1]["train_time_s"])
    summary, = log(out, "summary")
    assert summary["samples_backprop"] == 800 and summary["optimizer_steps"] == 26
    assert (_counts(out) == 2).all()
    assert (out / "checkpoint.pth").is_file()
    # --test-only evaluates the checkpoint and reproduces the logged accuracy, writing nothing
    proc = run(["--data-path", cifar10_small, *SMALL, "--test-only", "--resume", out / "checkpoint.pth"])
    assert json.loads(proc.stdout.strip().splitlines()[-1])["top1"] == pytest.approx(epochs[-1]["top1"])


@pytest.fixture(scope="module")
def adonis_run(cifar10_small, tmp_path_factory):
    out = tmp_path_factory.mktemp("adonis")
    run(["--data-path", cifar10_small, "--epochs", "3", *SMALL, "--adonis-eta", "2", "--adonis-omega", "-1",
         "--output-dir", out])
    return out


def test_adonis(adonis_run):
    out = adonis_run
    epochs = log(out, "epoch")
    # η=2: every sample is scored in epochs 0 and 2, none in epoch 1 (their losses are still fresh)
    assert [e["samples_scored"] for e in epochs] == [400, 0, 400]
    # epoch 1 is planned from the cached losses: only the samples it trains are loaded
    assert [e["planned"] for e in epochs] == [False, True, False]
    assert epochs[0]["samples_loaded"] == 400
    assert epochs[1]["samples_loaded"] == epochs[1]["samples_backprop"] < 400
    assert epochs[2]["samples_loaded"] >= 400  # plus the samples epoch 1 selected but did not train
    for e in epochs:
        assert e["keep_fraction"] <= 0.3 + 1 / 32
        assert e["samples_backprop"] == 32 * e["optimizer_steps"] or e is epochs[-1]  # exactly rho per step
        assert sum(e["kept_per_class"]) == e["samples_selected"]
        assert e["mean_loss_kept"] is not None and e["mean_loss_all"] is not None
    total = sum(e["samples_backprop"] for e in epochs)
    assert total == sum(e["samples_selected"] for e in epochs)  # the last epoch flushes the buffer
    assert int(_counts(out).sum()) == total
    run_rec, = log(out, "run")
    assert run_rec["reduce"]["adonis"]["eta"] == 2 and run_rec["reduce"]["adonis"]["theta"] == 0.12


def test_load_all_samples_selects_the_same(adonis_run, cifar10_small, tmp_path):
    """--load-all-samples streams every epoch (the slower path): the same selections as the planned run."""
    out = tmp_path / "adonis-load-all"
    run(["--data-path", cifar10_small, "--epochs", "3", *SMALL, "--adonis-eta", "2", "--adonis-omega", "-1",
         "--load-all-samples", "--output-dir", out])
    planned, streamed = log(adonis_run, "epoch"), log(out, "epoch")
    assert [e["planned"] for e in streamed] == [False, False, False]
    assert streamed[1]["samples_loaded"] == 400
    for a, b in zip(planned[:2], streamed[:2]):  # epoch 2 differs: epoch 1's images got other augmentations
        assert a["kept_per_class"] == b["kept_per_class"] and a["samples_backprop"] == b["samples_backprop"]


def test_adonis_reuse_train_loss(cifar10_small, tmp_path):
    out = tmp_path / "adonis-reuse"
    run(["--data-path", cifar10_small, "--epochs", "3", *SMALL, "--adonis-eta", "2", "--adonis-reuse-train-loss",
         "--adonis-omega", "-1", "--output-dir", out])
    epochs = log(out, "epoch")
    # samples trained in epoch 1 got a fresh loss from their training forward: not rescored in epoch 2
    assert epochs[0]["samples_scored"] == 400 and epochs[1]["samples_scored"] == 0
    assert 0 < epochs[2]["samples_scored"] <= 400 - epochs[1]["samples_backprop"] + 32
    assert log(out, "run")[0]["reduce"]["adonis"]["reuse_train_loss"] is True


def test_ids_with_gamma_switch_and_manifest_reuse(cifar10_small, tmp_path, embed_cache):
    out = tmp_path / "ids"
    ids = ["--ids-alpha", "0.3", "--ids-image-size", "64", "--ids-cache-dir", embed_cache]
    run(["--data-path", cifar10_small, "--epochs", "2", *SMALL, *ids, "--ids-gamma", "1", "--output-dir", out])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method"] == "ids" and [s["mode"] for s in manifest["subsets"]] == ["easy", "hard"]
    ids_rec, = log(out, "ids")
    assert ids_rec["time_s"] > 0 and ids_rec["num_samples"] == 400 and ids_rec["from_epoch"] == [0, 1]
    epochs = log(out, "epoch")
    assert [e["train_samples"] for e in epochs] == ids_rec["num_kept"]
    assert all(len(s["per_class"]) == 10 for s in manifest["subsets"])  # no class is ever empty
    counts = _counts(out)
    assert int(counts.sum()) == sum(ids_rec["num_kept"])
    assert (counts == 0).sum() >= 400 - sum(ids_rec["num_kept"])  # the middle 40 % is in neither subset
    # a second run reuses the manifest (and checks its fingerprint) instead of selecting again
    again = tmp_path / "again"
    run(["--data-path", cifar10_small, "--epochs", "1", *SMALL, "--ids-manifest", out / "manifest.json",
         "--output-dir", again])
    rec, = log(again, "ids")
    assert rec["source"].endswith("manifest.json") and rec["num_kept"] == ids_rec["num_kept"]
    assert log(again, "epoch")[0]["train_samples"] == ids_rec["num_kept"][0]


def test_ids_plus_adonis(cifar10_small, tmp_path, embed_cache):
    out = tmp_path / "ids_adonis"
    run(["--data-path", cifar10_small, "--epochs", "2", *SMALL, "--ids-alpha", "0.5", "--ids-image-size", "64",
         "--ids-cache-dir", embed_cache, "--adonis-eta", "3", "--adonis-omega", "-1", "--output-dir", out])
    ids_rec, = log(out, "ids")
    epochs = log(out, "epoch")
    kept = ids_rec["num_kept"][0]
    assert [e["forward_samples"] for e in epochs] == [kept, kept]  # ADONIS sees only the IDS subset
    assert [e["samples_scored"] for e in epochs] == [kept, 0]
    assert [e["planned"] for e in epochs] == [False, True]  # positions in the IDS subset ≠ dataset indices
    assert epochs[1]["samples_loaded"] == epochs[1]["samples_backprop"]
    assert all(e["samples_selected"] < kept for e in epochs)
    counts = _counts(out)
    assert (counts > 0).sum() <= kept


def test_sb(cifar10_small, tmp_path):
    out = tmp_path / "sb"
    run(["--data-path", cifar10_small, "--epochs", "2", *SMALL, "--reduce", "sb", "--output-dir", out])
    epochs = log(out, "epoch")
    # epoch 0 primes on every sample (as SB's authors do), then every sample is scored each epoch
    assert [e["samples_scored"] for e in epochs] == [0, 400]
    assert epochs[0]["samples_selected"] == 400 and 0 < epochs[1]["samples_selected"] < 400
    assert log(out, "run")[0]["reduce"]["sb"]["beta"] == 2.0


def test_infobatch(cifar10_small, tmp_path):
    out = tmp_path / "infobatch"
    run(["--data-path", cifar10_small, "--epochs", "3", *SMALL, "--reduce", "infobatch", "--infobatch-delta", "0.67",
         "--output-dir", out])
    epochs = log(out, "epoch")
    assert epochs[0]["forward_samples"] == 400  # nothing is below the mean before the first epoch
    assert epochs[1]["forward_samples"] < 400 and epochs[1]["pruned_samples"] > 0
    assert epochs[2]["forward_samples"] == 400  # δ·3 = 2.01: epochs 0 and 1 prune, the last trains on everything
    assert all(e["samples_scored"] == 0 for e in epochs)  # losses come from the training forward


def test_adonis_prune_variant(cifar10_small, tmp_path):
    """--adonis-prune: after the full epoch 0, every sample is trained but a share of the well-learned ones."""
    out = tmp_path / "adonis-prune"
    run(["--data-path", cifar10_small, "--epochs", "2", *SMALL, "--adonis-eta", "2", "--adonis-prune", "0.5",
         "--adonis-rescale", "--output-dir", out])
    first, second = log(out, "epoch")
    assert first["samples_backprop"] == 400 and first["samples_scored"] == 0  # ω = 0: epoch 0 in full
    assert 200 <= second["samples_selected"] < 400  # at most half the samples are dropped
    assert log(out, "run")[0]["reduce"]["adonis"]["prune"] == 0.5


def test_rs2(cifar10_small, tmp_path):
    """RS2 0.25: each epoch a fresh quarter of the 400 images; four epochs visit every image exactly once."""
    out = tmp_path / "rs2"
    run(["--data-path", cifar10_small, "--epochs", "4", *SMALL, "--reduce", "rs2", "--rs2-fraction", "0.25",
         "--output-dir", out])
    epochs = log(out, "epoch")
    assert [e["forward_samples"] for e in epochs] == [100] * 4 == [e["samples_backprop"] for e in epochs]
    assert all(e["samples_scored"] == 0 and e["keep_fraction"] == 0.25 for e in epochs)
    assert np.load(out / "selection_counts.npy").tolist() == [1] * 400
    assert log(out, "run")[0]["reduce"] == {"method": "rs2", "seed": 0, "rs2": {"fraction": 0.25}}
    assert log(out, "summary")[0]["method"] == "rs2"


@pytest.mark.parametrize("method", ["stale-sb", "composer-sb", "ssp", "rpc", "rpd", "random-keep"])
def test_other_reduce_choices(cifar10_small, tmp_path, embed_cache, method):
    out = tmp_path / method
    extra = ["--ids-image-size", "64", "--ids-cache-dir", embed_cache] if method == "ssp" else []
    run(["--data-path", cifar10_small, "--epochs", "1", *SMALL, "-b", "64", "--reduce", method, *extra,
         "--output-dir", out])
    e, = log(out, "epoch")
    s, = log(out, "summary")
    assert s["method"] == method and e["samples_backprop"] > 0
    if method in ("ssp", "rpc", "rpd"):
        assert e["train_samples"] == 320 and (out / "manifest.json").is_file()  # ⌈0.8 · 400⌉
    elif method == "stale-sb":  # one epoch: SB's priming epoch, every sample trained, none scored
        assert e["samples_backprop"] == 400 and e["samples_scored"] == 0
    else:
        assert e["samples_backprop"] < 400


def test_default_command_runs_without_arguments(tmp_path):
    """`classify.py --adonis-eta 3` needs nothing else: embedded digits, resnet20, runs/classify/<timestamp>/.
    (One epoch here to keep the test short; the default is 10.) --amp is a no-op on the CPU."""
    proc = run(["--adonis-eta", "3", "--epochs", "1", "--amp"], cwd=tmp_path)
    if not torch.cuda.is_available():
        assert "--amp has no effect on the CPU" in proc.stderr
    logs = list((tmp_path / "runs" / "classify").glob("*/log.jsonl"))
    assert len(logs) == 1
    out = logs[0].parent
    run_rec, = log(out, "run")
    assert run_rec["dataset"] == "digits" and run_rec["args"]["model"] == "resnet20"
    e, = log(out, "epoch")
    # Algorithm 1 line 11 (i ≤ ω, ω = 0): epoch 0 trains every sample, unscored
    assert e["forward_samples"] == e["samples_backprop"] == 1437 and e["samples_scored"] == 0 and "top5" in e
    assert "Training time" in proc.stdout


def test_help_documents_the_defaults():
    proc = run(["--help"], timeout=60)
    text = " ".join(proc.stdout.split())
    for flag in ("--data-path", "--lr-milestones", "--config", "--adonis-eta", "--ids-alpha", "--reduce",
                 "--resume", "--amp", "--test-only", "--stop-after"):
        assert flag in text
    assert "embedded digits" in text and "resnet20" in text
