"""Real data for benchmarks and tests: the archives in ../shared/data, unpacked once into a cache dir."""
from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("DATAREDUCE_SHARED_DATA", REPO.parent / "shared" / "data"))
CACHE = Path(os.environ.get("DATAREDUCE_TEST_CACHE", Path.home() / ".cache" / "datareduce-test-data"))


def unpack(archive: str, folder: str) -> Path:
    """``CACHE/folder`` unpacked from ``SHARED_DATA/archive`` once (atomically); FileNotFoundError if absent."""
    target = CACHE / folder
    if (target / ".complete").exists():
        return target
    src = SHARED_DATA / archive
    if not src.exists():
        raise FileNotFoundError(f"{src} not found (set DATAREDUCE_SHARED_DATA to the folder holding {archive})")
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = CACHE / f".{folder}.partial-{os.getpid()}"
    with tarfile.open(src) as tar:
        tar.extractall(tmp, filter="data")
    if target.exists():  # another process won the race
        shutil.rmtree(tmp)
    else:
        os.replace(tmp / folder, target)
        tmp.rmdir()
    (target / ".complete").touch()
    return target


def subset_tree(root: Path, name: str, per_class: dict) -> Path:
    """An ImageFolder subset of ``root`` made of symlinks: the first N files of each class for each split."""
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
    if target.exists():
        shutil.rmtree(tmp)
    else:
        os.replace(tmp, target)
    (target / ".complete").touch()
    return target


def cifar10_subset(train_per_class: int, test_per_class: int) -> Path:
    """CIFAR-10 (JPEG, ImageFolder layout) with the first N train and M test images of each class."""
    root = unpack("cifar10-jpeg.tar.gz", "cifar10")
    return subset_tree(root, f"cifar10-{train_per_class}-{test_per_class}",
                       {"train": train_per_class, "test": test_per_class})
