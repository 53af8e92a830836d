"""The per-image detection loss reproduces Ultralytics' batch loss (SPEC §5) on a real model and real COCO128 batch."""
import pytest
import torch

from datareduce.integrations.ultralytics_env import ensure_offline

ensure_offline()
from ultralytics.cfg import get_cfg  # noqa: E402
from ultralytics.data import build_yolo_dataset  # noqa: E402
from ultralytics.data.dataset import YOLODataset  # noqa: E402
from ultralytics.nn.tasks import DetectionModel  # noqa: E402
from ultralytics.utils import YAML  # noqa: E402

from datareduce.integrations.ultralytics_loss import PerImageDetectionLoss  # noqa: E402


@pytest.fixture(scope="module")
def model_and_batch(coco128_root):
    """A randomly initialised yolov5n (train mode, default gains) and 8 augmented COCO128 images at 160 px."""
    torch.manual_seed(0)
    cfg = get_cfg(overrides={"imgsz": 160})
    names = YAML.load(coco128_root / "data.yaml")["names"]
    data = {"names": names, "nc": len(names), "channels": 3}
    dataset = build_yolo_dataset(cfg, str(coco128_root / "images" / "train"), 8, data, mode="train")
    batch = YOLODataset.collate_fn([dataset[i] for i in range(8)])
    batch["img"] = batch["img"].float() / 255
    model = DetectionModel("yolov5n.yaml", nc=len(names), verbose=False)
    model.args = cfg
    return model.train(), batch


def drop_labels(batch, image):
    """The batch with every box of ``image`` removed (an image with no objects)."""
    keep = batch["batch_idx"] != image
    return {**batch, "cls": batch["cls"][keep], "bboxes": batch["bboxes"][keep], "batch_idx": batch["batch_idx"][keep]}


def test_numerators_sum_to_stock_batch_loss(model_and_batch):
    model, batch = model_and_batch
    preds = model(batch["img"])
    stock, _ = model.loss(batch, preds)
    numerators, score_sums = PerImageDetectionLoss(model).terms(preds, batch)
    n = batch["img"].shape[0]
    assert numerators.shape == (n, 3) and score_sums.shape == (n,)
    rebuilt = n * numerators.sum(0) / score_sums.sum().clamp(min=1)
    torch.testing.assert_close(rebuilt, stock, rtol=1e-5, atol=1e-6)


def test_each_image_scores_as_if_alone(model_and_batch):
    """TAL assigns within an image, so an image's loss must not depend on its batch mates."""
    model, batch = model_and_batch
    with torch.no_grad():
        preds = model(batch["img"])
        losses = PerImageDetectionLoss(model)(preds, batch)
        for i in (0, 5):
            alone = {k: v[i:i + 1] for k, v in preds.items() if k != "feats"}
            alone["feats"] = [f[i:i + 1] for f in preds["feats"]]
            keep = batch["batch_idx"] == i
            single = {"cls": batch["cls"][keep], "bboxes": batch["bboxes"][keep],
                      "batch_idx": torch.zeros(int(keep.sum()))}
            torch.testing.assert_close(losses[i], model.loss(single, alone)[0].sum(), rtol=1e-5, atol=1e-6)


def test_image_without_labels_gets_finite_loss(model_and_batch):
    model, batch = model_and_batch
    empty = drop_labels(batch, 3)
    preds = model(empty["img"])
    losses = PerImageDetectionLoss(model)(preds, empty)
    assert torch.isfinite(losses).all() and losses[3] > 0
    numerators, score_sums = PerImageDetectionLoss(model).terms(preds, empty)
    assert score_sums[3] == 0 and numerators[3, 0] == 0 and numerators[3, 2] == 0  # no box / DFL term
    torch.testing.assert_close(8 * numerators.sum(0) / score_sums.sum().clamp(min=1), model.loss(empty, preds)[0])


def test_is_differentiable(model_and_batch):
    model, batch = model_and_batch
    model.zero_grad()
    PerImageDetectionLoss(model)(model(batch["img"]), batch).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
