"""trainers/yolo_train.py end to end through the real Ultralytics trainer on COCO128 (yolov5n from scratch, CPU)."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from datareduce import manifest, records
from datareduce._validate import UsageError
from datareduce.report.runs import load_run
from datareduce.report.table import selector_overhead_pct

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "trainers"))
import yolo_train  # noqa: E402

TINY = ["epochs=1", "imgsz=96", "batch=8", "plots=False", "device=cpu", "exist_ok=True"]


@pytest.fixture(scope="module")
def coco_small(coco128_root, tmp_path_factory):
    """COCO128 cut to 24 train / 8 val images (symlinks), so a run takes seconds."""
    root = tmp_path_factory.mktemp("coco-small")
    for split, n in (("train", 24), ("val", 8)):
        for sub in ("images", "labels"):
            (root / sub / split).mkdir(parents=True)
        for image in sorted((coco128_root / "images" / split).iterdir())[:n]:
            (root / "images" / split / image.name).symlink_to(image)
            label = coco128_root / "labels" / split / f"{image.stem}.txt"
            if label.exists():
                (root / "labels" / split / label.name).symlink_to(label)
    (root / "data.yaml").write_text((coco128_root / "data.yaml").read_text())  # path: . = next to the YAML
    return root


def train_in(folder, *argv):
    """Train in-process with the given arguments into ``folder``; returns the trainer and its log records."""
    args = yolo_train.parse_args([*TINY, f"project={folder}", "--cache-dir", str(folder / "cache"), *argv])
    trainer = yolo_train.train(args)
    return trainer, records.read(trainer.save_dir / "log.jsonl")


@pytest.fixture
def run(tmp_path):
    """Train in-process with the given arguments; returns the trainer and its log records."""
    return lambda *argv: train_in(tmp_path, *argv)


def of(kind, log):
    return [r for r in log if r["type"] == kind]


def selection_counts(trainer, log, images=24):
    """The run's selection_counts.npy, checked against the log: one uint16 per image of the full training
    listing, summing to the images back-propagated over all epochs."""
    counts = np.load(trainer.save_dir / "selection_counts.npy", allow_pickle=False)
    assert counts.dtype == np.uint16 and counts.shape == (images,)
    assert int(counts.sum()) == sum(e["samples_backprop"] for e in of("epoch", log)) > 0
    return counts


def test_full(run, coco_small):
    trainer, log = run(f"data={coco_small}", "name=full")
    (epoch,) = of("epoch", log)
    assert epoch["samples_backprop"] == epoch["forward_samples"] == 24 and epoch["samples_scored"] == 0
    assert epoch["optimizer_steps"] >= 1 and epoch["map50_95"] is not None and epoch["train_time_s"] > 0
    assert of("summary", log)[0]["samples_backprop"] == 24
    # the run folder of trainers/classify.py: a `run` record first, per-image counts (each image once here)
    assert [r["type"] for r in log] == ["run", "epoch", "summary"]
    (first,) = of("run", log)
    assert {"args", "reduce", "dataset", "num_train", "num_val", "num_classes", "world_size", "device"} <= set(first)
    assert (first["num_train"], first["num_val"], first["num_classes"], first["world_size"]) == (24, 8, 80, 1)
    assert first["reduce"]["method"] == "full" and first["args"]["imgsz"] == 96 and first["device"] == "cpu"
    assert selection_counts(trainer, log).tolist() == [1] * 24
    assert not (trainer.save_dir / "ids_manifest.json").exists() and not (trainer.save_dir / "manifest.json").exists()


def test_ids_with_gamma_switch_and_adonis(run, coco_small, capfd, caplog):
    trainer, log = run(f"data={coco_small}", "name=ids", "epochs=2", "close_mosaic=1", "--ids-alpha", "0.5", "--ids-gamma", "1",
                       "--ids-image-size", "64", "--adonis-theta", "0.05", "--adonis-rho", "4", "--adonis-omega", "-1",
                       "--adonis-eta", "2")
    assert not (trainer.save_dir / "ids_manifest.json").exists()
    made = manifest.read(trainer.save_dir / "manifest.json")
    easy, hard = made["subsets"]
    assert (easy["mode"], hard["mode"], hard["from_epoch"]) == ("easy", "hard", 1)
    assert easy["num_kept"] == math.ceil(0.5 * 24) and set(easy["kept"]) != set(hard["kept"])
    held = {os.path.relpath(f, coco_small) for f in trainer.train_loader.dataset.im_files}
    assert held == set(hard["kept"])  # the dataset holds exactly the manifest's current subset
    first, second = of("epoch", log)
    assert (first["subset"], second["subset"]) == ("easy", "hard")
    assert (first["scoring_reuse"], second["scoring_reuse"]) == (False, True)  # η-reuse only once mosaic is closed
    # (η 2, yet epoch 1 scores every image: under mosaic nothing was cached)
    assert first["train_samples"] == 12 and second["train_samples"] == hard["num_kept"]
    for e in (first, second):
        assert e["samples_scored"] == e["forward_samples"] and e["samples_backprop"] <= e["samples_selected"] + 4
        assert e["train_batches"] <= len(trainer.train_loader)
    assert trainer.accumulate == min(round(64 / 4), len(trainer.train_loader) * 2)  # nbs / rho, capped as upstream
    (ids_record,) = of("ids", log)
    assert ids_record["time_s"] >= ids_record["embed_time_s"] > 0 and ids_record["source"] is None  # made here
    assert (ids_record["method"], ids_record["num_samples"], ids_record["from_epoch"]) == ("ids", 24, [0, 1])
    assert ids_record["num_kept"] == [12, hard["num_kept"]]
    counts = selection_counts(trainer, log)
    listing = [os.path.relpath(f, coco_small) for f in sorted(map(str, (coco_small / "images" / "train").iterdir()))]
    held_in = np.array([(k in easy["kept"]) + (k in hard["kept"]) for k in listing])
    assert (counts <= held_in).all()  # an image is trained at most once per epoch whose subset holds it
    # `datareduce report` reads the folder: the manifest, the counts and the images from args.yaml all agree
    r = load_run(trainer.save_dir)
    assert (r.method, r.manifest_file, r.metric, r.notes) == ("ids+adonis", "manifest.json", "map50_95", [])
    assert r.images.keys == listing and r.counts.tolist() == counts.tolist() and r.config["num_train"] == 24
    # say what ran: the start-up line, the kept count, the summary's method, the selector's time for the report
    printed = capfd.readouterr().out + caplog.text  # our print, and Ultralytics' LOGGER
    assert ("datareduce: IDS α=0.5 easy → hard from epoch 1, extractor efficientnet-lite0 at 64 px + ADONIS η=2 "
            "θ=0.05 α=0.3 σ=1 ω=-1 l=512 bins=sturges ρ=4 (seed 0)") in printed
    mosaic = ("datareduce: mosaic is on for the first 1 of 2 epochs (mosaic=1.0, close_mosaic=1): every image is "
              "scored each epoch until it is off; --adonis-eta 2 applies from then on (the last 1)")
    assert printed.count(mosaic) == 1, printed  # the rule of every detection host, said once at setup
    assert f"datareduce: IDS kept 12 (easy) from epoch 0; {hard['num_kept']} (hard) from epoch 1 of 24 training " \
           "images" in printed
    assert of("summary", log)[0]["method"] == "ids+adonis"
    assert all(e["select_time_s"] >= 0 and e["score_time_s"] > 0 for e in (first, second))
    assert selector_overhead_pct(r) is not None


def test_rs2_trains_a_fresh_subset_each_epoch(run, coco_small, caplog):
    """RS2 0.5 on 24 images, 2 epochs: 12 images an epoch, the second epoch the other 12 (every image once)."""
    trainer, log = run(f"data={coco_small}", "name=rs2", "epochs=2", "--reduce", "rs2", "--rs2-fraction", "0.5",
                       "workers=2")
    # Ultralytics loads in the training process on a CPU, whatever workers= says: the trainer tells the user
    assert "datareduce: on cpu Ultralytics loads images in the training process: workers=2 is not used" in caplog.text
    epochs = of("epoch", log)
    assert [e["samples_backprop"] for e in epochs] == [12, 12]
    # 2 batches an epoch accumulate towards nbs=64 images: each epoch still steps (it used to make 0 in epoch 1)
    assert all(e["optimizer_steps"] >= 1 for e in epochs), [e["optimizer_steps"] for e in epochs]
    assert selection_counts(trainer, log).tolist() == [1] * 24
    assert of("run", log)[0]["reduce"] == {"method": "rs2", "seed": 0, "rs2": {"fraction": 0.5}}


def test_infobatch_prunes_and_weights(run, coco_small):
    """InfoBatch r 0.5 on 24 images, 2 epochs, δ 1 (both epochs may prune): epoch 0 has equal scores (nothing
    pruned); epoch 1 prunes half of the images below the mean training loss of epoch 0 and weights the kept ones 2."""
    trainer, log = run(f"data={coco_small}", "name=infobatch", "epochs=2", "--reduce", "infobatch",
                       "--infobatch-delta", "1")
    first, second = of("epoch", log)
    assert (first["pruned_samples"], first["samples_backprop"], first["forward_samples"]) == (0, 24, 24)
    assert second["pruned_samples"] > 0 and second["samples_backprop"] == second["forward_samples"] < 24
    assert second["samples_backprop"] == 24 - second["pruned_samples"] == second["train_samples"]
    assert of("run", log)[0]["reduce"]["method"] == "infobatch" and of("summary", log)[0]["method"] == "infobatch"
    counts = selection_counts(trainer, log)
    assert set(counts.tolist()) == {1, 2} and (counts == 1).sum() == second["pruned_samples"]
    pruner = trainer.infobatch
    assert torch.isfinite(pruner.scores).all() and len(set(pruner.scores.tolist())) > 1  # real training losses
    assert set(pruner.weights.tolist()) == {1.0, 2.0}

    # the weighted criterion on a real batch: all weights 1 give the stock loss; weights w give B·Σ w_i·num_i / Σ s
    from datareduce.integrations.ultralytics import WeightedDetectionLoss
    from ultralytics.utils.torch_utils import unwrap_model

    model = unwrap_model(trainer.model)
    assert model.criterion is trainer.weighted_loss  # training ran through it
    batch = trainer.preprocess_batch(next(iter(trainer.train_loader)))
    with torch.no_grad():
        preds = model(batch["img"])
        stock, stock_items = trainer.weighted_loss.criterion(preds, batch)
        ones = WeightedDetectionLoss(model, lambda b: torch.ones(len(b["im_file"])), None)
        loss, items = ones(preds, batch)
        assert torch.allclose(loss, stock, rtol=1e-5, atol=1e-6) and stock.sum() > 0
        assert all(torch.allclose(items[k], stock_items[k], rtol=1e-5, atol=1e-6) for k in stock_items)
        w = pruner.loss_weights(trainer.image_indices(batch))
        weighted, _ = trainer.weighted_loss(preds, batch)
        numerators, score_sums = trainer.weighted_loss.per_image.terms(preds, batch)
        expected = len(w) * (numerators * w[:, None]).sum(0) / score_sums.sum().clamp(min=1)
        assert torch.allclose(weighted, expected, rtol=1e-5, atol=1e-6)
        if (w != 1).any():
            assert weighted.sum() > stock.sum()


def test_infobatch_resume_restores_the_scores(run, coco_small, tmp_path, monkeypatch):
    class CrashAfterFirstEpoch(yolo_train.DataReduceDetectionTrainer):
        def run_callbacks(self, event):
            super().run_callbacks(event)
            if event == "on_fit_epoch_end":
                crashed.append(self)
                raise Interrupted

    crashed = []
    flags = ("--reduce", "infobatch", "--infobatch-delta", "1")
    monkeypatch.setattr(yolo_train, "DataReduceDetectionTrainer", CrashAfterFirstEpoch)
    with pytest.raises(Interrupted):
        run(f"data={coco_small}", "name=ib-resume", "epochs=2", *flags)
    planned = crashed[0].infobatch.plan(1)  # epoch 1's plan, from the scores of epoch 0's training forwards
    before = np.load(tmp_path / "ib-resume" / "selection_counts.npy")
    monkeypatch.setattr(yolo_train, "DataReduceDetectionTrainer", CrashAfterFirstEpoch.__base__)
    resumed, log = run(f"resume={tmp_path / 'ib-resume' / 'weights' / 'last.pt'}", *flags)
    assert of("resume", log)[0]["selection_state_restored"] is True
    second = of("epoch", log)[1]
    assert second["pruned_samples"] == 24 - len(planned) > 0 and second["samples_backprop"] == len(planned)
    visited = np.zeros(24, dtype=int)
    visited[planned.numpy()] = 1
    assert (selection_counts(resumed, log) == before + visited).all()  # the resumed epoch visited exactly that plan


def test_composer_sb_cuts_active_batches(run, coco_small):
    """Composer-SB, keep 0.5 from progress 0.5 on, every 2nd batch in full: epoch 0 trains all 24 images; epoch 1
    (3 batches of 8) cuts its 1st and 3rd batches to 4 images each."""
    trainer, log = run(f"data={coco_small}", "name=composer", "epochs=2", "--reduce", "composer-sb")
    first, second = of("epoch", log)
    assert (first["samples_scored"], first["samples_backprop"]) == (0, 24)
    assert (second["forward_samples"], second["samples_scored"], second["samples_backprop"]) == (24, 16, 16)
    assert second["samples_selected"] == 16 and second["train_batches"] == 3
    assert of("run", log)[0]["reduce"]["method"] == "composer-sb"
    assert of("summary", log)[0]["method"] == "composer-sb"
    counts = selection_counts(trainer, log)
    assert counts.sum() == 40 and set(counts.tolist()) <= {1, 2}


@pytest.fixture(scope="module")
def adonis_small(coco_small, tmp_path_factory):
    """ADONIS η 2, ρ 4, θ 0.05 on 24 images for 2 epochs (epoch 0 a warm-up on every image), without and with
    --adonis-reuse-train-loss: {False: (trainer, log), True: (trainer, log)}."""
    folder = tmp_path_factory.mktemp("adonis-small")
    flags = (f"data={coco_small}", "epochs=2", "val=False", "--adonis-theta", "0.05", "--adonis-rho", "4",
             "--adonis-eta", "2")
    return {False: train_in(folder, *flags, "name=scored"),
            True: train_in(folder, *flags, "name=reused", "--adonis-reuse-train-loss")}


def test_adonis_on_a_small_set_steps_the_optimizer_every_epoch(adonis_small):
    """ADONIS with rho 4 on 24 images: a few batches an epoch, far from the nbs=64 images Ultralytics accumulates
    before stepping. Every epoch that back-propagates images steps the optimizer at least once (it used to make
    0 steps: the gradients of the epoch, or of the whole run, were never applied)."""
    trainer, log = adonis_small[False]
    epochs = of("epoch", log)
    assert epochs[1]["samples_selected"] < 24  # epoch 1 selects (epoch 0 is the warm-up)
    assert all(e["samples_backprop"] > 0 for e in epochs)
    assert all(e["optimizer_steps"] >= 1 for e in epochs), [(e["train_batches"], e["optimizer_steps"]) for e in epochs]
    assert of("summary", log)[0]["optimizer_steps"] == sum(e["optimizer_steps"] for e in epochs)


def test_adonis_reuses_training_losses(adonis_small):
    """--adonis-reuse-train-loss: the training steps' per-image losses fill the loss cache, so epoch 1 (η 2) scores
    no image where the same run without it scores all 24; the cache holds the training forward's losses."""
    from ultralytics.utils.torch_utils import unwrap_model

    (_, scored_log), (trainer, log) = adonis_small[False], adonis_small[True]
    assert of("run", log)[0]["reduce"]["adonis"]["reuse_train_loss"] is True
    (scored0, scored1), (reused0, reused1) = of("epoch", scored_log), of("epoch", log)
    assert scored0["samples_scored"] == reused0["samples_scored"] == 0  # the warm-up trains all 24, scores none
    assert reused0["samples_backprop"] == 24 and reused1["forward_samples"] == 24
    assert scored1["samples_scored"] == 24 and reused1["samples_scored"] == 0
    assert 0 < reused1["samples_selected"] < 24 and reused1["mean_loss_all"] > 0  # selected on the cached losses
    assert of("summary", log)[0]["samples_scored"] == 0 < of("summary", scored_log)[0]["samples_scored"]

    # the cache: every image has epoch 0's training loss, or epoch 1's if it trained again in epoch 1
    cache = trainer.online.selector.cache
    files = trainer.session.files  # the images the last epoch trained: what it added to the selection counts
    trained_last = torch.from_numpy(np.flatnonzero(files.counts.counts.astype(np.int64) - files.counts_before))
    assert torch.isfinite(cache.loss[:24]).all()
    assert set(cache.epoch[:24].tolist()) <= {0, 1} and (cache.epoch[:24] == 1).nonzero().flatten().tolist() == \
        trained_last.tolist()

    # one more real training step: the losses its forward computed are what the cache then holds
    model = unwrap_model(trainer.model).train()
    assert model.criterion is trainer.weighted_loss
    batch = next(iter(trainer.train_loader.loader))  # 8 raw images of the training loader
    positions = trainer.image_indices(batch)
    scored = trainer.score(batch)  # what a scoring forward of the same images gives (no grad, no state change)
    assert not torch.allclose(cache.get(positions), scored, rtol=1e-3)  # the cache held older losses
    loss, _ = model(trainer.preprocess_batch(dict(batch)))  # the training forward, through the training criterion
    loss.sum().backward()
    trainer.run_callbacks("on_train_batch_end")
    torch.testing.assert_close(cache.get(positions), scored, rtol=1e-4, atol=1e-5)
    assert (cache.epoch[positions] == trainer.epoch).all()


