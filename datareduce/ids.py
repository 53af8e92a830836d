"""IDS: Intellectual Data Selection (paper §3.2, Algorithm 2) — the offline representative subset.

Samples are embedded once (:mod:`datareduce.embed`); each class gets a centroid (K-means; with one cluster the
class mean), its samples are ranked by Euclidean distance to it, and the first ⌈α·L⌉ are kept plus the
prototype (the sample nearest the centroid), so no class is ever empty. ``labels=None`` treats the whole
dataset as one group: one dataset-wide centroid and prototype, as for detection.
"""
from __future__ import annotations

import math

import numpy as np

from ._validate import UsageError, check_choice, check_number

MODES = ("easy", "hard")


def check_embeddings(embeddings, labels=None):
    """Validate and convert: a non-empty 2-D float array, and labels (if any) of the same length."""
    emb = np.asarray(embeddings)
    if emb.ndim != 2 or emb.shape[0] == 0:
        raise ValueError(f"embeddings must be a non-empty 2-D array (samples × features), got shape {emb.shape}")
    if not np.isfinite(emb).all():
        raise ValueError("embeddings contain NaN or inf values")
    if labels is None:
        return emb.astype(np.float64), None
    lab = np.asarray(labels).reshape(-1)
    if lab.shape[0] != emb.shape[0]:
        raise ValueError(f"embeddings and labels differ in length: {emb.shape[0]} embeddings, {lab.shape[0]} labels")
    return emb.astype(np.float64), lab


def groups(labels, n: int):
    """(label, member indices) per class in sorted label order; one group of everything for ``labels=None``."""
    if labels is None:
        return [(None, np.arange(n))]
    return [(c, np.flatnonzero(labels == c)) for c in np.unique(labels)]


def centroid_distances(points: np.ndarray, prototypes: int = 1, seed: int = 0):
    """Distance of each point to its nearest centroid, and the index of the point nearest each centroid.

    One centroid is the mean (K-means with K=1 converges there in one step); K>1 runs seeded,
    deterministic scikit-learn K-means (the paper's first future-work item).
    """
    if prototypes == 1:
        d2 = ((points - points.mean(axis=0)) ** 2).sum(axis=1, keepdims=True)
    else:
        from sklearn.cluster import KMeans

        km = KMeans(n_clusters=prototypes, n_init=1, random_state=seed).fit(points)
        d2 = km.transform(points) ** 2
    dist = np.sqrt(d2.min(axis=1))
    nearest = np.unique(d2.argmin(axis=0))
    return dist, nearest


def ranked(dist: np.ndarray, mode: str) -> np.ndarray:
    """Positions sorted by distance: ascending for ``easy``, descending for ``hard`` (ties by position)."""
    order = np.argsort(dist, kind="stable")
    return order if mode == "easy" else np.argsort(-dist, kind="stable")


def select(embeddings, labels=None, alpha=0.8, mode="easy", prototypes=1, seed=0) -> np.ndarray:
    """Indices kept by IDS, ascending (Algorithm 2, line 17): per class the first ⌈α·L⌉ by distance plus the
    prototype."""
    check_number("alpha", alpha, low=0, high=1, low_open=True)
    check_choice("mode", mode, MODES)
    check_number("prototypes", prototypes, low=1, integer=True)
    emb, lab = check_embeddings(embeddings, labels)
    kept = []
    for label, members in groups(lab, len(emb)):
        if len(members) < prototypes:
            what = "the dataset" if label is None else f"class {label.item() if hasattr(label, 'item') else label!r}"
            raise UsageError(f"{what} has {len(members)} sample(s), fewer than prototypes={prototypes}")
        dist, nearest = centroid_distances(emb[members], prototypes, seed)
        order = ranked(dist, mode)
        kept.append(members[order[: math.ceil(alpha * len(members))]])
        kept.append(members[nearest])
    return np.unique(np.concatenate(kept)).astype(np.int64)


def mode_for_epoch(epoch: int, gamma=None) -> str:
    """The subset trained in ``epoch``: ``easy`` before γ, ``hard`` from γ on (Appendix C); always easy without γ."""
    return "easy" if gamma is None or epoch < gamma else "hard"
