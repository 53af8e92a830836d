"""The hooks patches/vision-classification.patch calls, on a real CIFAR-10 subset in an ImageFolder, with the
reference's own data path: a plain ``torchvision.datasets.ImageFolder``, its samplers, a DataLoader yielding
``(image, target)`` (mixup soft targets included) and the reference's checkpoint dict."""
import argparse
import json
import math

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler
from torchvision.transforms import v2

from datareduce import manifest, records, run_files
from datareduce._validate import UsageError
from datareduce.integrations import vision_reference as vr


def reference_args(tmp_path, *flags, epochs=2, batch_size=16):
    """The reference's options that the hooks read, plus ours (as its patched get_args_parser adds them)."""
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu")
    p.add_argument("-b", "--batch-size", default=batch_size, type=int)
    p.add_argument("--epochs", default=epochs, type=int)
    p.add_argument("-j", "--workers", default=0, type=int)
    p.add_argument("--label-smoothing", default=0.0, type=float)
    p.add_argument("--amp", action="store_true")
    p.add_argument("--output-dir", default=str(tmp_path))
    p.add_argument("--start-epoch", default=0, type=int)
    p.add_argument("--resume", default="", type=str)
    vr.add_arguments(p)
    return p.parse_args(list(flags))


@pytest.fixture(scope="module")
def ids_flags(tmp_path_factory):
    return ["--ids-extractor", "resnet18", "--ids-weights", "random", "--ids-image-size", "32",
            "--ids-cache-dir", str(tmp_path_factory.mktemp("emb"))]


TO_TENSOR = v2.Compose([v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True)])


def train_set(cifar10_small):
    return torchvision.datasets.ImageFolder(str(cifar10_small / "train"), TO_TENSOR)


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(8, 10))


def loader_for(dataset, args, sampler, collate_fn=None):
    return DataLoader(dataset, batch_size=args.batch_size, sampler=sampler, num_workers=args.workers,
                      collate_fn=collate_fn or torch.utils.data.default_collate)


def read_log(tmp_path, kind="epoch"):
    """The records of type ``kind`` in the run's log (the hooks keep it in the output dir's datareduce/)."""
    return [r for r in records.read(tmp_path / run_files.SUBFOLDER / records.LOG_NAME) if r["type"] == kind]


# ------------------------------------------------------------------------------------------------ plumbing
class IndexImages(Dataset):
    """Each sample's 'image' is its own index: shows which samples a batch holds."""

    def __len__(self):
        return 200

    def __getitem__(self, i):
        return torch.tensor([float(i)]), i % 10


def test_recorded_batches_match_what_the_loader_yields_with_workers():
    data = IndexImages()
    base = DataLoader(data, batch_size=16, sampler=RandomSampler(data), num_workers=2, prefetch_factor=3)
    rec = vr.RecordingBatchSampler(base.batch_sampler)
    loader = vr._rebuild(base, rec)
    for _ in range(2):
        for images, _ in loader:
            assert images.flatten().long().tolist() == rec.pop()
        assert not rec.queue


class RASamplerLike(torch.utils.data.Sampler):
    """The reference's RASampler's constructor and cached length (sampler.py), for re-sizing."""

    def __init__(self, dataset, num_replicas=None, rank=None, shuffle=True, seed=0, repetitions=3):
        self.dataset, self.num_replicas, self.rank, self.epoch = dataset, num_replicas, rank, 0
        self.num_samples = int(math.ceil(len(dataset) * float(repetitions) / num_replicas))
        self.total_size = self.num_samples * num_replicas
        self.shuffle, self.seed, self.repetitions = shuffle, seed, repetitions

    def __len__(self):
        return self.num_samples


def test_samplers_are_resized_after_an_in_place_subset():
    data = IndexImages()
    ds = DistributedSampler(data, num_replicas=2, rank=1, shuffle=True, seed=7)
    ra = RASamplerLike(data, num_replicas=2, rank=0, repetitions=2)
    ds.set_epoch(5)
    ra.epoch = 4
    small = torch.utils.data.Subset(data, range(50))
    vr.refresh_sampler(ds, small)
    vr.refresh_sampler(ra, small)
    assert len(ds) == 25 and ds.epoch == 5 and ds.rank == 1 and ds.seed == 7 and len(list(ds)) == 25
    assert len(ra) == 50 and ra.epoch == 4 and ra.repetitions == 2
    vr.refresh_sampler(RandomSampler(small), small)  # reads len(dataset) as it goes: nothing to do


