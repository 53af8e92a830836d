"""Shared fixtures: real data from ../shared/data unpacked once into a cache dir (never the project tree)."""
from pathlib import Path

import pytest

from bench import data


def _or_skip(fn, *args):
    try:
        return fn(*args)
    except FileNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    """CIFAR-10 as an ImageFolder tree: <root>/train/<class>/*.jpg, <root>/test/<class>/*.jpg."""
    return _or_skip(data.unpack, "cifar10-jpeg.tar.gz", "cifar10")


@pytest.fixture(scope="session")
def coco128_root() -> Path:
    """COCO128: <root>/images/{train,val}, <root>/labels/{train,val}, <root>/data.yaml (path: .)."""
    return _or_skip(data.unpack, "coco128.tar.gz", "coco128")


@pytest.fixture(scope="session")
def cifar10_small(cifar10_root) -> Path:
    """CIFAR-10 subset for end-to-end tests: 40 train and 20 test images per class (400 / 200)."""
    return data.subset_tree(cifar10_root, "cifar10-small", {"train": 40, "test": 20})