DDP_WORKER = """
import json, sys
from ultralytics.utils import DEFAULT_CFG_DICT
from ultralytics.utils.patches import torch_load

state = torch_load(sys.argv[1], map_location="cpu")  # what Ultralytics' DDP worker script does with the file
cfg = DEFAULT_CFG_DICT.copy()
cfg.update(save_dir="")
trainer = state["trainer"](cfg=cfg, overrides=state["args"], _callbacks=state["callbacks"])
ours = [c.__name__ for cs in trainer.callbacks.values() for c in cs if c.__module__.startswith("datareduce")]
print(json.dumps({"settings": trainer.settings.to_dict(), "callbacks": ours}))
"""


def test_adonis_through_the_python_api(coco_small, tmp_path, monkeypatch):
    """YOLO(...).train(trainer=DataReduceDetectionTrainer.with_settings(...)): the settings travel with the class
    (no sidecar, no environment variable), seeded by Ultralytics' seed=; the file Ultralytics writes for its DDP
    workers rebuilds, in a fresh process, a trainer with the same settings and our callbacks once each."""
    from datareduce.integrations.ultralytics import CALLBACKS, DataReduceDetectionTrainer
    from datareduce.integrations.ultralytics_data import resolve_data_yaml
    from ultralytics import YOLO
    from ultralytics.cfg import parse_key_value_pair
    from ultralytics.utils import dist

    trainer = DataReduceDetectionTrainer.with_settings(adonis_alpha=0.5, adonis_theta=0.05, adonis_omega=-1)
    model = YOLO("yolov5n.yaml")
    model.train(trainer=trainer, data=str(resolve_data_yaml(coco_small, tmp_path)), project=str(tmp_path),
                name="api", seed=3, **dict(map(parse_key_value_pair, TINY)))
    assert "DATAREDUCE_CONFIG" not in os.environ
    settings = model.trainer.settings
    assert (settings.reduce.adonis.alpha, settings.reduce.adonis.seed) == (0.5, 3)
    log = records.read(model.trainer.save_dir / "log.jsonl")
    (epoch,) = of("epoch", log)
    assert epoch["samples_scored"] == 24 and epoch["samples_selected"] <= 12
    assert 0 < epoch["samples_backprop"] == epoch["samples_selected"]  # the last epoch flushes the remainder
    counts = selection_counts(model.trainer, log)
    assert set(counts.tolist()) == {0, 1}  # ADONIS trained some images and skipped others
    assert of("run", log)[0]["reduce"]["adonis"]["alpha"] == 0.5

    monkeypatch.setattr(dist, "USER_CONFIG_DIR", tmp_path)  # where Ultralytics writes its DDP files
    state_file = Path(dist.generate_ddp_file(model.trainer)).with_suffix(".pt")
    env = dict(os.environ, YOLO_CONFIG_DIR=str(tmp_path / "worker-config"))
    done = subprocess.run([sys.executable, "-c", DDP_WORKER, str(state_file)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    worker = json.loads(done.stdout.strip().splitlines()[-1])
    assert worker["settings"] == settings.to_dict() and sorted(worker["callbacks"]) == sorted(CALLBACKS)


class Interrupted(Exception):
    pass


def test_resume_restores_the_selection_state(run, coco_small, tmp_path, monkeypatch):
    class CrashAfterFirstEpoch(yolo_train.DataReduceDetectionTrainer):
        def run_callbacks(self, event):
            super().run_callbacks(event)
            if event == "on_fit_epoch_end":  # after the checkpoint of epoch 0 is written
                crashed.append(self)
                raise Interrupted

    crashed = []
    monkeypatch.setattr(yolo_train, "DataReduceDetectionTrainer", CrashAfterFirstEpoch)
    flags = ("--adonis-theta", "0.05", "--adonis-eta", "2", "--adonis-rho", "4", "--adonis-omega", "-1")  # rho 4: epoch 0 trains a batch
    with pytest.raises(Interrupted):
        run(f"data={coco_small}", "name=resume", "epochs=2", "close_mosaic=2", *flags)
    history = crashed[0].online.selector.history.view().clone()
    before = np.load(tmp_path / "resume" / "selection_counts.npy")
    assert 0 < before.sum() < 24  # epoch 0: ADONIS trained some of the 24 images
    monkeypatch.setattr(yolo_train, "DataReduceDetectionTrainer", CrashAfterFirstEpoch.__base__)
    resumed, log = run(f"resume={tmp_path / 'resume' / 'weights' / 'last.pt'}", *flags)
    assert of("resume", log) == [{"type": "resume", "epoch": 1, "selection_state_restored": True,
                                  "selection_counts_restored": True}]
    assert [r["type"] for r in log].count("run") == 1  # the resumed log keeps the run record, as classify's does
    assert [e["epoch"] for e in of("epoch", log)] == [0, 1]
    assert torch.equal(resumed.online.selector.history.view()[: len(history)], history)  # continued, not reset
    assert of("epoch", log)[1]["samples_scored"] == 0  # every loss of epoch 0 reused (η = 2, mosaic closed)
    after = selection_counts(resumed, log)  # both epochs' back-propagations: epoch 0's survived the resume
    assert (after >= before).all() and after.sum() > before.sum()


def test_resume_honours_a_changed_eta_and_refuses_a_changed_alpha(run, coco_small, tmp_path, monkeypatch, capfd,
                                                                   caplog):
    """The run's data reduction (weights/selection.pt's) against the resumed one's (datareduce.flags.check_resume,
    as on every host): a changed --adonis-alpha is refused in one line before any training; a changed
    --adonis-eta is honoured: printed, in the resume record, and the restored selector re-scores by it."""
    class CrashAfterFirstEpoch(yolo_train.DataReduceDetectionTrainer):
        def run_callbacks(self, event):
            super().run_callbacks(event)
            if event == "on_fit_epoch_end":
                raise Interrupted

    monkeypatch.setattr(yolo_train, "DataReduceDetectionTrainer", CrashAfterFirstEpoch)
    flags = ("--adonis-theta", "0.05", "--adonis-rho", "4", "--adonis-omega", "-1")
    with pytest.raises(Interrupted):
        run(f"data={coco_small}", "name=changed", "epochs=2", "close_mosaic=2", "--adonis-eta", "2", *flags)
    monkeypatch.setattr(yolo_train, "DataReduceDetectionTrainer", CrashAfterFirstEpoch.__base__)
    last = tmp_path / "changed" / "weights" / "last.pt"
    before = (tmp_path / "changed" / "log.jsonl").read_text()
    argv = [*TINY, f"project={tmp_path}", "--cache-dir", str(tmp_path / "cache"), f"resume={last}", *flags]
    assert yolo_train.main([*argv, "--adonis-eta", "2", "--adonis-alpha", "0.5"]) == 2
    err = capfd.readouterr().err.strip().splitlines()[-1]
    assert err == (f"yolo_train.py: error: resume={last}: the run was started with other settings (--adonis-alpha "
                   "0.3 → 0.5); a resumed run continues with its own: give the flags the run was started with, or "
                   "start a new run (another name=) to change them")
    assert (tmp_path / "changed" / "log.jsonl").read_text() == before  # refused before any training
    resumed, log = run(f"resume={last}", "--adonis-eta", "1", *flags)
    assert of("resume", log) == [{"type": "resume", "epoch": 1, "changed": {"--adonis-eta": [2, 1]},
                                  "selection_state_restored": True, "selection_counts_restored": True}]
    assert "datareduce: resumed with --adonis-eta 2 → 1" in capfd.readouterr().out + caplog.text
    assert resumed.online.selector.eta == resumed.online.selector.cache.eta == 1  # not the checkpoint's 2
    second = of("epoch", log)[1]
    assert second["samples_scored"] == second["forward_samples"] > 0  # η = 1 re-scores what η = 2 would reuse


def test_embedded_default_dataset(run):
    trainer, log = run("name=digits", "fraction=0.1")
    assert trainer.data["names"] == {i: str(i) for i in range(10)} and of("epoch", log)[0]["train_samples"] == 32
    counts = selection_counts(trainer, log, images=32)
    r = load_run(trainer.save_dir)  # the report cuts the recorded dataset to the run's fraction too
    assert len(r.images) == 32 and r.counts.tolist() == counts.tolist() and r.method == "full"


def test_coco_json_input(coco128_root, tmp_path):
    coco = ["--coco-json", str(coco128_root / "annotations" / "instances_train.json"), "--cache-dir", str(tmp_path)]
    with pytest.raises(ValueError, match="--coco-images"):
        yolo_train.prepare_data(yolo_train.parse_args(coco), {})
    args = yolo_train.parse_args([*coco, "--coco-images", str(coco128_root / "images" / "train")])
    with pytest.warns(UserWarning, match="validating on the training images"):
        data = yolo_train.prepare_data(args, {})
    assert data.is_file() and len(list((data.parent / "labels" / "train").glob("*.txt"))) == 128


@pytest.mark.parametrize("argv, message", [
    (["--ids-alpha", "1.5"], "--ids-alpha=1.5 is out of range"),
    (["data=/nonexistent/coco.yaml"], "never downloaded"),
    (["--reduce", "rpc"], "not available in trainers/yolo_train.py"),
    (["--reduce", "infobatch", "--ids-alpha", "0.5"], "combining it with IDS is not supported"),
    (["--reduce", "rs2", "--adonis-eta", "2"], "--reduce rs2 and ADONIS both select online"),
    (["epoch=3"], "'epoch' is not a valid YOLO argument"),  # Ultralytics' own checks, before any work
    (["epochs=2.5"], "'epochs=2.5' is of invalid type float"),
])
def test_bad_input_fails_fast(argv, message, coco_small, tmp_path, capsys):
    data = [] if any(a.startswith("data=") for a in argv) else [f"data={coco_small}"]
    assert yolo_train.main([*argv, *data, f"project={tmp_path}", "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and message in err.strip().splitlines()[-1]
    assert err.strip().splitlines()[-1].startswith("yolo_train.py: error: ")


@pytest.mark.parametrize("error, exit_code", [(ValueError("a ValueError from inside"), None),
                                              (TypeError("a TypeError from inside"), None),
                                              (UsageError("a user's mistake"), 2)])
def test_internal_errors_keep_their_traceback(error, exit_code, coco_small, tmp_path, capsys, monkeypatch):
    """Only bad input becomes one line and exit 2: an error injected deep in the data preparation, as a bug
    would raise it, reaches the caller as it is (its traceback printed by Python), unless it is a UsageError."""
    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(yolo_train.yd, "resolve_data_yaml", broken)
    argv = [f"data={coco_small}", f"project={tmp_path}", "--cache-dir", str(tmp_path), *TINY]
    if exit_code is None:
        with pytest.raises(type(error), match=str(error)):
            yolo_train.main(argv)
    else:
        assert yolo_train.main(argv) == exit_code
        assert capsys.readouterr().err.strip() == f"yolo_train.py: error: {error}"


def test_manifest_from_another_dataset_is_refused(coco_small, tmp_path, capsys):
    other = [f"images/train/{i:012d}.jpg" for i in range(24)]
    path = manifest.write(tmp_path / "m.json", manifest.make(other, [manifest.subset(range(12), other)], "ids", {}))
    argv = ["--ids-manifest", str(path), f"data={coco_small}", f"project={tmp_path}", *TINY]
    assert yolo_train.main([*argv, "--cache-dir", str(tmp_path)]) == 2
    assert "manifest was made from another dataset" in capsys.readouterr().err


NO_NETWORK = """
import socket, sys, traceback
def refuse(*args, **kwargs):
    traceback.print_stack()
    sys.stderr.write(f"NETWORK ATTEMPT {args!r}\\n")
    sys.stderr.flush()
    import os; os._exit(97)
socket.socket.connect = socket.socket.connect_ex = socket.create_connection = socket.getaddrinfo = refuse
sys.argv = ["yolo_train.py", *sys.argv[1:]]
sys.path.insert(0, TRAINERS)
import yolo_train
sys.exit(yolo_train.main())
"""


def test_no_network_call_is_attempted(coco_small, tmp_path):
    """A fresh process, no YOLO_* settings in the environment, every socket connect / DNS lookup fatal."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("YOLO_", "DATAREDUCE_"))}
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "cfg"))
    script = NO_NETWORK.replace("TRAINERS", repr(str(REPO / "trainers")))
    argv = [f"data={coco_small}", f"project={tmp_path}", *TINY, "--ids-alpha", "0.5", "--ids-image-size", "64",
            "--adonis-theta", "0.05", "--cache-dir", str(tmp_path / "cache")]
    done = subprocess.run([sys.executable, "-c", script, *argv], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "NETWORK ATTEMPT" not in done.stderr
    assert (tmp_path / "home" / ".cache" / "datareduce" / "ultralytics-config" / "Ultralytics" / "Arial.ttf").is_file()
    assert json.loads((tmp_path / "train" / "log.jsonl").read_text().splitlines()[-1])["type"] == "summary"