# ------------------------------------------------------------------------------------------------ hooks
def test_no_flags_means_identity_hooks(tmp_path, cifar10_small):
    dataset = train_set(cifar10_small)
    args = reference_args(tmp_path)
    sampler = RandomSampler(dataset)
    reduce = vr.setup(args, dataset, sampler)
    loader = loader_for(dataset, args, sampler)
    assert not reduce.active and len(dataset) == 400
    assert reduce.epoch_loader(loader, 0, small_net()) is loader
    ckpt = {"epoch": 0}
    reduce.save_to(ckpt)
    reduce.load_from(ckpt)
    assert ckpt == {"epoch": 0} and not list(tmp_path.iterdir())
    # train_quantization.py's parser has none of our flags
    assert not vr.setup(argparse.Namespace(device="cpu"), dataset, sampler).active


def test_runs_that_weight_or_reuse_losses_are_accepted_and_wrap_the_criterion(tmp_path, cifar10_small):
    dataset = train_set(cifar10_small)
    ce = nn.CrossEntropyLoss(label_smoothing=0.1)
    for flags in ([], ["--reduce", "random-keep"], ["--adonis-eta", "3"], ["--reduce", "rs2"]):
        assert vr.setup(reference_args(tmp_path, *flags), dataset, RandomSampler(dataset)).criterion(ce) is ce
    args = reference_args(tmp_path / "rec", "--adonis-mode", "prune", epochs=8)
    sampler = RandomSampler(dataset)
    rec = vr.setup(args, dataset, sampler)
    a = rec.cfg.adonis
    assert a.reuse_train_loss and a.rescale and a.mode == "prune" and a.anneal == 1
    criterion, model = rec.criterion(ce), small_net()
    assert isinstance(criterion, vr.StepLoss)
    for epoch in (0, 1):
        batches = reference_epoch(rec, loader_for(dataset, args, sampler), model, criterion, epoch, label_smoothing=0.1)
    assert {float(x) for b in batches for x in b["w"]} == {1.0, 2.0}  # pruned dense bins: 1 / (1 - 0.5)
    assert [r["samples_scored"] for r in read_log(tmp_path / "rec")] == [0, 0]  # epoch 0's training losses
    for flags in (["--reduce", "infobatch"], ["--adonis-rescale"], ["--adonis-reuse-train-loss"]):
        reduce = vr.setup(reference_args(tmp_path, *flags), dataset, RandomSampler(dataset))
        with pytest.raises(RuntimeError, match="reduce.criterion"):  # the patch's criterion line is missing
            reduce.epoch_loader(loader_for(dataset, reduce.args, RandomSampler(dataset)), 0, small_net())
        with pytest.raises(ValueError, match="nn.CrossEntropyLoss"):
            reduce.criterion(nn.MSELoss())
    with pytest.raises(ValueError, match="IDS"):
        vr.setup(reference_args(tmp_path, "--reduce", "infobatch", "--ids-alpha", "0.5"), dataset,
                 RandomSampler(dataset))
    ra = reference_args(tmp_path, "--reduce", "infobatch")
    ra.distributed, ra.ra_sampler = True, True  # the reference's repeated-augmentation sampler, under DDP
    with pytest.raises(ValueError, match="--ra-sampler"):
        vr.setup(ra, dataset, RandomSampler(dataset))


@pytest.fixture(scope="module")
def position_of(cifar10_small):
    """Training position of each image tensor of :func:`train_set` (to tell which samples a batch holds)."""
    dataset = train_set(cifar10_small)
    return {dataset[i][0].numpy().tobytes(): i for i in range(len(dataset))}


