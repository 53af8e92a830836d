"""Pieces of the YOLO trainer: batch slicing for the accumulator, state-free scoring, loader bound, settings bound
to the class, the Ultralytics methods it overrides."""
import inspect
import json
import pickle

import pytest
import torch

from datareduce.integrations.ultralytics_env import ensure_offline

ensure_offline()  # before Ultralytics is imported (importing our glue changes nothing by itself)
from datareduce._validate import UsageError  # noqa: E402
from datareduce.config import AdonisConfig, IDSConfig, ReduceConfig  # noqa: E402
from datareduce.integrations.ultralytics import (PRIVATE_OVERRIDES, DataReduceDetectionTrainer,  # noqa: E402
                                                 ReducedTrainLoader, TrainerSettings, YoloBatchOps,
                                                 batch_statistics_only)
from datareduce.integrations.ultralytics_loss import PerImageDetectionLoss  # noqa: E402
from datareduce.online import OnlineSelection  # noqa: E402
from ultralytics.cfg import get_cfg  # noqa: E402
from ultralytics.data import build_yolo_dataset  # noqa: E402
from ultralytics.data.dataset import YOLODataset  # noqa: E402
from ultralytics.models.yolo.detect import DetectionTrainer  # noqa: E402
from ultralytics.nn.tasks import DetectionModel  # noqa: E402
from ultralytics.utils import YAML  # noqa: E402

from test_config import EVERY_FAMILY  # noqa: E402


@pytest.fixture(scope="module")
def dataset(coco128_root):
    names = YAML.load(coco128_root / "data.yaml")["names"]
    data = {"names": names, "nc": len(names), "channels": 3}
    return build_yolo_dataset(get_cfg(overrides={"imgsz": 128}), str(coco128_root / "images" / "train"), 8, data)


@pytest.fixture(scope="module")
def raw_batch(dataset):
    return YOLODataset.collate_fn([dataset[i] for i in range(6)])


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = DetectionModel("yolov5n.yaml", nc=80, verbose=False)
    m.args = get_cfg()
    return m.train()


def as_float(batch):
    return {**batch, "img": batch["img"].float() / 255}


def test_take_and_cat_keep_each_image_with_its_boxes(raw_batch, model):
    parts = [YoloBatchOps.take(raw_batch, torch.tensor(rows)) for rows in ([4, 1], [0, 2, 3, 5])]
    merged = YoloBatchOps.cat(parts)
    order = [4, 1, 0, 2, 3, 5]
    assert merged["im_file"] == tuple(raw_batch["im_file"][i] for i in order)
    assert torch.equal(merged["img"], raw_batch["img"][order])
    assert YoloBatchOps.size(merged) == 6 and len(merged["cls"]) == len(raw_batch["cls"])
    assert torch.equal(merged["batch_idx"], merged["batch_idx"].sort().values)  # grouped by image, as the loss wants
    loss = PerImageDetectionLoss(model)
    with torch.no_grad():
        whole = loss(model(as_float(raw_batch)["img"]), as_float(raw_batch))
        again = loss(model(as_float(merged)["img"]), as_float(merged))
    torch.testing.assert_close(again, whole[order], rtol=1e-4, atol=1e-4)  # BN batch stats: same set of images


