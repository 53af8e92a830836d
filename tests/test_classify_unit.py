"""The classification glue piece by piece: scoring leaves the model alone (BN test), sampler, in-place subsets,
the --config loader, selection counts."""
import copy
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from datareduce.datasets import load_datasets
from datareduce.integrations.classification.evaluation import evaluate
from datareduce.integrations.classification.reducer_choice import build_reducer
from datareduce.integrations.classification.samplers import TrainSampler
from datareduce.integrations.classification.scoring import make_score_fn
from datareduce.integrations.classification.training_set import full_labels, keep_samples
from datareduce.models import get_model
from datareduce.selection_counts import SelectionCounts

REPO = Path(__file__).resolve().parents[1]


def _classify():
    spec = importlib.util.spec_from_file_location("classify_script", REPO / "trainers" / "classify.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("classify_script", mod)
    spec.loader.exec_module(mod)
    return mod


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _flags(model):
    return [(m.training, getattr(m, "track_running_stats", None)) for m in model.modules()]


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2_cifar"])
@pytest.mark.parametrize("bn", ["batch", "running"])
@pytest.mark.parametrize("training", [True, False])
def test_scoring_forward_changes_no_model_state(name, bn, training):
    """BN running mean/var and num_batches_tracked, every parameter, the train/eval flags: all untouched."""
    torch.manual_seed(0)
    model = get_model(name, num_classes=10)
    model.train(training)
    x, y = torch.randn(16, 3, 32, 32), torch.randint(0, 10, (16,))
    before, flags = _state(model), _flags(model)
    rng = torch.get_rng_state()
    losses = make_score_fn(model, bn=bn)((x, y, torch.arange(16)))
    assert losses.shape == (16,) and torch.isfinite(losses).all()
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert _flags(model) == flags
    assert torch.equal(torch.get_rng_state(), rng)  # no dropout draw in the scoring pass


def test_batch_statistics_scoring_matches_the_training_forward():
    """bn='batch' gives the loss a train-mode forward would see (minus dropout); bn='running' the eval loss."""
    torch.manual_seed(0)
    model = get_model("resnet20", num_classes=10)
    with torch.no_grad():  # make the running statistics differ from any batch's
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    train_copy, eval_copy = copy.deepcopy(model).train(), copy.deepcopy(model).eval()
    with torch.no_grad():
        want_batch = torch.nn.functional.cross_entropy(train_copy(x), y, reduction="none")
        want_running = torch.nn.functional.cross_entropy(eval_copy(x), y, reduction="none")
    got_batch = make_score_fn(model, bn="batch")((x, y))
    got_running = make_score_fn(model, bn="running")((x, y))
    assert torch.allclose(got_batch, want_batch, atol=1e-5)
    assert torch.allclose(got_running, want_running, atol=1e-5)
    assert not torch.allclose(got_batch, got_running, atol=1e-3)


def test_a_whole_online_epoch_of_scoring_leaves_bn_alone():
    from datareduce.config import AdonisConfig, ReduceConfig

    torch.manual_seed(0)
    model = get_model("resnet20", num_classes=10).train()
    data = load_datasets(None).train
    keep = np.arange(0, len(data), 12)  # ~120 samples
    keep_samples(data, keep)
    loader = torch.utils.data.DataLoader(data, batch_size=32, sampler=TrainSampler(data))
    cfg = ReduceConfig(adonis=AdonisConfig(eta=1))
    reducer = build_reducer(cfg, make_score_fn(model), 32, 2, data)
    before = _state(model)
    n = sum(len(b[0]) for b, _ in reducer.batches(loader, epoch=0, last=True))
    assert n == reducer.epoch_record()["samples_selected"] > 0
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_train_sampler_is_seeded_sharded_and_follows_subsets():
    data = list(range(10))
    s = TrainSampler(data, seed=3)
    s.set_epoch(1)
    first = list(s)
    assert sorted(first) == data and list(s) == first
    s.set_epoch(2)
    assert list(s) != first
    shards = [list(TrainSampler(data, rank=r, world_size=3, seed=3)) for r in range(3)]
    assert [len(x) for x in shards] == [4, 4, 4]  # padded to equal length: ranks stay in lockstep
    assert set().union(*shards) == set(data)
    del data[7:]
    assert len(s) == 7 and sorted(s) == list(range(7))
    s.set_plan(torch.tensor([5, 1]))
    assert list(s) == [5, 1]


def test_keep_samples_in_place(cifar10_small):
    ds = load_datasets(cifar10_small).train
    keys, targets = ds.sample_keys(), list(ds.targets)
    keep_samples(ds, [3, 50, 399])
    assert len(ds) == 3 and ds.imgs is ds.samples
    assert ds.targets == [targets[3], targets[50], targets[399]]
    assert [ds[i][2] for i in range(3)] == [3, 50, 399]  # full-set indices, not positions
    assert ds.sample_keys() == keys  # the manifest's listing is always the full set
    assert full_labels(ds).tolist() == targets
    keep_samples(ds, [1])
    assert ds[0][2] == 1
    keep_samples(ds, None)
    assert len(ds) == 400
    with pytest.raises(ValueError, match="at least one"):
        keep_samples(ds, [])


def test_selection_counts_saturate(tmp_path):
    c = SelectionCounts(4)
    c.counts[:] = 65534
    c.add(torch.tensor([0, 0, 1]))
    c.end_epoch()
    assert c.counts.tolist() == [65535, 65535, 65534, 65534] and c.counts.dtype == np.uint16
    c.save(tmp_path / "counts.npy")
    assert np.load(tmp_path / "counts.npy").dtype == np.uint16


def test_config_file_and_command_line_precedence(tmp_path):
    classify = _classify()
    cfg = tmp_path / "c.yaml"
    cfg.write_text("lr: 0.05\nlr-milestones: [3, 6]\nbatch_size: 16\nadonis-eta: 3\nreduce: full\n")
    args = classify.parse_args(["--config", str(cfg), "--lr", "0.2"])
    assert args.lr == 0.2 and args.lr_milestones == [3, 6] and args.batch_size == 16 and args.adonis_eta == 3
    cfg.write_text("learning-rate: 0.1\n")
    with pytest.raises(SystemExit):
        classify.parse_args(["--config", str(cfg)])
    cfg.write_text("reduce: bogus\n")
    with pytest.raises(SystemExit):
        classify.parse_args(["--config", str(cfg)])


@pytest.mark.parametrize("name", ["cifar10-resnet18", "cifar100-resnet18", "imagenet-resnet",
                                  "imagenet-mobilenet_v2", "cifar10-resnet20-cpu"])
def test_shipped_configs_parse(name):
    classify = _classify()
    args = classify.parse_args(["--config", str(REPO / "configs" / f"{name}.yaml")])
    assert args.epochs in (15, 90, 200) and args.batch_size in (128, 256)
    if name.startswith("cifar"):
        assert args.lr_milestones and args.lr_gamma == 0.2 and args.weight_decay == 5e-4


def test_evaluate_reports_top5_only_with_five_classes():
    torch.manual_seed(0)
    for classes in (3, 5):
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, classes))
        data = torch.utils.data.TensorDataset(torch.randn(20, 3, 2, 2), torch.randint(0, classes, (20,)))
        res = evaluate(model, torch.utils.data.DataLoader(data, batch_size=8), torch.device("cpu"), classes)
        assert ("top5" in res) == (classes >= 5)
        assert 0 <= res["top1"] <= 100 and res["val_loss"] > 0
        if classes == 5:
            assert res["top5"] == 100.0


