"""What a run selected: per-epoch selection rates, the most and least back-propagated samples, the kept subset,
and for detection the boxes of each class it kept."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from .runs import Run


def backprop_share_per_epoch(run: Run) -> List[Optional[float]]:
    """Samples back-propagated in each epoch over the size of the full training set."""
    n = run.num_samples
    return [e["samples_backprop"] / n if n and e.get("samples_backprop") is not None else None for e in run.epochs]


def keep_fraction_per_epoch(run: Run) -> List[Optional[float]]:
    """The online selection rate: samples kept over samples that went through the forward pass."""
    out = []
    for e in run.epochs:
        if e.get("keep_fraction") is not None:
            out.append(float(e["keep_fraction"]))
        elif e.get("forward_samples") and e.get("samples_backprop") is not None:
            out.append(e["samples_backprop"] / e["forward_samples"])
        else:
            out.append(None)
    return out


def most_least(counts: np.ndarray, k: int, members: Optional[np.ndarray] = None, seed: int = 0):
    """Indices of the ``k`` most and the ``k`` least back-propagated samples (among ``members``); ties are
    broken at random (seeded), so a grid of never-selected samples is not just the first files."""
    idx = np.arange(len(counts)) if members is None else np.asarray(members)
    c = counts[idx]
    tie = np.random.default_rng(seed).random(len(idx))
    most = idx[np.lexsort((tie, -c))][:k]
    least = idx[np.lexsort((tie, c))]
    least = least[~np.isin(least, most)][:k]  # a small class: never the same image in both blocks
    return most, least


def kept_mask(manifest: dict, keys: Sequence[str], subset: int = 0) -> np.ndarray:
    """Boolean mask over the full set: which samples the manifest's ``subset`` keeps."""
    kept = set(manifest["subsets"][subset]["kept"])
    return np.fromiter((str(k) in kept for k in keys), dtype=bool, count=len(keys))


@dataclass
class BoxShare:
    """Per class, the boxes one run kept: ``kept[c]`` boxes of class ``c`` (online selection: box
    back-propagations over the number of epochs, the boxes trained per epoch on average), ``share[c]`` that over
    the class's boxes in the training set (NaN for a class without boxes), ``overall`` the same over all boxes."""

    run: str
    label: str
    kept: np.ndarray
    share: np.ndarray
    overall: float


def box_shares(run: Run) -> List[BoxShare]:
    """What ``run`` kept of each class's boxes: one entry per subset of its manifest (an offline subset keeps the
    boxes of its kept images), else one from its per-image counts (online selection back-propagates an image's
    boxes as often as the image; full training, once per epoch); none for a run that kept every box alike (full
    training) or has no detection images."""
    boxes = run.images.boxes if run.images is not None else None
    if boxes is None:
        return []
    total = boxes.per_class()
    out = []

    def add(label, kept):
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(total > 0, kept / np.maximum(total, 1), np.nan)
        out.append(BoxShare(run.name, label, kept, share, float(kept.sum() / max(total.sum(), 1))))

    if run.manifest is not None:
        subsets = run.manifest["subsets"]
        for s, sub in enumerate(subsets):
            what = sub.get("mode") or run.manifest.get("method")
            when = f" from epoch {sub['from_epoch']}" if len(subsets) > 1 else ""
            add(f"{run.name}: {what} subset{when}", boxes.per_class(kept_mask(run.manifest, run.images.keys, s)))
    elif run.counts is not None and not (run.counts == len(run.epochs)).all():
        add(f"{run.name}: back-propagated, per epoch", boxes.per_class(run.counts) / max(len(run.epochs), 1))
    return out
