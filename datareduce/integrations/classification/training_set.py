"""The training dataset changed in place: an offline subset kept, and what the full set was.

Offline subsets (IDS / SSP / RPC / RPD, the γ switch) are applied to the dataset's own lists (``samples``,
``targets``, ``data`` …), never through a ``Subset``, so every loader, sampler and index stays valid. The full
lists are remembered on the dataset, so the full set's labels, size and images, and the mapping between
full-set indices and positions, stay available whatever subset is active. :class:`TrainingSet` is the dataset as
the reduction session drives it.
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch


def keep_samples(dataset, positions: Optional[Sequence[int]]) -> None:
    """Keep only the samples at ``positions`` of the *full* training set, in place (None: all again).

    Works on ImageFolder (``samples``, ``targets``, ``imgs``), torchvision CIFAR (``data``, ``targets``) and
    :class:`~datareduce.datasets.DigitsDataset`; ``sample_ids`` records the full-set index of each kept
    sample, so the indices the loader yields (ADONIS cache, selection counts) never change meaning. The full
    lists are remembered on first use, so a later call (the γ switch) can pick any other subset.
    """
    full = getattr(dataset, "_datareduce_full", None)
    if full is None:
        full = {}
        for name in ("samples", "targets", "data", "sample_ids", "_source_positions"):
            if hasattr(dataset, name):
                full[name] = getattr(dataset, name)
        dataset._datareduce_full = full
    if positions is None:
        pos = np.arange(len(full["targets"]))
    else:
        pos = np.asarray(positions, dtype=np.int64)
        if pos.size == 0:
            raise ValueError("a subset must keep at least one sample")
    for name, value in full.items():
        if isinstance(value, list):
            setattr(dataset, name, [value[i] for i in pos])
        elif isinstance(value, torch.Tensor):
            setattr(dataset, name, value[torch.from_numpy(pos)])
        else:
            setattr(dataset, name, value[pos])
    if hasattr(dataset, "imgs") and "samples" in full:
        dataset.imgs = dataset.samples


def full_labels(dataset) -> np.ndarray:
    """Class index of every sample of the *full* training set (whatever subset is active)."""
    full = getattr(dataset, "_datareduce_full", None)
    return np.asarray(full["targets"] if full else dataset.targets, dtype=np.int64)


def full_size(dataset) -> int:
    return len(full_labels(dataset))


class _DigitsPIL:
    """The full digits training set as RGB PIL images (for the feature extractor's own preprocessing)."""

    def __init__(self, data: torch.Tensor):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        from PIL import Image

        arr = (self.data[i, 0].numpy() * 255).round().astype(np.uint8)
        return Image.fromarray(arr).convert("RGB")


class _CifarPIL:
    def __init__(self, data: np.ndarray):
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i):
        from PIL import Image

        return Image.fromarray(self.data[i])


def raw_images(dataset):
    """The full training set as :func:`datareduce.embed.embed` wants it: file paths or PIL images."""
    full = getattr(dataset, "_datareduce_full", None) or {}
    if hasattr(dataset, "samples"):
        return [p for p, _ in full.get("samples", dataset.samples)]
    data = full.get("data", dataset.data)
    if isinstance(data, torch.Tensor):
        return _DigitsPIL(data)
    return _CifarPIL(data)


def sample_ids(dataset) -> np.ndarray:
    """The full-set index of each position of ``dataset`` (identity where no subset is active)."""
    ids = getattr(dataset, "sample_ids", None)
    return np.arange(len(dataset), dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)


def positions_of(dataset, ids: np.ndarray) -> np.ndarray:
    """Positions in ``dataset`` of the full-set indices ``ids`` (the inverse of :func:`sample_ids`)."""
    held = sample_ids(dataset)
    lookup = np.full(int(held.max()) + 1 if len(held) else 0, -1, dtype=np.int64)
    lookup[held] = np.arange(len(held))
    return lookup[ids]


class TrainingSet:
    """The training dataset and its sampler as the reduction session (:class:`datareduce.session.ReductionSession`)
    sees them: the full set's size and labels, offline subsets put in place (:func:`keep_samples`), the size now,
    and the sampler whose visiting order a method sets (None: the host's loop plans nothing)."""

    def __init__(self, dataset, sampler=None):
        self.dataset, self.sampler = dataset, sampler
        self.labels = full_labels(dataset)
        self.num_samples = len(self.labels)
        self.num_classes = len(dataset.classes)

    def use_subset(self, positions) -> None:
        keep_samples(self.dataset, positions)

    def num_train(self) -> int:
        return len(self.dataset)
