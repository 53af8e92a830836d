"""Classification datasets whose samples also carry their dataset index, and the paper's transforms.

Three sources, tried in this order by :func:`load_datasets`:

* ``root=None``: the **embedded default**, scikit-learn's 8×8 handwritten digits (1,797 images bundled with
  scikit-learn, so nothing is downloaded) upscaled to 32×32 RGB and split 1,437 train / 360 val, stratified
  and seeded.
* CIFAR-10 / CIFAR-100 in torchvision's own on-disk format (``cifar-10-batches-py/`` or
  ``cifar-100-python/`` under ``root``, or ``root`` itself being that folder).
* An ImageFolder tree: ``root/train/<class>/*`` and ``root/val/<class>/*`` (or ``root/test/``).

Every training sample is returned as ``(image, target, index)``: ``index`` is the sample's position in the
*full* training set and stays the same when IDS keeps only a subset (the subset changes ``sample_ids``, the
list of full-set indices still present). The ADONIS loss cache and the per-sample selection counts are keyed
by it. ``sample_keys()`` names every sample of the full set (a path relative to the split folder, or
``"<name>/<index>"``) for the IDS manifest's fingerprint.

Transforms (``preset``): the paper's §4 pipelines. CIFAR: random crop 32 with padding 4, horizontal flip,
random rotation (the paper gives no angle: we use ±15°) and the paper's per-dataset mean/std. ImageNet:
random-resized crop (bilinear), flip, ImageNet mean/std; evaluation resizes and centre-crops. Digits: random
crop with padding 2 (no flip: digits are not mirror-symmetric).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch.utils.data import Dataset
from torchvision import transforms as T
from torchvision.transforms.functional import InterpolationMode

from ._validate import UsageError

__all__ = [
    "MEAN_STD", "PRESETS", "DataSplits", "DigitsDataset", "IndexedImageFolder", "IndexedCIFAR10",
    "IndexedCIFAR100", "load_datasets", "build_transforms", "detect_preset", "DIGITS_SIZE", "BadImageError",
    "load_image", "find_bad_images", "check_image_files",
]

MEAN_STD = {
    # the paper, §4
    "cifar10": ((0.49139968, 0.48215827, 0.44653124), (0.24703233, 0.24348505, 0.26158768)),
    "cifar100": ((0.5070751592371323, 0.48654887331495095, 0.4409178433670343),
                 (0.2673342858792401, 0.2564384629170883, 0.27615047132568404)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # measured on the 1,437 training digits after upscaling (the same value on all three channels)
    "digits": ((0.3054,) * 3, (0.3237,) * 3),
}
MEAN_STD["small"] = MEAN_STD["imagenet"]
PRESETS = ("auto", "cifar10", "cifar100", "imagenet", "small", "digits")
DIGITS_SIZE = 32
CIFAR_ROTATION = 15  # degrees; the paper says "random rotation by angle" without the angle


# ------------------------------------------------------------------------------------------ index plumbing
class IndexedMixin:
    """``__getitem__`` returns ``(image, target, index)``; ``index`` is the full-set position of the sample."""

    sample_ids: np.ndarray
    full_size: int

    def _init_index(self, n: int) -> None:
        self.sample_ids = np.arange(n, dtype=np.int64)
        self.full_size = n

    def __getitem__(self, i):
        image, target = super().__getitem__(i)
        return image, target, int(self.sample_ids[i])


class BadImageError(UsageError):
    """An image file that cannot be read; the one-line message names the file(s).

    Raised in a DataLoader worker, torch re-raises it in the main process as ``BadImageError(text)`` where text is
    "Caught BadImageError in DataLoader worker process 0. Original Traceback …": the worker's own message (the
    last line of that text) is kept, so the error stays one line naming the file."""

    def __init__(self, message: str):
        if "Traceback (most recent call last)" in message:
            last = message.rstrip().splitlines()[-1]
            message = last.partition(": ")[2] or last
        super().__init__(message)


def _decode_errors():
    """What PIL raises for a file it cannot read. ImportError too: once Ultralytics is imported in the same
    process, its patched ``Image.open`` answers an unidentified file by importing a HEIF plugin that may be
    absent."""
    from PIL import Image

    return OSError, SyntaxError, ValueError, EOFError, ImportError, Image.DecompressionBombError


def _reason(path, exc) -> str:
    """Why a file is not a readable image, in a few words."""
    from PIL import UnidentifiedImageError

    try:
        if os.path.getsize(path) == 0:
            return "empty file"
    except OSError as e:
        return e.strerror or str(e)
    if isinstance(exc, (UnidentifiedImageError, ImportError)):
        return "not an image file PIL can read"
    if isinstance(exc, OSError) and str(exc):
        return str(exc)
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


def load_image(path):
    """``path`` decoded as an RGB PIL image (torchvision's loader), or :class:`BadImageError` naming the file."""
    from PIL import Image

    try:
        with open(path, "rb") as f:
            return Image.open(f).convert("RGB")
    except _decode_errors() as e:
        raise BadImageError(f"image {path} cannot be decoded ({_reason(path, e)}): replace or remove this "
                            "file") from None


class IndexedImageFolder(IndexedMixin, torchvision.datasets.ImageFolder):
    """``torchvision.datasets.ImageFolder`` that also yields each sample's dataset index (an unreadable image
    raises :class:`BadImageError` naming it, not PIL's bare error)."""

    def __init__(self, root, transform=None):
        super().__init__(str(root), transform=transform, loader=load_image)
        self._init_index(len(self.samples))

    def drop_samples(self, paths) -> None:
        """Leave the files ``paths`` out of the dataset (before any subset is applied): the full set shrinks."""
        drop = set(map(str, paths))
        self.samples = [s for s in self.samples if s[0] not in drop]
        self.imgs = self.samples
        self.targets = [t for _, t in self.samples]
        self._init_index(len(self.samples))

    def sample_keys(self) -> List[str]:
        """Path of every sample relative to the split folder (``class/file``), in full-set order."""
        full = getattr(self, "_datareduce_full", None)
        samples = full["samples"] if full else self.samples
        root = Path(self.root)
        return [Path(p).relative_to(root).as_posix() for p, _ in samples]


class _IndexedCIFAR(IndexedMixin):
    def __init__(self, root, train: bool, transform=None):
        super().__init__(str(root), train=train, transform=transform, download=False)
        self._init_index(len(self.data))

    def sample_keys(self) -> List[str]:
        split = "train" if self.train else "test"
        return [f"{self.base_folder}/{split}/{i}" for i in range(self.full_size)]


class IndexedCIFAR10(_IndexedCIFAR, torchvision.datasets.CIFAR10):
    """CIFAR-10 from torchvision's on-disk format (never downloaded), yielding dataset indices."""


class IndexedCIFAR100(_IndexedCIFAR, torchvision.datasets.CIFAR100):
    """CIFAR-100 from torchvision's on-disk format (never downloaded), yielding dataset indices."""


class DigitsDataset(IndexedMixin, Dataset):
    """scikit-learn's digits, upscaled to ``size``×``size`` RGB tensors in [0, 1]; ``train`` picks the split.

    The split is stratified and seeded (80 % / 20 %: 1,437 / 360 images), so it is the same everywhere.
    """

    def __init__(self, train: bool = True, transform=None, size: int = DIGITS_SIZE):
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        positions = np.arange(len(digits.target))
        tr, va = train_test_split(positions, test_size=0.2, stratify=digits.target, random_state=0)
        keep = np.sort(tr if train else va)
        images = torch.from_numpy(digits.images[keep]).float().div_(16.0).unsqueeze(1)
        self.data = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False).clamp_(0, 1)
        self.targets = [int(t) for t in digits.target[keep]]
        self.classes = [str(c) for c in range(10)]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.transform = transform
        self.train = train
        self._source_positions = keep
        self._init_index(len(self.targets))

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        image = self.data[i].expand(3, -1, -1)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[i], int(self.sample_ids[i])

    def sample_keys(self) -> List[str]:
        full = getattr(self, "_datareduce_full", None)
        positions = self._source_positions if full is None else full["_source_positions"]
        return [f"sklearn-digits/{int(p)}" for p in positions]


