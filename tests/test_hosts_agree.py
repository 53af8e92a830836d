"""The same flag means the same thing on every host: the model-independent selections (IDS on a random-init
extractor, RPC, RS2) made by two hosts from the same flags keep and visit exactly the same samples.

* classification: trainers/classify.py (in-process, its real ``main``) and the torchvision-reference hooks
  (:mod:`datareduce.integrations.vision_reference`, driven as the patched ``train.py`` calls them);
* detection: the yolov5 ``train.py`` hooks and the Ultralytics trainer's IDS step (its own ``build_dataset`` of
  the training set: the offline subset is chosen there, before any training).

Each host embeds with its own cache folder, so neither reuses the other's features. Both classification hosts
write the same run files, their records in the same schema (:func:`same_run_files`).
"""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import RandomSampler

from datareduce import manifest, records, run_files
from datareduce.integrations import vision_reference as vr
from test_vision_hooks import loader_for, reference_args, small_net, train_set

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
IDS = ["--ids-extractor", "resnet18", "--ids-weights", "random", "--ids-image-size", "32"]
CLASSIFY = ["--model", "resnet20", "-b", "32", "--workers", "0", "--print-freq", "1000"]


@pytest.fixture(scope="module")
def classify():
    spec = importlib.util.spec_from_file_location("classify_script_hosts", REPO / "trainers" / "classify.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return lambda *argv: mod.main(mod.parse_args([str(a) for a in argv]))


# What trainers/classify.py's records hold beyond the vision hooks': the facts and metrics the reference's
# train.py does not hand the hooks.
HOST_CLASSIFY_KEYS = {"run": {"preset", "num_val"}, "epoch": {"lr", "train_loss", "eval_time_s", "top5", "val_loss"},
                      "summary": {"final_top5", "wall_time_s", "output_dir"}}


def same_run_files(classify_dir, hooks_dir):
    """trainers/classify.py's output dir and the vision hooks' (in the reference's output dir's datareduce/) hold
    the same run files, with the same records, of the same keys once each host's own are set aside."""
    hooks_dir = run_files.find(hooks_dir)
    assert hooks_dir.name == run_files.SUBFOLDER
    assert sorted(p.name for p in hooks_dir.iterdir()) == sorted(
        p.name for p in classify_dir.iterdir() if p.name != "checkpoint.pth")
    ours, theirs = (records.read(d / records.LOG_NAME) for d in (classify_dir, hooks_dir))
    assert [r["type"] for r in ours] == [r["type"] for r in theirs]
    for a, b in zip(ours, theirs):
        own = HOST_CLASSIFY_KEYS.get(a["type"], set())
        assert set(a) - own == set(b), (a["type"], sorted((set(a) - own) ^ set(b)))
    assert all(set(run_files.EPOCH_KEYS) <= set(r) for r in theirs if r["type"] == "epoch")
    assert sum(r["samples_backprop"] for r in theirs if r["type"] == "epoch") == np.load(
        hooks_dir / run_files.COUNTS_NAME).sum()


def hooks_epochs(reduce, loader, model, epochs):
    """The patched reference's epoch loop: train on the epoch loader, then ``end_epoch`` with the accuracy."""
    import torch

    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for epoch in epochs:
        for images, targets in reduce.epoch_loader(loader, epoch, model):
            loss = torch.nn.functional.cross_entropy(model(images), targets)
            opt.zero_grad()
            loss.backward()
            opt.step()
        reduce.end_epoch(epoch, 10.0)


def same_selection(m):
    """A manifest less where its host cached the embeddings."""
    m = json.loads(json.dumps(m))
    if m.get("extractor"):
        m["extractor"].pop("cache_dir", None)
    return m


@pytest.mark.parametrize("flags", [["--ids-alpha", "0.5", *IDS], ["--reduce", "rpc", "--reduce-alpha", "0.5"]],
                         ids=["ids", "rpc"])
def test_offline_subset_keeps_the_same_images_through_classify_and_the_vision_hooks(classify, cifar10_small,
                                                                                    tmp_path, flags):
    classify("--data-path", cifar10_small, *CLASSIFY, "--epochs", "1", *flags, "--ids-cache-dir", tmp_path / "e1",
             "--output-dir", tmp_path / "classify")
    dataset = train_set(cifar10_small)
    args = reference_args(tmp_path / "hooks", *flags, "--ids-cache-dir", str(tmp_path / "e2"), epochs=1)
    sampler = RandomSampler(dataset)
    reduce = vr.setup(args, dataset, sampler)
    ours = manifest.read(tmp_path / "classify" / run_files.MANIFEST_NAME)
    theirs = manifest.read(tmp_path / "hooks" / run_files.SUBFOLDER / run_files.MANIFEST_NAME)
    if ours.get("extractor"):  # each host embedded for itself
        assert ours["extractor"]["cache_dir"] != theirs["extractor"]["cache_dir"]
    assert same_selection(ours) == same_selection(theirs)
    kept = ours["subsets"][0]["kept"]
    assert len(kept) == 200 and sorted(p for p, _ in dataset.samples) == sorted(
        str(cifar10_small / "train" / k) for k in kept)  # the hooks train on exactly those images
    hooks_epochs(reduce, loader_for(dataset, args, sampler), small_net(), [0])
    same_run_files(tmp_path / "classify", tmp_path / "hooks")


def test_rs2_visits_the_same_samples_each_epoch_through_classify_and_the_vision_hooks(classify, cifar10_small,
                                                                                      tmp_path):
    # The reference's train.py has no --seed (the hooks then draw with seed 0): classify.py's default, 0.
    flags = ["--reduce", "rs2", "--rs2-fraction", "0.5"]
    out = tmp_path / "classify"
    common = ["--data-path", cifar10_small, *CLASSIFY, "--epochs", "2", *flags, "--seed", "0", "--output-dir", out]
    classify(*common, "--stop-after", "1")  # selection_counts.npy after epoch 0, then after epoch 1
    after_first = np.load(out / "selection_counts.npy")
    classify(*common, "--resume", out / "checkpoint.pth")
    counts = np.load(out / "selection_counts.npy")
    ours = [set(np.flatnonzero(after_first).tolist()), set(np.flatnonzero(counts - after_first).tolist())]

    dataset = train_set(cifar10_small)
    args = reference_args(tmp_path / "hooks", *flags, epochs=2, batch_size=32)
    sampler = RandomSampler(dataset)
    reduce = vr.setup(args, dataset, sampler)
    loader, model = loader_for(dataset, args, sampler), small_net()
    theirs = []
    for epoch in (0, 1):
        epoch_loader = reduce.epoch_loader(loader, epoch, model)
        plan = reduce.plan_sampler.rank_order().tolist()  # what the rebuilt loader's batch sampler draws
        assert sum(len(t) for _, t in epoch_loader) == len(plan) == 200
        reduce.end_epoch(epoch, 10.0)
        theirs.append(set(plan))
    assert [len(s) for s in ours] == [200, 200] and ours[0] | ours[1] == set(range(400))
    assert ours == theirs
    same_run_files(out, tmp_path / "hooks")  # classify.py resumed after epoch 0, the hooks not
    assert np.array_equal(np.load(tmp_path / "hooks" / run_files.SUBFOLDER / run_files.COUNTS_NAME), counts)


def test_ids_keeps_the_same_images_through_yolov5_and_ultralytics(coco128_root, tmp_path):
    pytest.importorskip("ultralytics")
    from datareduce.integrations import yolov5 as y5
    from test_yolov5_hooks import parse

    sys.path.insert(0, str(REPO / "trainers"))
    import yolo_train

    flags = ["--ids-alpha", "0.8", *IDS]
    train = coco128_root / "images" / "train"
    hooks = y5.setup(parse(*flags, "--ids-cache-dir", str(tmp_path / "e1")), tmp_path / "yolov5", device="cpu",
                     root=coco128_root)
    v5_list = Path(hooks.train_path(str(train), 0)).read_text().splitlines()

    # the Ultralytics trainer as trainers/yolo_train.py makes it; its IDS step is its training set's build
    args = yolo_train.parse_args([*flags, "--ids-cache-dir", str(tmp_path / "e2"), f"data={coco128_root / 'data.yaml'}",
                                  "model=yolov5n.yaml", "imgsz=96", "batch=8", "device=cpu", "plots=False",
                                  f"project={tmp_path}", "name=ultralytics", "--cache-dir", str(tmp_path / "cache")])
    overrides = dict(args.overrides, data=str(yolo_train.prepare_data(args, args.overrides)))
    trainer_class = yolo_train.DataReduceDetectionTrainer.with_settings(
        **{name: getattr(args, name) for name in yolo_train.TrainerSettings.flag_names()})
    trainer = trainer_class(overrides=overrides)
    trainer.setup_model()  # the stride the dataset is built with
    dataset = trainer.build_dataset(trainer.data["train"], "train", 8)

    ours = manifest.read(tmp_path / "yolov5" / run_files.SUBFOLDER / run_files.MANIFEST_NAME)
    theirs = manifest.read(trainer.save_dir / run_files.MANIFEST_NAME)
    assert ours["extractor"]["cache_dir"] != theirs["extractor"]["cache_dir"]
    assert same_selection(ours) == same_selection(theirs)
    assert len(v5_list) == 103 and v5_list == sorted(str(coco128_root / k) for k in ours["subsets"][0]["kept"])
    assert sorted(dataset.im_files) == v5_list  # what each host then trains on
