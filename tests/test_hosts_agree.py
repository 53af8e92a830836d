"""The same flag means the same thing on every host: the model-independent selections (IDS on a random-init
extractor, RPC, RS2) made by two hosts from the same flags keep and visit exactly the same samples.

* classification: trainers/classify.py (in-process, its real ``main``) and the torchvision-reference hooks
  (:mod:`datareduce.integrations.vision_reference`, driven as the patched ``train.py`` calls them);
* detection: the yolov5 ``train.py`` hooks and the Ultralytics trainer's IDS step (its own ``build_dataset`` of
  the training set: the offline subset is chosen there, before any training).

Each host embeds with its own cache folder, so neither reuses the other's features.
"""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from torch.utils.data import RandomSampler

from datareduce import manifest
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
    vr.setup(reference_args(tmp_path / "hooks", *flags, "--ids-cache-dir", str(tmp_path / "e2")), dataset,
             RandomSampler(dataset))
    ours = manifest.read(tmp_path / "classify" / "manifest.json")
    theirs = manifest.read(tmp_path / "hooks" / vr.MANIFEST_NAME)
    if ours.get("extractor"):  # each host embedded for itself
        assert ours["extractor"]["cache_dir"] != theirs["extractor"]["cache_dir"]
    assert same_selection(ours) == same_selection(theirs)
    kept = ours["subsets"][0]["kept"]
    assert len(kept) == 200 and sorted(p for p, _ in dataset.samples) == sorted(
        str(cifar10_small / "train" / k) for k in kept)  # the hooks train on exactly those images


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
        theirs.append(set(plan))
    assert [len(s) for s in ours] == [200, 200] and ours[0] | ours[1] == set(range(400))
    assert ours == theirs


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

    ours = manifest.read(tmp_path / "yolov5" / y5.OUT_DIR / "manifest.json")
    theirs = manifest.read(trainer.save_dir / "manifest.json")
    assert ours["extractor"]["cache_dir"] != theirs["extractor"]["cache_dir"]
    assert same_selection(ours) == same_selection(theirs)
    assert len(v5_list) == 103 and v5_list == sorted(str(coco128_root / k) for k in ours["subsets"][0]["kept"])
    assert sorted(dataset.im_files) == v5_list  # what each host then trains on