# ----------------------------------------------------------------------------------------------- transforms
def build_transforms(preset: str, train_crop_size: int = 224, val_resize_size: int = 256,
                     val_crop_size: int = 224, interpolation: str = "bilinear",
                     auto_augment: Optional[str] = None, random_erase: float = 0.0,
                     ra_magnitude: int = 9, augmix_severity: int = 3, image_size: Optional[int] = None):
    """(train transform, eval transform) for ``preset``; the ImageNet sizes apply to ``imagenet`` only.

    ``image_size`` is the side of the (square) images for ``small`` (random crop with padding size/8).
    ``auto_augment``: ``ra``, ``ta_wide``, ``augmix`` or an AutoAugment policy name (``imagenet``,
    ``cifar10``, ``svhn``), as in the torchvision reference; ``random_erase`` is a probability.
    """
    if preset not in PRESETS or preset == "auto":
        raise UsageError(f"unknown transform preset {preset!r}: choose one of {', '.join(PRESETS[1:])}")
    mean, std = MEAN_STD[preset]
    interp = InterpolationMode(interpolation)
    if preset == "digits":
        train = [T.RandomCrop(DIGITS_SIZE, padding=2)]
        evaluation = []
        to_tensor = []  # the digits are tensors already
    elif preset in ("cifar10", "cifar100"):
        train = [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.RandomRotation(CIFAR_ROTATION)]
        evaluation = []
        to_tensor = [T.ToTensor()]
    elif preset == "small":
        size = image_size or 32
        train = [T.Resize((size, size), interpolation=interp), T.RandomCrop(size, padding=max(1, size // 8)),
                 T.RandomHorizontalFlip()]
        evaluation = [T.Resize((size, size), interpolation=interp)]
        to_tensor = [T.ToTensor()]
    else:  # imagenet
        train = [T.RandomResizedCrop(train_crop_size, interpolation=interp), T.RandomHorizontalFlip()]
        evaluation = [T.Resize(val_resize_size, interpolation=interp), T.CenterCrop(val_crop_size)]
        to_tensor = [T.ToTensor()]
    if auto_augment:
        train.append(_auto_augment(auto_augment, interp, ra_magnitude, augmix_severity, tensor=not to_tensor))
    tail = [T.Normalize(mean, std)]
    erase = [T.RandomErasing(p=random_erase)] if random_erase > 0 else []
    return T.Compose(train + to_tensor + tail + erase), T.Compose(evaluation + to_tensor + tail)


def _auto_augment(name: str, interp, magnitude: int, severity: int, tensor: bool):
    if name == "ra":
        aug = T.RandAugment(interpolation=interp, magnitude=magnitude)
    elif name == "ta_wide":
        aug = T.TrivialAugmentWide(interpolation=interp)
    elif name == "augmix":
        aug = T.AugMix(interpolation=interp, severity=severity)
    else:
        try:
            policy = T.AutoAugmentPolicy(name)
        except ValueError:
            raise UsageError(f"unknown --auto-augment policy {name!r}: choose ra, ta_wide, augmix, imagenet, "
                             "cifar10 or svhn") from None
        aug = T.AutoAugment(policy=policy, interpolation=interp)
    if tensor:  # the auto-augment ops want uint8 tensors
        return T.Compose([T.ConvertImageDtype(torch.uint8), aug, T.ConvertImageDtype(torch.float32)])
    return aug


# ---------------------------------------------------------------------------------------------- discovery
@dataclass
class DataSplits:
    """What :func:`load_datasets` found: the two datasets and how they were recognised."""

    train: Dataset
    val: Dataset
    kind: str  # "digits", "cifar10", "cifar100" or "imagefolder"
    preset: str  # the transform preset in use
    root: Optional[Path]
    val_split: Optional[str]  # "val" or "test" for ImageFolder trees
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (path, reason) left out by skip_bad_images

    @property
    def num_classes(self) -> int:
        return len(self.train.classes)


def _cifar_root(root: Path) -> Optional[Tuple[str, Path]]:
    for kind, folder, probe in (("cifar10", "cifar-10-batches-py", "data_batch_1"),
                                ("cifar100", "cifar-100-python", "train")):
        if (root / folder / probe).is_file():
            return kind, root
        if root.name == folder and (root / probe).is_file():
            return kind, root.parent
    return None


JPEG_TAIL = 64  # bytes at the end of a JPEG searched for its end-of-image marker


def _image_problem(path) -> Optional[str]:
    """Why ``path`` is not a readable image, or None. A header check, not a decode: PIL opens the file and
    verifies it (PNG: every chunk's CRC, so a cut PNG is caught); a JPEG whose last bytes hold no end-of-image
    marker (cut after its header, or followed by trailing bytes) is decoded to tell which."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            fmt = im.format
            im.verify()
        if fmt == "JPEG":
            with open(path, "rb") as f:
                f.seek(max(os.fstat(f.fileno()).st_size - JPEG_TAIL, 0))
                ended = b"\xff\xd9" in f.read()
            if not ended:
                with Image.open(path) as im:
                    im.load()
    except _decode_errors() as e:
        return _reason(path, e)
    return None


def find_bad_images(paths: Sequence[str], threads: Optional[int] = None) -> List[Tuple[str, str]]:
    """``(path, reason)`` of every file of ``paths`` that is not a readable image (see :func:`_image_problem`).

    Cost: one open and header read per file (PNG: the whole file is read, not decoded); about 0.05-0.1 ms an image
    on a local disk, so a minute or two for a million, spread over ``threads`` (default: 2 per CPU, at most 16)
    since most of it is waiting on the file system."""
    from concurrent.futures import ThreadPoolExecutor

    paths = list(paths)
    chunks = [paths[i:i + 512] for i in range(0, len(paths), 512)]

    def check(chunk):
        return [(p, why) for p in chunk for why in [_image_problem(p)] if why is not None]

    threads = threads or min(16, 2 * (os.cpu_count() or 1))
    if len(chunks) <= 1 or threads <= 1:
        return [bad for chunk in chunks for bad in check(chunk)]
    with ThreadPoolExecutor(threads) as pool:
        return [bad for found in pool.map(check, chunks) for bad in found]


def check_image_files(datasets: Sequence[IndexedImageFolder], skip: bool = False) -> List[Tuple[str, str]]:
    """Check every image file of ``datasets`` before training reads them (:func:`find_bad_images`; under
    torch.distributed each rank checks its share). Bad files raise one :class:`BadImageError` naming them, or
    with ``skip`` are left out of their dataset; returns the ``(path, reason)`` left out."""
    from .distributed import gather_objects, rank, world_size

    paths = [p for d in datasets for p, _ in d.samples]
    bad = sorted(b for part in gather_objects(find_bad_images(paths[rank()::world_size()])) for b in part)
    if not bad:
        return []
    if not skip:
        shown = "; ".join(f"{p} ({why})" for p, why in bad[:3]) + (f"; … {len(bad) - 3} more" if len(bad) > 3 else "")
        raise BadImageError(f"{len(bad)} unreadable image(s) of {len(paths)}: {shown}; replace or remove them, or "
                            "pass --skip-bad-images to leave them out")
    for d in datasets:
        d.drop_samples(p for p, _ in bad)
        if not d.samples:
            raise BadImageError(f"{d.root}: no readable image left after --skip-bad-images ({len(bad)} unreadable)")
    return bad


def skipped_message(skipped: Sequence[Tuple[str, str]], total: int) -> str:
    """The warning a run that left unreadable images out prints (first three named)."""
    shown = "; ".join(f"{p} ({why})" for p, why in skipped[:3]) + ("; …" if len(skipped) > 3 else "")
    return f"--skip-bad-images: left out {len(skipped)} unreadable image(s) of {total}: {shown}"


def _first_image_size(folder: Path) -> Optional[Tuple[int, int]]:
    from PIL import Image

    exts = set(torchvision.datasets.folder.IMG_EXTENSIONS)
    for cls in sorted(p for p in folder.iterdir() if p.is_dir()):
        for f in sorted(cls.iterdir()):
            if f.suffix.lower() in exts:
                with Image.open(f) as im:
                    return im.size
    return None


def detect_preset(kind: str, num_classes: int, image_size: Optional[Tuple[int, int]]) -> str:
    """The transform preset for a dataset: CIFAR by format, or by 32×32 images with 10/100 classes;
    other images up to 64 px are ``small``; anything larger is ``imagenet``."""
    if kind in ("digits", "cifar10", "cifar100"):
        return kind
    if image_size is not None and image_size == (32, 32) and num_classes in (10, 100):
        return "cifar10" if num_classes == 10 else "cifar100"
    if image_size is not None and max(image_size) <= 64:
        return "small"
    return "imagenet"


def load_datasets(root=None, preset: str = "auto", check_images: bool = False, skip_bad_images: bool = False,
                  **transform_kwargs) -> DataSplits:
    """Find and build the train and validation datasets under ``root`` (see the module docstring).

    Raises ``FileNotFoundError`` naming what was looked for when ``root`` holds none of the known layouts.
    ``check_images`` (ImageFolder trees): every image file is checked first (:func:`check_image_files`); an
    unreadable one raises :class:`BadImageError`, or with ``skip_bad_images`` is left out (``DataSplits.skipped``).
    ``transform_kwargs`` go to :func:`build_transforms`.
    """
    if preset not in PRESETS:
        raise UsageError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    if root is None:
        chosen = "digits" if preset == "auto" else preset
        tr, ev = build_transforms(chosen, **transform_kwargs)
        return DataSplits(DigitsDataset(True, tr), DigitsDataset(False, ev), "digits", chosen, None, None)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"data path {root} does not exist or is not a folder")
    cifar = _cifar_root(root)
    if cifar is not None:
        kind, base = cifar
        chosen = kind if preset == "auto" else preset
        tr, ev = build_transforms(chosen, **transform_kwargs)
        cls = IndexedCIFAR10 if kind == "cifar10" else IndexedCIFAR100
        try:
            train, val = cls(base, True, tr), cls(base, False, ev)
        except RuntimeError as exc:  # torchvision's checksum test failed
            raise FileNotFoundError(f"{base / cls.base_folder} is incomplete or corrupted ({exc}); "
                                    "nothing is downloaded: copy the complete dataset there") from None
        return DataSplits(train, val, kind, chosen, base, "test")
    train_dir = root / "train"
    val_dir = next((root / s for s in ("val", "test") if (root / s).is_dir()), None)
    if not train_dir.is_dir() or val_dir is None:
        raise FileNotFoundError(
            f"no dataset found under {root}: expected an ImageFolder tree ({root}/train/<class>/… and "
            f"{root}/val/<class>/… or {root}/test/<class>/…) or CIFAR in torchvision's format "
            f"({root}/cifar-10-batches-py or {root}/cifar-100-python)")
    train = IndexedImageFolder(train_dir)  # the listing; the transforms follow from the first image's size
    val = IndexedImageFolder(val_dir)
    if val.classes != train.classes:
        raise UsageError(f"{val_dir} has other classes than {train_dir}: "
                         f"{sorted(set(val.classes) ^ set(train.classes))[:5]} …")
    skipped = check_image_files([train, val], skip=skip_bad_images) if check_images else []
    if check_images:
        from PIL import Image

        with Image.open(train.samples[0][0]) as im:
            size = im.size
    else:
        size = _first_image_size(train_dir)
    classes = [p for p in train_dir.iterdir() if p.is_dir()]
    chosen = detect_preset("imagefolder", len(classes), size) if preset == "auto" else preset
    if chosen == "small":
        transform_kwargs.setdefault("image_size", max(size) if size else 32)
    train.transform, val.transform = build_transforms(chosen, **transform_kwargs)
    return DataSplits(train, val, "imagefolder", chosen, root, val_dir.name, skipped)


def eval_view(dataset: Dataset, eval_transform) -> Dataset:
    """A shallow copy of ``dataset`` with ``eval_transform`` (no augmentation), e.g. for embedding (IDS)."""
    import copy

    view = copy.copy(dataset)
    view.transform = eval_transform
    return view


def labels_of(dataset) -> np.ndarray:
    """Class index of every sample currently in ``dataset``."""
    return np.asarray(dataset.targets, dtype=np.int64)


def class_names(dataset) -> Sequence[str]:
    return list(dataset.classes)
