"""The reduction session on its own, driven as a host drives it: a real tiny model on the real digits set, an IDS
subset switched at γ, ADONIS selecting online, every step booked; the records, the switch and a resume."""
import argparse

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, default_collate

from datareduce import offline, records
from datareduce.datasets import DigitsDataset
from datareduce.flags import add_reduce_arguments, config_from_args
from datareduce.integrations.classification.offline_subset import manifest_ids
from datareduce.integrations.classification.reducer_choice import build_reducer
from datareduce.integrations.classification.samplers import TrainSampler
from datareduce.integrations.classification.training_set import TrainingSet, full_labels
from datareduce.run_files import COUNTS_NAME, EPOCH_KEYS
from datareduce.session import ReductionSession, SubsetSchedule

EPOCHS, GAMMA, BATCH = 4, 2, 32
FLAGS = ["--ids-alpha", "0.5", "--ids-gamma", str(GAMMA), "--adonis-eta", "2", "--adonis-alpha", "0.5",
         "--adonis-omega", "-1"]


def config(flags=FLAGS):
    return config_from_args(add_reduce_arguments(argparse.ArgumentParser()).parse_args(flags), seed=0)


@pytest.fixture(scope="module")
def subset_manifest():
    """IDS easy-then-hard subsets of the digits, ranked on their pixels (a real embedding of the images)."""
    data = DigitsDataset(train=True, size=8)
    return offline.build_manifest(config(), manifest_ids(data), data.data.flatten(1).numpy(), full_labels(data))


class Run:
    """One host: the digits, a linear model, the train sampler, and the session over them."""

    def __init__(self, folder, manifest, cfg=None):
        torch.manual_seed(0)
        self.cfg = cfg or config()
        self.dataset = DigitsDataset(train=True, size=8)
        self.model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 64, 10))
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1)
        self.sampler = TrainSampler(self.dataset, seed=0)
        self.loader = DataLoader(self.dataset, batch_size=BATCH, sampler=self.sampler)
        self.session = ReductionSession(self.cfg, folder, TrainingSet(self.dataset, self.sampler), EPOCHS,
                                        manifest=manifest, keys=manifest_ids(self.dataset))
        self.switched = []

    def score(self, batch):
        with torch.no_grad():
            return F.cross_entropy(self.model(batch[0]), batch[1], reduction="none")

    def attach(self):
        self.session.attach(build_reducer(self.cfg, self.score, BATCH, EPOCHS, self.dataset,
                                          collate_fn=default_collate))

    def train(self, epochs):
        for epoch in epochs:
            self.sampler.set_epoch(epoch)
            if self.session.start_epoch(epoch):
                self.switched.append(epoch)
            for (images, targets, indices), weights in self.session.batches(self.loader):
                losses = F.cross_entropy(self.model(images), targets, reduction="none")
                loss = losses.mean()
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                self.session.stepped()
                self.session.trained(indices, losses.detach(), float(loss.detach()))
            self.session.end_training()
            self.session.write_epoch(epoch, {"top1": None})
        return self.session.state_dict()


def epochs_without_times(folder):
    out = []
    for r in records.read(folder / records.LOG_NAME):
        if r["type"] == "epoch":
            out.append({k: v for k, v in r.items() if not k.endswith("time_s")})
    return out


