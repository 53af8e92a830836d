"""What a run selected: per-epoch selection rates, the most and least back-propagated samples, the kept subset,
and for detection the boxes of each class it kept."""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np

from .images import Images
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
class KeptSubset:
    """A subset an offline run trained on, as a mask over the whole training set (``images``): a manifest's
    subset, or the first images of the listing that Ultralytics' ``fraction=`` keeps."""

    what: str
    images: Images
    kept: np.ndarray


def kept_subsets(run: Run) -> List[KeptSubset]:
    """The subsets ``run`` trained on (several with the γ switch); none for a run on the whole set, or whose
    images are not on this machine."""
    if run.images is None:
        return []
    if run.manifest is not None:
        subsets = run.manifest["subsets"]
        out = []
        for s, sub in enumerate(subsets):
            what = f"{sub.get('mode') or run.manifest.get('method')} subset"
            what += f" from epoch {sub['from_epoch']}" if len(subsets) > 1 else ""
            out.append(KeptSubset(what, run.images, kept_mask(run.manifest, run.images.keys, s)))
        return out
    if run.whole_images is not None:  # Ultralytics' fraction=: the first images of the listing
        kept = np.zeros(len(run.whole_images), dtype=bool)
        kept[:len(run.images)] = True
        return [KeptSubset(f"fraction= subset (the first {len(run.images):,} images)", run.whole_images, kept)]
    return []


def whole_set(run: Run) -> Optional[Images]:
    """The whole training set ``run`` selected from (for Ultralytics' ``fraction=``, the uncut listing)."""
    return run.whole_images if run.whole_images is not None else run.images


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
    """What ``run`` kept of each class's boxes: one entry per subset it trained on (an offline subset keeps the
    boxes of its kept images, :func:`kept_subsets`), else one from its per-image counts (online selection
    back-propagates an image's boxes as often as the image; full training, once per epoch); none for a run that
    kept every box alike (full training) or has no detection images."""
    images = whole_set(run)
    boxes = images.boxes if images is not None else None
    if boxes is None:
        return []
    total = boxes.per_class()
    out = []

    def add(label, kept):
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(total > 0, kept / np.maximum(total, 1), np.nan)
        out.append(BoxShare(run.name, f"{run.name}: {label}", kept, share, float(kept.sum() / max(total.sum(), 1))))

    subsets = kept_subsets(run)
    for sub in subsets:
        add(sub.what, boxes.per_class(sub.kept))
    if not subsets and run.counts is not None and not (run.counts == len(run.epochs)).all():
        add("back-propagated, per epoch", boxes.per_class(run.counts) / max(len(run.epochs), 1))
    return out
