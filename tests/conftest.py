"""Shared fixtures: real data from ../shared/data unpacked once into a cache dir (never the project tree)."""
import os
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DATAREDUCE_SHARED_DATA", REPO.parent / "shared" / "data"))
CACHE = Path(os.environ.get("DATAREDUCE_TEST_CACHE", Path.home() / ".cache" / "datareduce-test-data"))


def _unpacked(archive: str, folder: str) -> Path:
    """Unpack ``archive`` from the shared data dir into the cache once; skip the test when it is absent."""
    target = CACHE / folder
    if (target / ".complete").exists():
        return target
    src = SHARED_DATA / archive
    if not src.exists():
        pytest.skip(f"{src} not found (set DATAREDUCE_SHARED_DATA to the folder holding {archive})")
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = CACHE / f".{folder}.partial-{os.getpid()}"
    with tarfile.open(src) as tar:
        tar.extractall(tmp)
    if target.exists():  # another process won the race
        import shutil
        shutil.rmtree(tmp)
    else:
        os.replace(tmp / folder, target)
        tmp.rmdir()
    (target / ".complete").touch()
    return target


@pytest.fixture(scope="session")
def cifar10_root() -> Path:
    """CIFAR-10 as an ImageFolder tree: <root>/train/<class>/*.jpg, <root>/test/<class>/*.jpg."""
    return _unpacked("cifar10-jpeg.tar.gz", "cifar10")


@pytest.fixture(scope="session")
def coco128_root() -> Path:
    """COCO128: <root>/images/{train,val}, <root>/labels/{train,val}, <root>/data.yaml (path: .)."""
    return _unpacked("coco128.tar.gz", "coco128")


def _subset_tree(root: Path, name: str, per_class: dict) -> Path:
    """An ImageFolder subset of ``root`` (symlinks), the first N files of each class per split."""
    target = CACHE / name
    if (target / ".complete").exists():
        return target
    tmp = CACHE / f".{name}.partial-{os.getpid()}"
    for split, n in per_class.items():
        for cls_dir in sorted((root / split).iterdir()):
            if not cls_dir.is_dir():
                continue
            out = tmp / split / cls_dir.name
            out.mkdir(parents=True, exist_ok=True)
            for f in sorted(cls_dir.iterdir())[:n]:
                (out / f.name).symlink_to(f)
    if not target.exists():
        os.replace(tmp, target)
    (target / ".complete").touch()
    return target


@pytest.fixture(scope="session")
def cifar10_small(cifar10_root) -> Path:
    """CIFAR-10 subset for end-to-end tests: 40 train and 20 test images per class (400 / 200)."""
    return _subset_tree(cifar10_root, "cifar10-small", {"train": 40, "test": 20})
