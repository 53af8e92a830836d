"""datareduce.datasets: the embedded digits, ImageFolder trees, CIFAR's on-disk format, transforms, bad paths."""
import pickle

import numpy as np
import pytest
import torch
import torchvision

from datareduce.datasets import (MEAN_STD, DigitsDataset, build_transforms, detect_preset, load_datasets)


def test_embedded_digits_default():
    s = load_datasets(None)
    assert s.kind == "digits" and s.preset == "digits" and s.root is None
    assert (len(s.train), len(s.val), s.num_classes) == (1437, 360, 10)
    image, target, index = s.train[7]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert isinstance(target, int) and index == 7
    # the split is fixed: same samples on every machine, disjoint train / val
    again = DigitsDataset(True)
    assert torch.equal(again.data, s.train.data)
    assert not set(s.train._source_positions) & set(s.val._source_positions)
    keys = s.train.sample_keys()
    assert len(keys) == 1437 and len(set(keys)) == 1437


def test_digits_normalisation_matches_the_data():
    d = DigitsDataset(True)
    mean, std = MEAN_STD["digits"]
    assert abs(float(d.data.mean()) - mean[0]) < 1e-3
    assert abs(float(d.data.std()) - std[0]) < 1e-3


def test_imagefolder_tree(cifar10_small):
    s = load_datasets(cifar10_small)
    assert s.kind == "imagefolder" and s.val_split == "test"
    assert s.preset == "cifar10"  # 32x32 images, 10 classes
    assert (len(s.train), len(s.val), s.num_classes) == (400, 200, 10)
    image, target, index = s.train[123]
    assert image.shape == (3, 32, 32) and index == 123 and target == s.train.targets[123]
    keys = s.train.sample_keys()
    assert keys[0].startswith("airplane/") and len(set(keys)) == 400


def test_imagefolder_val_preferred_over_test(tmp_path, cifar10_small):
    for split, src in (("train", "train"), ("val", "test")):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            for f in sorted((cifar10_small / src / "cat").iterdir())[:3]:
                (tmp_path / split / cls / f.name).symlink_to(f)
    s = load_datasets(tmp_path)
    assert s.val_split == "val" and s.num_classes == 2
    assert s.preset == "small"  # 32x32 but not 10/100 classes


def _fake_cifar(root, n_train=20, n_test=10):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in [(f"data_batch_{i}", n_train // 5) for i in range(1, 6)] + [("test_batch", n_test)]:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 255, (n, 3072), dtype=np.uint8),
                         "labels": [int(x) for x in rng.integers(0, 10, n)]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    return folder


def test_cifar_on_disk_format(tmp_path, monkeypatch):
    _fake_cifar(tmp_path)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    for root in (tmp_path, tmp_path / "cifar-10-batches-py"):  # the parent or the folder itself
        s = load_datasets(root)
        assert s.kind == "cifar10" and s.preset == "cifar10"
        assert (len(s.train), len(s.val), s.num_classes) == (20, 10, 10)
        image, target, index = s.train[3]
        assert image.shape == (3, 32, 32) and index == 3
        assert s.train.sample_keys()[3] == "cifar-10-batches-py/train/3"


def test_corrupt_cifar_is_a_clear_error(tmp_path):
    _fake_cifar(tmp_path)  # checksums do not match the real files
    with pytest.raises(FileNotFoundError, match="incomplete or corrupted"):
        load_datasets(tmp_path)


def test_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_datasets(tmp_path / "nope")
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no dataset found.*val"):
        load_datasets(tmp_path)


def test_transforms_per_preset():
    from PIL import Image

    img = Image.fromarray(np.full((32, 32, 3), 128, dtype=np.uint8))
    for preset in ("cifar10", "cifar100"):
        train, evaluation = build_transforms(preset)
        names = [type(t).__name__ for t in train.transforms]
        assert names[:3] == ["RandomCrop", "RandomHorizontalFlip", "RandomRotation"]
        assert train.transforms[0].padding == 4
        norm = evaluation.transforms[-1]
        assert tuple(norm.mean) == MEAN_STD[preset][0]
        assert evaluation(img).shape == (3, 32, 32)
    train, evaluation = build_transforms("imagenet", train_crop_size=64, val_resize_size=72, val_crop_size=64)
    assert type(train.transforms[0]).__name__ == "RandomResizedCrop"
    assert train(img).shape == evaluation(img).shape == (3, 64, 64)
    train, _ = build_transforms("digits", auto_augment="ta_wide", random_erase=0.5)
    assert train(torch.rand(3, 32, 32)).shape == (3, 32, 32)
    with pytest.raises(ValueError, match="auto-augment"):
        build_transforms("cifar10", auto_augment="bogus")


def test_detect_preset():
    assert detect_preset("imagefolder", 100, (32, 32)) == "cifar100"
    assert detect_preset("imagefolder", 10, (32, 32)) == "cifar10"
    assert detect_preset("imagefolder", 3, (48, 48)) == "small"
    assert detect_preset("imagefolder", 1000, (500, 375)) == "imagenet"
