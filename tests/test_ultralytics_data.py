"""A YOLODataset restricted to IDS's kept images holds exactly those images, labels and caches."""
import os

import pytest

from datareduce.integrations.ultralytics_env import ensure_offline

ensure_offline()
from ultralytics.cfg import get_cfg  # noqa: E402
from ultralytics.data import build_yolo_dataset  # noqa: E402
from ultralytics.utils import YAML  # noqa: E402

from datareduce.integrations.ultralytics_data import (coco_to_yolo, make_digits_detection,  # noqa: E402
                                                    resolve_data_yaml, restrict_dataset)


def build(root, **overrides):
    cfg = get_cfg(overrides={"imgsz": 128, **overrides})
    names = YAML.load(root / "data.yaml")["names"]
    data = {"names": names, "nc": len(names), "channels": 3}
    return build_yolo_dataset(cfg, str(root / "images" / "train"), 4, data, mode="train")


def test_restricted_dataset_holds_only_kept_images(coco128_root):
    dataset = build(coco128_root)
    full = {f: len(lb["cls"]) for f, lb in zip(dataset.im_files, dataset.labels)}
    keep = sorted(full)[::5]
    restrict_dataset(dataset, [os.path.relpath(p) for p in keep])  # any spelling of the same file matches
    assert sorted(dataset.im_files) == keep and len(dataset) == dataset.ni == len(keep)
    assert [lb["im_file"] for lb in dataset.labels] == dataset.im_files
    assert all(len(lb["cls"]) == full[lb["im_file"]] for lb in dataset.labels)  # labels travelled with images
    assert len(dataset.npy_files) == len(dataset.ims) == len(dataset.im_hw) == dataset.ni
    assert dataset.max_buffer_length == min(dataset.ni, 4 * 8)
    for i in range(12):  # mosaic draws its partner images from the buffer of this dataset only
        assert dataset[i % dataset.ni]["img"].shape[-1] == 128
    assert set(dataset.buffer) <= set(range(dataset.ni))


def test_image_cache_loads_only_kept_images(coco128_root):
    dataset = build(coco128_root)
    keep = dataset.im_files[:6]
    restrict_dataset(dataset, keep, cache="ram")
    assert len(dataset.ims.shapes) == 6 and dataset.cache == "ram"


def test_refusals(coco128_root):
    with pytest.raises(ValueError, match="rect=False"):
        restrict_dataset(build(coco128_root, rect=True), [])
    with pytest.raises(ValueError, match="cache=False"):
        restrict_dataset(build(coco128_root, cache="ram"), [])
    with pytest.raises(ValueError, match="not in the dataset"):
        restrict_dataset(build(coco128_root), [str(coco128_root / "images" / "val" / "nope.jpg")])


def test_resolve_data_yaml(coco128_root, tmp_path):
    out = resolve_data_yaml(coco128_root, tmp_path)
    assert YAML.load(out)["path"] == str(coco128_root.resolve())
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        resolve_data_yaml(tmp_path / "coco.yaml", tmp_path)
    bad = tmp_path / "bad.yaml"
    YAML.save(bad, {"path": str(coco128_root), "train": "images/train", "val": "images/missing", "names": ["a"]})
    with pytest.raises(FileNotFoundError, match="images/missing"):
        resolve_data_yaml(bad, tmp_path)


def read_labels(folder):
    return {f.stem: sorted(tuple(float(v) for v in line.split()) for line in f.read_text().splitlines() if line)
            for f in folder.glob("*.txt")}


def test_coco_json_converts_to_the_shipped_yolo_labels(coco128_root, tmp_path):
    args = coco128_root / "annotations" / "instances_train.json", coco128_root / "images" / "train", tmp_path
    with pytest.warns(UserWarning, match="validating on the training images"):
        data = coco_to_yolo(*args)
        assert coco_to_yolo(*args) == data  # converted once
    cfg = YAML.load(data)
    assert cfg["names"] == YAML.load(coco128_root / "data.yaml")["names"]
    ours, shipped = read_labels(data.parent / "labels" / "train"), read_labels(coco128_root / "labels" / "train")
    assert len(ours) == 128 and sum(map(len, ours.values())) == 929  # crowd boxes skipped
    for stem, boxes in ours.items():  # (the shipped set has no files for its 2 background images)
        assert len(boxes) == len(shipped.get(stem, []))
        for a, b in zip(boxes, shipped.get(stem, [])):
            assert a[0] == b[0] and max(abs(x - y) for x, y in zip(a[1:], b[1:])) < 2e-3


def test_digits_detection_set(tmp_path):
    data = make_digits_detection(tmp_path, train=12, val=4, size=96)
    labels = read_labels(data.parent / "labels" / "train")
    assert len(labels) == 12 and len(list((data.parent / "images" / "val").glob("*.png"))) == 4
    for boxes in labels.values():
        assert 1 <= len(boxes) <= 4
        assert all(0 <= b[0] <= 9 and 0 < b[3] <= 1 / 3 + 1e-6 and 0 < b[1] < 1 for b in boxes)
