"""The training images of a run: a classification dataset or a YOLO data YAML's listing, in dataset-index order."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np

from .. import manifest as manifest_mod
from .._validate import UsageError
from .boxes import Boxes, load_boxes


class Images:
    """The full training set of a run, in dataset-index order: sample ids, labels, class names, pixels.

    Built from a classification dataset of :mod:`datareduce.datasets` (:meth:`from_dataset`) or from a list of
    image files (:meth:`from_files`, detection: one group, no classes; with ``box_names``, the data YAML's class
    names, :attr:`boxes` reads each image's YOLO labels on first use)."""

    def __init__(self, keys, labels, class_names, source: str, files=None, dataset=None, cache_suffix: str = "",
                 box_names=None):
        self.keys = [str(k) for k in keys]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = [str(c) for c in class_names]
        self.source = source
        self.files = files
        self.dataset = dataset
        self.cache_suffix = cache_suffix  # what the trainer appends to the listing fingerprint in the embedding cache
        self.box_names = box_names  # detection: the data YAML's ``names`` (None: images without boxes)
        self._boxes = None

    @classmethod
    def from_dataset(cls, dataset, source: str) -> "Images":
        root = getattr(dataset, "root", None) or None
        files = [p for p, _ in dataset.samples] if hasattr(dataset, "samples") else None
        return cls(dataset.sample_keys(), dataset.targets, dataset.classes, source, files, dataset,
                   cache_suffix="|" + (str(root) if root else ""))

    @classmethod
    def from_files(cls, files, root, source: str, box_names=None) -> "Images":
        keys = [os.path.relpath(os.path.abspath(f), root) for f in files]
        return cls(keys, np.zeros(len(files), dtype=np.int64), ["all images"], source, list(files),
                   box_names=box_names)

    @property
    def boxes(self) -> Optional[Boxes]:
        """Detection images: every image's boxes from its YOLO label file (read once); None otherwise."""
        if self._boxes is None and self.box_names is not None and self.files is not None:
            self._boxes = load_boxes(self.files, self.box_names)
        return self._boxes

    def __len__(self) -> int:
        return len(self.keys)

    def image(self, i: int):
        """Sample ``i`` as an RGB PIL image."""
        from PIL import Image

        if self.files is not None:
            with Image.open(self.files[i]) as im:
                return im.convert("RGB")
        data = self.dataset.data[i]
        if hasattr(data, "numpy"):  # digits: a (1, H, W) float tensor in [0, 1]
            arr = (data[0].numpy() * 255).round().clip(0, 255).astype(np.uint8)
            return Image.fromarray(arr).convert("RGB")
        return Image.fromarray(np.asarray(data)).convert("RGB")

    def embed_inputs(self):
        """What :func:`datareduce.embed.embed` takes: file paths, or PIL images on demand."""
        return list(self.files) if self.files is not None else _LazyImages(self)


class _LazyImages:
    def __init__(self, images: Images):
        self.images = images

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images.image(i)


def open_images(data_path: Optional[str]) -> Images:
    """The training set at ``data_path`` (None: the embedded digits), opened as the classification trainer does."""
    from ..datasets import DigitsDataset, IndexedImageFolder, load_datasets

    if data_path is None:
        return Images.from_dataset(DigitsDataset(train=True), "embedded digits (scikit-learn)")
    try:
        return Images.from_dataset(load_datasets(data_path).train, str(data_path))
    except FileNotFoundError:
        root = Path(data_path).expanduser()
        folder = root / "train" if (root / "train").is_dir() else root
        if not folder.is_dir():
            raise
        try:
            return Images.from_dataset(IndexedImageFolder(folder), str(folder))
        except (FileNotFoundError, RuntimeError) as e:
            raise FileNotFoundError(f"no image dataset under {data_path}: {e}") from None


IMAGE_SUFFIXES = {".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm", ".heic"}


def _read_data_yaml(data_yaml: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise FileNotFoundError(f"cannot read the data YAML {data_yaml}: {e}") from None
    if not isinstance(data, dict) or "train" not in data:
        raise FileNotFoundError(f"{data_yaml} is not a YOLO data YAML (no 'train' entry)")
    return data


def _detection_candidates(data_yaml: Path, data: dict):
    """(root, image files) pairs a YOLO data YAML may mean: its ``train`` images (a folder, a list of folders or
    a .txt list), relative to each plausible dataset root (``path`` as given, relative to the YAML, the YAML's
    folder). The caller keeps the one whose listing matches the manifest's fingerprint."""
    here = data_yaml.parent
    roots = []
    for r in ([Path(str(data["path"])).expanduser()] if data.get("path") else []):
        roots += [r] if r.is_absolute() else [here / r]
    roots.append(here)
    train = data["train"] if isinstance(data["train"], list) else [data["train"]]
    out = []
    for root in roots:
        files = []
        for t in train:
            p = Path(str(t)).expanduser()
            p = p if p.is_absolute() else root / p
            if p.is_dir():
                files += [str(f) for f in p.rglob("*.*") if f.suffix.lower() in IMAGE_SUFFIXES]
            elif p.is_file() and p.suffix == ".txt":
                for line in p.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        f = Path(line.strip())
                        files.append(str(f if f.is_absolute() else p.parent / f))
        if files:
            out.append((root.resolve(), sorted(files)))
    return out


def train_fraction(files: list, fraction) -> list:
    """The training listing cut as Ultralytics' ``fraction=`` cuts it: a ratio (at least one image), an image
    count (an int), or a per-split list whose first entry is the training split's."""
    if isinstance(fraction, list):
        fraction = fraction[0] if fraction else 1.0
    if fraction is None or isinstance(fraction, bool) or fraction in (0, 1):
        return files
    count = fraction if isinstance(fraction, int) else max(1, round(len(files) * float(fraction)))
    return files[:count]


def open_detection_images(data, manifest: Optional[dict], fraction=1.0) -> Images:
    """The training images of a YOLO data YAML (or a folder holding ``data.yaml``), in the order Ultralytics
    lists them and cut to the run's ``fraction``; with a manifest, the listing whose ids match its fingerprint
    (else an error)."""
    path = Path(str(data)).expanduser()
    if path.is_dir():
        path = path / "data.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"data YAML {path} not found")
    data = _read_data_yaml(path)
    candidates = _detection_candidates(path, data)
    if not candidates:
        raise FileNotFoundError(f"no training images found for {path}")
    for root, files in candidates:
        images = Images.from_files(train_fraction(files, fraction), root, str(path), box_names=data.get("names") or [])
        if manifest is None or manifest_mod.dataset_fingerprint(images.keys) == manifest["dataset"]["fingerprint"]:
            return images
    raise UsageError(f"the training images of {path} do not match the run's manifest (fingerprint "
                     f"{manifest['dataset']['fingerprint'][:20]}…, {manifest['dataset']['num_samples']} images)")