def test_the_subset_switches_at_gamma_and_the_records_have_the_schema(tmp_path, subset_manifest):
    run = Run(tmp_path, subset_manifest)
    run.attach()
    run.session.files.open({})
    run.train(range(EPOCHS))
    assert run.switched == [0, GAMMA]  # the easy subset at the start, the hard one from γ on, nothing else
    schedule = SubsetSchedule(subset_manifest, manifest_ids(run.dataset))
    assert [schedule.index_at(e) for e in range(EPOCHS)] == [0, 0, 1, 1]
    assert sorted(run.dataset.sample_ids.tolist()) == schedule.positions_at(GAMMA).tolist()
    epochs = records.read(tmp_path / records.LOG_NAME)[1:]
    assert [e["epoch"] for e in epochs] == list(range(EPOCHS))
    for e in epochs:
        assert set(EPOCH_KEYS) <= set(e) and e["method"] == "ids+adonis"
        assert e["train_samples"] == len(schedule.positions_at(e["epoch"]))
        assert e["optimizer_steps"] == e["train_batches"] and e["samples_backprop"] <= e["train_batches"] * BATCH
        assert sum(e["kept_per_class"]) == e["samples_selected"]
    assert epochs[1]["samples_scored"] == 0  # η = 2: the losses of epoch 0 are reused
    counts = np.load(tmp_path / COUNTS_NAME)
    assert counts.sum() == sum(e["samples_backprop"] for e in epochs)
    assert not counts[np.setdiff1d(np.arange(len(counts)), np.concatenate(schedule.positions))].any()


@pytest.mark.parametrize("key", ["selection", "reducer"])  # "reducer": a checkpoint of an earlier release
def test_a_resumed_session_selects_as_the_uninterrupted_one(tmp_path, subset_manifest, key):
    whole = Run(tmp_path / "whole", subset_manifest)
    whole.attach()
    whole.session.files.open({})
    whole.train(range(EPOCHS))

    first = Run(tmp_path / "part", subset_manifest)
    first.attach()
    first.session.files.open({})
    state = first.train(range(1))
    assert len(state["selection"]) == 1 and state["manifest"] is subset_manifest
    state[key] = state.pop("selection")

    resumed = Run(tmp_path / "part", state["manifest"])
    resumed.model.load_state_dict(first.model.state_dict())
    resumed.optimizer.load_state_dict(first.optimizer.state_dict())
    restored = resumed.session.load_state_dict(state)  # before the method exists: it waits for attach
    assert restored == {"selection_state_restored": True, "selection_counts_restored": True}
    resumed.attach()
    resumed.session.files.open({}, resume_epoch=1)
    resumed.train(range(1, EPOCHS))

    assert epochs_without_times(tmp_path / "part") == epochs_without_times(tmp_path / "whole")
    assert np.array_equal(np.load(tmp_path / "part" / COUNTS_NAME), np.load(tmp_path / "whole" / COUNTS_NAME))
    for key, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key


def test_a_session_without_a_method_counts_the_full_data(tmp_path):
    run = Run(tmp_path, None, config([]))
    run.attach()  # full data: every batch as it comes
    run.session.files.open({})
    run.train(range(1))
    (epoch,) = records.read(tmp_path / records.LOG_NAME)[1:]
    n = len(run.dataset)
    assert epoch["forward_samples"] == epoch["samples_backprop"] == epoch["train_samples"] == n
    assert epoch["train_batches"] == -(-n // BATCH) and epoch["keep_fraction"] == 1.0 and run.switched == []


def test_bad_epochs_are_refused(tmp_path):
    with pytest.raises(ValueError, match="epochs"):
        ReductionSession(config([]), tmp_path, TrainingSet(DigitsDataset(size=8)), 0)


def test_a_host_that_books_no_steps_records_none_and_a_manifest_may_come_later(tmp_path, subset_manifest):
    dataset = DigitsDataset(train=True, size=8)
    session = ReductionSession(config(), tmp_path, TrainingSet(dataset), books_steps=False)
    session.use_manifest(subset_manifest, manifest_ids(dataset))
    session.files.open({})
    session.start_epoch(0)
    assert len(dataset) == len(session.schedule.positions_at(0))
    for batch in DataLoader(dataset, batch_size=BATCH):
        session.trained(batch[2])
    session.end_training()
    record = session.write_epoch(0)
    assert record["optimizer_steps"] is None and record["train_batches"] == -(-len(dataset) // BATCH)
    assert session.state_dict()["selection"] == []  # no method: no selection state
    with pytest.raises(ValueError, match="epochs"):
        session.last(0)  # a session that prepares a method's epochs needs the run's
