"""What a run selected: per-epoch selection rates, the most and least back-propagated samples, the kept subset."""
from __future__ import annotations

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
