import json

import numpy as np
import pytest
import torch

from datareduce import manifest, records, run_files
from datareduce.config import ReduceConfig


def test_epoch_records_get_cumulative_time_and_resume_drops_redone_epochs(tmp_path):
    log = records.RunLog(tmp_path)
    log.write("run", {"args": {}})
    for e, t in enumerate([1.5, 2.0, 2.5]):
        log.write("epoch", {"epoch": e, "train_time_s": t, "top1": 10.0 * e})
    assert [r["cumulative_train_time_s"] for r in log.records("epoch")] == [1.5, 3.5, 6.0]
    # resume at epoch 2: the record of epoch 2 is dropped and the running sum continues from epoch 1
    again = records.RunLog(tmp_path, resume_epoch=2)
    assert [r["epoch"] for r in again.records("epoch")] == [0, 1]
    again.write("epoch", {"epoch": 2, "train_time_s": 1.0, "top1": 25.0})
    assert again.records("epoch")[-1]["cumulative_train_time_s"] == 4.5
    s = records.summarize(again.records("epoch"))
    assert s["epochs"] == 3 and s["train_time_s"] == 4.5 and s["final_top1"] == 25.0 and s["best_top1"] == 25.0


def test_torn_last_line_is_ignored(tmp_path):
    p = tmp_path / records.LOG_NAME
    p.write_text(json.dumps({"type": "epoch", "epoch": 0}) + "\n{\"type\": \"ep")
    assert records.read(p) == [{"type": "epoch", "epoch": 0}]


def test_run_files_resume_as_the_uninterrupted_run_and_start_afresh(tmp_path):
    """RunFiles writes the run and ids records once, every epoch record in the schema, and the counts; a run
    interrupted after its epoch-1 record and resumed from epoch 0's state writes the uninterrupted run's bytes."""
    cfg = ReduceConfig(method="rpd")
    ids = ["a", "b", "c", "d"]
    subset = manifest.make(ids, [manifest.subset([0, 1], ids)], "rpd", {"alpha": 0.5, "seed": 0})

    def train(folder, epochs, resume_epoch=None, state=None):
        files = run_files.RunFiles(folder, len(ids), cfg)
        files.offline_subset(subset, 0.25)  # before open: the record waits, the manifest is written
        files.load_state_dict(state)
        files.open({"lr": 0.1, "model": object()}, resume_epoch=resume_epoch, device="cpu")
        for epoch in epochs:
            files.count(torch.tensor([0, 1, 1]))
            files.end_training({"forward_samples": 3, "samples_backprop": 3, "train_time_s": 1.0})
            files.write_epoch(epoch, {"top1": 10.0 * epoch})
        return files

    train(tmp_path / "whole", [0, 1]).write_summary("top1")
    state = train(tmp_path / "part", [0]).state_dict()  # the checkpoint of epoch 0
    train(tmp_path / "part", [1], resume_epoch=1, state=state)  # interrupted after epoch 1's record
    train(tmp_path / "part", [1], resume_epoch=1, state=state).write_summary("top1")
    whole, part = (tmp_path / name for name in ("whole", "part"))
    assert (part / records.LOG_NAME).read_bytes() == (whole / records.LOG_NAME).read_bytes()
    counts = np.load(part / run_files.COUNTS_NAME)
    assert counts.tolist() == [2, 4, 0, 0] == np.load(whole / run_files.COUNTS_NAME).tolist()
    log = records.read(part / records.LOG_NAME)
    assert [r["type"] for r in log] == ["run", "ids", "epoch", "epoch", "summary"]
    assert log[0]["args"] == {"lr": 0.1} and log[0]["num_train"] == 4 and log[1]["source"] is None
    epoch = log[2]
    assert set(run_files.EPOCH_KEYS) <= set(epoch) and epoch["method"] == "rpd"
    assert (epoch["samples_selected"], epoch["samples_scored"], epoch["keep_fraction"]) == (3, 0, 1.0)
    assert log[-1]["samples_backprop"] == 6 and log[-1]["optimizer_steps"] is None  # no host counted steps
    with pytest.raises(ValueError, match="samples_backprop"):
        run_files.epoch_record(0, "rpd", {"forward_samples": 3, "samples_backprop": 3, "train_time_s": 1.0},
                               {"samples_backprop": 2})
    # a fresh start in the folder leaves none of the earlier run's files
    run_files.RunFiles(part, len(ids), ReduceConfig()).open({})
    assert sorted(p.name for p in part.iterdir()) == [records.LOG_NAME]
    assert [r["type"] for r in records.read(part / records.LOG_NAME)] == ["run"]


def test_epoch_line_says_what_the_epoch_record_kept_scored_and_trained(tmp_path):
    """The console line every host prints after an epoch, from the record RunFiles wrote: kept of visited (with
    the keep fraction to 3 places, None when nothing was visited), scored, and trained in how many batches."""
    files = run_files.RunFiles(tmp_path, 12, ReduceConfig(method="rpd"))
    files.open({})
    files.count(torch.tensor([0, 1, 2]))
    files.end_training({"forward_samples": 9, "samples_scored": 9, "samples_selected": 3, "samples_backprop": 3,
                        "train_batches": 1, "train_time_s": 1.0})
    rec = files.write_epoch(0, {"top1": 12.5})
    assert run_files.epoch_line(rec) == ("datareduce: epoch 0 rpd kept 3/9 samples (0.333), scored 9, "
                                         "trained 3 in 1 batches")
    files.end_training({"forward_samples": 0, "samples_backprop": 0, "train_batches": 0, "train_time_s": 0.5})
    rec = files.write_epoch(1)
    assert rec["keep_fraction"] is None
    assert run_files.epoch_line(rec, "images") == ("datareduce: epoch 1 rpd kept 0/0 images (None), scored 0, "
                                                   "trained 0 in 0 batches")