def reference_epoch(reduce, loader, model, criterion, epoch, position_of=None, label_smoothing=0.0):
    """What the reference's train_one_epoch does with the epoch loader (``loss = criterion(output, target)``),
    noting per batch the weights the hooks attached, the per-sample losses computed here and the loss returned;
    then the patched loop's ``reduce.end_epoch`` (the accuracy a stand-in: these tests read the selection)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    out = []
    for images, targets in reduce.epoch_loader(loader, epoch, model):
        step = reduce.step
        output = model(images)
        loss = criterion(output, targets)
        assert reduce.step is None  # the criterion took this batch
        per = nn.functional.cross_entropy(output.detach(), targets, reduction="none", label_smoothing=label_smoothing)
        pos = [position_of[x.numpy().tobytes()] for x in images] if position_of else None
        out.append({"w": None if step is None else step.weights, "per": per, "loss": loss.detach(), "pos": pos})
        opt.zero_grad()
        loss.backward()
        opt.step()
    reduce.end_epoch(epoch, 0.0)
    return out


def test_reusing_training_losses_scores_fewer_samples(tmp_path, cifar10_small, position_of):
    scored = {}
    for reuse in (False, True):
        dataset = train_set(cifar10_small)
        flags = ["--adonis-eta", "2"] + (["--adonis-reuse-train-loss"] if reuse else [])
        args = reference_args(tmp_path / str(reuse), *flags, epochs=3)
        sampler = RandomSampler(dataset)
        reduce = vr.setup(args, dataset, sampler)
        criterion = reduce.criterion(nn.CrossEntropyLoss())
        assert isinstance(criterion, vr.StepLoss) == reuse
        loader, model = loader_for(dataset, args, sampler), small_net()
        first = reference_epoch(reduce, loader, model, criterion, 0, position_of)  # ω = 0: every sample trained
        if reuse:  # the cache holds each sample's loss from the training forward, under its own index
            pos = torch.tensor([p for b in first for p in b["pos"]])
            assert sorted(pos.tolist()) == list(range(400))
            cached = reduce.reducer.loop.selector.cached_losses(pos)
            assert torch.allclose(cached, torch.cat([b["per"] for b in first]), atol=1e-5)
        for epoch in (1, 2):
            reference_epoch(reduce, loader, model, criterion, epoch)
        scored[reuse] = [r["samples_scored"] for r in read_log(tmp_path / str(reuse))]
    assert scored[False] == [0, 400, 0]  # η = 2: scored in epoch 1, fresh in epoch 2
    assert scored[True][:2] == [0, 0] and 0 < scored[True][2] < 400  # epoch 1's kept samples are fresh in 2
    assert sum(scored[True]) < sum(scored[False])


def test_adonis_rescale_weights_the_loss_and_evaluation_stays_the_plain_mean(tmp_path, cifar10_small):
    dataset = train_set(cifar10_small)
    args = reference_args(tmp_path, "--adonis-rescale", "--adonis-prune", "0.5", "--adonis-prune-pool", "dense",
                          "--adonis-omega", "-1", "--label-smoothing", "0.1", epochs=1)
    sampler = RandomSampler(dataset)
    reduce = vr.setup(args, dataset, sampler)
    ce = nn.CrossEntropyLoss(label_smoothing=0.1)
    criterion = reduce.criterion(ce)
    mix = v2.MixUp(alpha=0.2, num_classes=10)
    loader = loader_for(dataset, args, sampler, collate_fn=lambda b: mix(*torch.utils.data.default_collate(b)))
    model = small_net()
    batches = reference_epoch(reduce, loader, model, criterion, 0, label_smoothing=0.1)
    unequal = [b for b in batches if b["w"].max() > b["w"].min() + 1e-3]
    assert len(unequal) >= len(batches) // 2
    for b in batches:
        assert torch.allclose(b["loss"], (b["per"] * b["w"]).mean(), rtol=1e-5)
    b = unequal[0]
    assert not torch.allclose(b["loss"], b["per"].mean(), rtol=1e-3)
    # evaluate(model, criterion, ...) after the epoch: the same object gives the reference's plain mean
    model.eval()
    images, targets = next(iter(loader))
    with torch.inference_mode():
        output = model(images)
        assert torch.equal(criterion(output, targets), ce(output, targets))
        assert torch.allclose(criterion(output, targets), nn.functional.cross_entropy(
            output, targets, reduction="none", label_smoothing=0.1).mean())


def test_infobatch_prunes_with_its_weights_and_training_losses(tmp_path, cifar10_small, position_of):
    dataset = train_set(cifar10_small)
    args = reference_args(tmp_path, "--reduce", "infobatch", "--infobatch-delta", "1", epochs=2)
    sampler = RandomSampler(dataset)
    reduce = vr.setup(args, dataset, sampler)
    criterion = reduce.criterion(nn.CrossEntropyLoss())
    loader, model = loader_for(dataset, args, sampler), small_net()
    first = reference_epoch(reduce, loader, model, criterion, 0, position_of)
    score = torch.full((400,), float("nan"))
    for b in first:
        score[torch.tensor(b["pos"])] = b["per"]
        assert torch.equal(b["w"], torch.ones(len(b["per"])))  # equal scores before the first epoch
    assert not score.isnan().any()  # every sample visited once
    assert torch.allclose(reduce.reducer.pruner.scores, score, atol=1e-5)  # the training losses, by index
    second = reference_epoch(reduce, loader, model, criterion, 1, position_of)
    well = score < score.mean()  # InfoBatch: below the mean loss = well learned
    visited = torch.tensor([p for b in second for p in b["pos"]])
    assert len(set(visited.tolist())) == len(visited) == 400 - int(well.sum()) + int(0.5 * int(well.sum()))
    assert set((~well).nonzero().flatten().tolist()) <= set(visited.tolist())  # only well-learned ones pruned
    for b in second:
        assert torch.equal(b["w"], torch.where(well[torch.tensor(b["pos"])], 2.0, 1.0))  # 1 / (1 - 0.5)
        assert torch.allclose(b["loss"], (b["per"] * b["w"]).mean(), rtol=1e-5)
    assert any(b["w"].max() > b["w"].min() for b in second)
    log = read_log(tmp_path)
    assert [r["pruned_samples"] for r in log] == [0, 400 - len(visited)]
    assert [r["samples_backprop"] for r in log] == [400, len(visited)]


def test_rs2_visits_a_fresh_random_half_each_epoch(tmp_path, cifar10_small, position_of):
    dataset = train_set(cifar10_small)
    args = reference_args(tmp_path, "--reduce", "rs2", epochs=2)
    sampler = RandomSampler(dataset)
    reduce = vr.setup(args, dataset, sampler)
    criterion = reduce.criterion(nn.CrossEntropyLoss())
    loader, model = loader_for(dataset, args, sampler), small_net()
    seen = [[p for b in reference_epoch(reduce, loader, model, criterion, e, position_of) for p in b["pos"]]
            for e in (0, 1)]
    assert [len(s) for s in seen] == [200, 200] and sorted(seen[0] + seen[1]) == list(range(400))


def test_seed_flag_seeds_the_draws(tmp_path, cifar10_small, position_of):
    """The reference has no --seed: the hooks add one, so runs of several seeds draw differently."""
    def first_epoch(*seed):
        dataset = train_set(cifar10_small)
        args = reference_args(tmp_path / "-".join(seed or ("default",)), "--reduce", "rs2", *seed, epochs=2)
        sampler = RandomSampler(dataset)
        reduce = vr.setup(args, dataset, sampler)
        loader = loader_for(dataset, args, sampler)
        batches = reference_epoch(reduce, loader, small_net(), reduce.criterion(nn.CrossEntropyLoss()), 0, position_of)
        return sorted(p for b in batches for p in b["pos"])

    assert first_epoch() == first_epoch("--seed", "0") != first_epoch("--seed", "1")


def test_ids_keeps_its_subset_in_place_and_switches_at_gamma(tmp_path, cifar10_small, ids_flags):
    dataset = train_set(cifar10_small)
    full = list(dataset.samples)
    args = reference_args(tmp_path, "--ids-alpha", "0.5", "--ids-gamma", "1", *ids_flags)
    sampler = DistributedSampler(dataset, num_replicas=2, rank=0)
    reduce = vr.setup(args, dataset, sampler)
    assert len(dataset) == 200 and dataset.imgs is dataset.samples and len(sampler) == 100
    assert torch.bincount(torch.tensor(dataset.targets), minlength=10).tolist() == [20] * 10
    assert all(s == full[i] for s, i in zip(dataset.samples, dataset.sample_ids))
    assert dataset.classes[0] == "airplane" and not hasattr(dataset, "sample_keys")
    easy = set(p for p, _ in dataset.samples)
    loader = loader_for(dataset, args, sampler)
    trained = [sum(len(t) for _, t in reduce.epoch_loader(loader, 0))]  # this rank's shard of the easy subset
    reduce.end_epoch(0, 0.0)
    assert trained == [100] and len(dataset) == 200
    trained.append(sum(len(t) for _, t in reduce.epoch_loader(loader, 1)))
    reduce.end_epoch(1, 0.0)
    hard = set(p for p, _ in dataset.samples)
    assert len(hard) in (200, 210) and hard != easy and len(sampler) == math.ceil(len(hard) / 2) == trained[1]
    m = manifest.read(tmp_path / run_files.SUBFOLDER / run_files.MANIFEST_NAME)
    assert [s["mode"] for s in m["subsets"]] == ["easy", "hard"] and m["dataset"]["num_samples"] == 400
    assert m["subsets"][0]["kept"][0].startswith("airplane/")
    ids_record, = read_log(tmp_path, "ids")
    assert ids_record["num_kept"] == [200, len(hard)] and ids_record["source"] is None
    epochs = read_log(tmp_path)
    assert [e["samples_backprop"] for e in epochs] == trained
    assert [e["train_samples"] for e in epochs] == [200, len(hard)]
    counts = np.load(tmp_path / run_files.SUBFOLDER / run_files.COUNTS_NAME)
    assert counts.shape == (400,) and counts.sum() == sum(trained)  # full-set indices, each trained sample once
    full = [p for p, _ in train_set(cifar10_small).samples]
    assert {full[i] for i in np.flatnonzero(counts)} <= easy | hard
    # the written manifest is reused as is
    again = train_set(cifar10_small)
    vr.setup(reference_args(tmp_path / "b", "--ids-manifest",
                            str(tmp_path / run_files.SUBFOLDER / run_files.MANIFEST_NAME)), again, RandomSampler(again))
    assert set(p for p, _ in again.samples) == easy


def test_adonis_trains_full_batches_and_reuses_losses(tmp_path, cifar10_small):
    dataset = train_set(cifar10_small)
    args = reference_args(tmp_path, "--adonis-eta", "3", "--adonis-theta", "0.05", "--adonis-omega", "-1", epochs=3)
    sampler = RandomSampler(dataset)
    reduce = vr.setup(args, dataset, sampler)
    model = small_net()
    loader = loader_for(dataset, args, sampler)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    trained = 0
    for epoch in range(3):
        epoch_loader = reduce.epoch_loader(loader, epoch, model)
        n = len(epoch_loader)
        sizes = []
        model.train()
        for images, targets in epoch_loader:  # what the reference's train_one_epoch does with them
            loss = nn.functional.cross_entropy(model(images), targets)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sizes.append(len(targets))
        reduce.end_epoch(epoch, 0.0)
        assert len(sizes) <= n
        assert all(s == 16 for s in (sizes[:-1] if epoch == 2 else sizes))
        trained += sum(sizes)
    log = read_log(tmp_path)
    assert [r["epoch"] for r in log] == [0, 1, 2]
    assert [r["samples_scored"] for r in log] == [400, 0, 0]  # η = 3
    assert trained == sum(r["samples_selected"] for r in log) == sum(r["samples_backprop"] for r in log)
    assert np.load(tmp_path / run_files.SUBFOLDER / run_files.COUNTS_NAME).sum() == trained
    assert all(0 < r["keep_fraction"] <= math.ceil(0.3 * 16) / 16 for r in log)  # at most ⌈α·n⌉ a batch
    assert sum(log[0]["kept_per_class"]) == log[0]["samples_selected"]


def test_ids_and_adonis_with_mixup_targets(tmp_path, cifar10_small, ids_flags):
    dataset = train_set(cifar10_small)
    args = reference_args(tmp_path, "--ids-alpha", "0.5", "--adonis-eta", "3", "--label-smoothing", "0.1",
                          *ids_flags, epochs=1)
    sampler = RandomSampler(dataset)
    reduce = vr.setup(args, dataset, sampler)
    mix = v2.MixUp(alpha=0.2, num_classes=10)
    loader = loader_for(dataset, args, sampler, collate_fn=lambda b: mix(*torch.utils.data.default_collate(b)))
    batches = list(reduce.epoch_loader(loader, 0, small_net()))
    reduce.end_epoch(0, 0.0)
    assert all(t.shape[1:] == (10,) for _, t in batches)  # soft targets pass through
    rec = read_log(tmp_path)[-1]
    assert rec["forward_samples"] == 200 and sum(len(t) for _, t in batches) == rec["samples_selected"]
    # the loss cache is keyed by the full-set index: kept classes are read off the full labels
    assert sum(rec["kept_per_class"]) == rec["samples_selected"]


def comparable(record):
    """A record less what differs between two runs of the same flags: times, and the output dir."""
    out = {k: v for k, v in record.items() if not k.endswith("time_s")}
    if "args" in out:
        out["args"] = {k: v for k, v in out["args"].items() if k != "output_dir"}
    return out


def test_a_resumed_run_writes_the_run_files_of_an_uninterrupted_one(tmp_path, cifar10_small):
    """The selector state and the selection counts round-trip through the reference's weights-only checkpoint:
    a run interrupted in epoch 1 (after its epoch-1 record) and resumed from epoch 0's checkpoint selects, logs
    and counts exactly as the uninterrupted run."""
    flags = ("--adonis-eta", "2", "--adonis-omega", "-1")
    dataset, model = train_set(cifar10_small), small_net()  # the loops below train nothing: one model for all
    sampler = RandomSampler(dataset)
    loader = loader_for(dataset, reference_args(tmp_path), sampler)

    def epoch(reduce, n, seed):
        torch.manual_seed(seed)  # the visiting order
        batches = list(reduce.epoch_loader(loader, n, model))
        reduce.end_epoch(n, 10.0 * n)
        return batches

    whole, part = (vr.setup(reference_args(tmp_path / name, *flags, epochs=2), dataset, sampler)
                   for name in ("whole", "part"))
    for reduce in (whole, part):
        epoch(reduce, 0, seed=0)
    checkpoint = {"epoch": 0}
    part.save_to(checkpoint)
    torch.save(checkpoint, tmp_path / "part" / "checkpoint.pth")
    epoch(part, 1, seed=2)  # interrupted after this epoch's record, before its checkpoint
    a = epoch(whole, 1, seed=1)
    loaded = torch.load(tmp_path / "part" / "checkpoint.pth", map_location="cpu", weights_only=True)  # as the reference
    resumed = vr.setup(reference_args(tmp_path / "part", *flags, epochs=2), dataset, sampler)
    resumed.load_from(loaded)
    b = epoch(resumed, 1, seed=1)
    assert resumed.reducer.loop.stats.scored == 0  # the restored cache holds epoch 0's losses
    assert len(a) == len(b) and all(torch.equal(x[1], y[1]) and torch.equal(x[0], y[0]) for x, y in zip(a, b))
    logs = [records.read(tmp_path / name / run_files.SUBFOLDER / records.LOG_NAME) for name in ("whole", "part")]
    assert [r["type"] for r in logs[1]] == ["run", "epoch", "epoch", "summary"]
    assert [comparable(r) for r in logs[0]] == [comparable(r) for r in logs[1]]
    counts = [np.load(tmp_path / name / run_files.SUBFOLDER / run_files.COUNTS_NAME) for name in ("whole", "part")]
    assert np.array_equal(*counts) and counts[0].sum() == sum(len(t) for _, t in a) + logs[0][1]["samples_backprop"]


def test_resume_honours_a_changed_eta_and_refuses_a_changed_alpha(tmp_path, cifar10_small, capsys):
    """The run's data reduction (the checkpoint's state) against the resumed one's (datareduce.flags.check_resume,
    as on every host): a changed --adonis-alpha (or ADONIS dropped) is refused in one line at load_from, before any
    training; a changed --adonis-eta is honoured: printed, in the resume record, and the reducer built for the
    resumed run re-scores by it over the restored cache."""
    dataset, model = train_set(cifar10_small), small_net()
    sampler = RandomSampler(dataset)
    loader = loader_for(dataset, reference_args(tmp_path), sampler)
    flags = ("--adonis-omega", "-1")
    first = vr.setup(reference_args(tmp_path, "--adonis-eta", "3", *flags), dataset, sampler)
    list(first.epoch_loader(loader, 0, model))
    first.end_epoch(0, 0.0)
    checkpoint = {"epoch": 0}
    first.save_to(checkpoint)
    ckpt = str(tmp_path / "checkpoint.pth")
    for changed, part in ((("--adonis-eta", "3", "--adonis-alpha", "0.5", *flags), "--adonis-alpha 0.3 → 0.5"),
                          ((), "--adonis on → off")):
        resumed = vr.setup(reference_args(tmp_path, "--resume", ckpt, *changed), dataset, sampler)
        with pytest.raises(UsageError) as refused:
            resumed.load_from(checkpoint)
        assert str(refused.value) == (f"--resume {ckpt}: the run was started with other settings ({part}); a "
                                      "resumed run continues with its own: give the flags the run was started "
                                      "with, or start a new run (another --output-dir) to change them")
    resumed = vr.setup(reference_args(tmp_path, "--resume", ckpt, "--adonis-eta", "1", *flags), dataset, sampler)
    resumed.load_from(checkpoint)
    assert "datareduce: resumed with --adonis-eta 3 → 1" in capsys.readouterr().out
    list(resumed.epoch_loader(loader, 1, model))
    resumed.end_epoch(1, 0.0)
    assert resumed.reducer.loop.selector.eta == resumed.reducer.loop.selector.cache.eta == 1
    assert read_log(tmp_path, "resume") == [{"type": "resume", "epoch": 1, "changed": {"--adonis-eta": [3, 1]}}]
    assert [r["samples_scored"] for r in read_log(tmp_path)] == [400, 400]  # η = 3 would reuse epoch 0's


def test_report_renders_a_vision_hooks_run(tmp_path, cifar10_small):
    """``datareduce report`` reads the run files from the reference's output dir (in its datareduce/): the
    accuracy curve, the count histogram and the most/least selected images of an ADONIS run."""
    from datareduce.report import build

    dataset = train_set(cifar10_small)
    args = reference_args(tmp_path / "out", "--adonis-eta", "2", "--adonis-omega", "-1", epochs=2)
    args.data_path = str(cifar10_small)  # the reference's --data-path (train/ and val/ or test/ in it)
    sampler = RandomSampler(dataset)
    reduce = vr.setup(args, dataset, sampler)
    model, loader = small_net(), loader_for(dataset, args, sampler)
    test = torchvision.datasets.ImageFolder(str(cifar10_small / "test"), TO_TENSOR)
    images, targets = next(iter(DataLoader(test, batch_size=len(test))))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for n in range(2):
        model.train()
        for x, y in reduce.epoch_loader(loader, n, model):
            loss = nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():  # what the reference's evaluate returns: top-1 in %
            reduce.end_epoch(n, 100.0 * float((model.eval()(images).argmax(1) == targets).float().mean()))
    rep = build([tmp_path / "out"], tmp_path / "html", embed_missing=False)
    run, = rep.runs
    assert (run.method, run.metric, run.num_samples, run.data_path) == ("adonis", "top1", 400, str(cifar10_small))
    assert len(run.trajectory()) == 2 and run.counts.sum() == run.total("samples_backprop")
    written = {p.name for p in (tmp_path / "html").iterdir()}
    assert {"index.html", "metric_vs_time.png", "selection_rate.png", "backprop_histogram.png",
            "selected_out.png"} <= written
    assert any(name.startswith("selected_out_class-") for name in written)  # the least selected class's grid