def test_scoring_forward_changes_no_model_state(raw_batch, model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad(), batch_statistics_only(model):
        scored = model(as_float(raw_batch)["img"])
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with torch.no_grad():
        trained = model(as_float(raw_batch)["img"])  # the training forward also normalises with batch statistics
    torch.testing.assert_close(scored["scores"], trained["scores"])
    assert not all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # ...and moves running stats


def test_loader_length_bounds_selected_batches(dataset):
    """Whatever the selector keeps, an epoch never yields more batches than len() promises."""
    loader = [YoloBatchOps.take(YOLODataset.collate_fn([dataset[i] for i in range(j, j + 4)]), torch.arange(4))
              for j in range(0, 20, 4)]
    files = [f for b in loader for f in b["im_file"]]
    position = lambda b: torch.tensor([files.index(f) for f in b["im_file"]])  # noqa: E731
    for alpha, rho in ((1.0, 3), (0.5, 6), (1.0, 8)):
        selector = AdonisConfig(alpha=alpha, theta=0.0, omega=-1).selector()
        online = OnlineSelection(selector, lambda b: torch.rand(YoloBatchOps.size(b)), rho, YoloBatchOps,
                                 lambda b: torch.arange(YoloBatchOps.size(b)))
        booked = []  # what the trainer books with the session: each yielded batch's positions in the listing
        wrapped = ReducedTrainLoader(loader, max(5, online.max_batches(20)), online,
                                     on_batch=lambda b: booked.append(position(b)))
        wrapped.last = True
        batches = list(wrapped)
        sizes = [YoloBatchOps.size(b) for b in batches]
        assert len(sizes) <= len(wrapped) and all(s == rho for s in sizes[:-1])
        assert len(booked) == len(batches)
        trained = torch.cat(booked).tolist() if booked else []
        assert trained == [files.index(f) for b in batches for f in b["im_file"]] and len(set(trained)) == len(trained)


def test_settings_are_bound_to_a_trainer_class():
    """with_settings: flags by their names (the selectors seeded by Ultralytics' seed), or a whole ReduceConfig;
    checked at once; the class itself and other bound classes are left alone."""
    bound = DataReduceDetectionTrainer.with_settings(adonis_eta=3, ids_alpha=0.7, ids_gamma=3, lr_gamma=0.98)
    assert issubclass(bound, DataReduceDetectionTrainer) and bound.__name__ == "DataReduceDetectionTrainer"
    settings = bound.settings_for(seed=4)
    assert (settings.reduce.adonis.eta, settings.reduce.adonis.seed, settings.reduce.ids.alpha) == (3, 4, 0.7)
    assert settings.reduce.ids.gamma == 3 and settings.lr_gamma == 0.98 and settings.reduce.method == "full"
    assert TrainerSettings.from_dict(json.loads(json.dumps(settings.to_dict()))) == settings
    config = ReduceConfig(ids=IDSConfig(alpha=0.7, gamma=3), adonis=AdonisConfig(eta=3, seed=7))
    assert DataReduceDetectionTrainer.with_settings(config).settings_for(seed=0) == TrainerSettings(config)
    every = DataReduceDetectionTrainer.with_settings(EVERY_FAMILY, lr_gamma=0.9)  # to_dict, pickled, from_dict
    assert pickle.loads(pickle.dumps(every.bound_settings)) == TrainerSettings(EVERY_FAMILY, 0.9).to_dict()
    assert every.settings_for(seed=0) == TrainerSettings(EVERY_FAMILY, 0.9)
    assert DataReduceDetectionTrainer.settings_for(seed=4) == TrainerSettings()  # unbound: full data
    assert bound.settings_for(seed=4) == settings  # binding another class changed nothing here
    for kwargs, message in (({"adonis_etaa": 3}, "adonis_etaa"), ({"ids_alpha": 1.5}, "--ids-alpha=1.5"),
                            ({"lr_gamma": 1.5}, "lr_gamma"), ({"config": config, "adonis_eta": 2}, "not both"),
                            ({"reduce": "rs3"}, "rs3")):
        with pytest.raises(UsageError, match=message):
            DataReduceDetectionTrainer.with_settings(**kwargs)


def test_prune_mode_takes_the_runs_epochs_and_trains_the_kept_images_unweighted():
    """adonis_mode="prune" anneals the last 1/8 of Ultralytics' epochs; detection has no per-image loss
    weight, so the preset's rescale is off there, while training losses are reused."""
    bound = DataReduceDetectionTrainer.with_settings(adonis_mode="prune")
    rec = bound.settings_for(seed=0, epochs=16).reduce.adonis
    assert (rec.mode, rec.anneal, rec.rescale, rec.reuse_train_loss, rec.prune_pool) == ("prune", 2, False,
                                                                                        True, "dense")
    assert bound.settings_for(seed=0, epochs=40).reduce.adonis.anneal == 5


def test_overridden_ultralytics_methods_are_listed_and_still_match():
    """Every private BaseTrainer method we override is in PRIVATE_OVERRIDES, and every Ultralytics method we
    override still has the signature we wrote ours for."""
    ours = {name for name, value in vars(DataReduceDetectionTrainer).items() if callable(value)}
    private = {name for name in ours if name.startswith("_") and not name.startswith("__")}
    assert private == set(PRIVATE_OVERRIDES)
    overridden = {name for name in ours if hasattr(DetectionTrainer, name) and name != "__init__"}
    assert private <= overridden and {"build_dataset", "get_dataloader", "resume_training"} <= overridden
    def parameters(method):  # names, kinds and defaults (annotations aside)
        return [(p.name, p.kind, p.default) for p in inspect.signature(method).parameters.values()]

    for name in overridden:
        ours, upstream = getattr(DataReduceDetectionTrainer, name), getattr(DetectionTrainer, name)
        assert parameters(ours) == parameters(upstream), name