def test_start_up_dump_leaves_the_reduction_flags_to_the_datareduce_line():
    """`--adonis-eta 3` switches ADONIS on while the `--adonis` switch stays False: the dump printed at start-up
    must not show `adonis=False` (nor the other reduction flags, which the `datareduce:` line before it sums up)."""
    cls = _classify()
    args = cls.parse_args(["--adonis-eta", "3", "--reduce", "rpd"])
    assert args.adonis is False and args.adonis_eta == 3  # what made the old dump misleading
    shown = vars(cls.shown_args(args))
    assert not {"adonis", "ids", "reduce", "adonis_eta", "ids_alpha", "reduce_alpha"} & set(shown)
    assert shown["batch_size"] == 32 and shown["lr"] == 0.1 and "_given" not in shown


def test_resume_honours_eta_and_history_of_the_method_in_use_and_refuses_the_rest():
    """Which flags a resumed run may change (no training: the checkpoint holds the flags the run started with).
    η and the history length of the method the run uses are honoured; one that would switch a method on, or any
    other parameter, is refused naming the flag, the run's value and the new one."""
    from datareduce._validate import UsageError

    cls = _classify()
    started = {"args": cls.saved_args(cls.parse_args(["--reduce", "stale-sb", "--sb-history", "64"]))}
    args = cls.parse_args(["--resume", "c.pth", "--sb-eta", "5", "--sb-history", "32"])
    assert cls.resume_settings(args, started) == {"--sb-eta": (2, 5), "--sb-history": (64, 32)}
    assert args.reduce == "stale-sb" and args.sb_eta == 5  # the rest from the checkpoint, the change kept
    full = {"args": cls.saved_args(cls.parse_args([]))}
    for run, argv, refused in ((started, ["--sb-beta", "3"], "--sb-beta 2.0 → 3.0"),
                               (started, ["--seed", "1"], "--seed 0 → 1"),
                               (full, ["--adonis-eta", "2"], "--adonis-eta unset → 2")):
        with pytest.raises(UsageError, match=f"started with other settings \\({refused}\\)"):
            cls.resume_settings(cls.parse_args(["--resume", "c.pth", *argv]), run)
