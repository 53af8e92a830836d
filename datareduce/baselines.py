"""The offline baselines of the paper's comparison: SSP, random per class (RPC), random per dataset (RPD).

Each returns the kept sample indices, ascending, like :func:`datareduce.ids.select`.
"""
from __future__ import annotations

import math

import numpy as np

from ._validate import check_number
from .ids import check_embeddings, groups


def ssp(embeddings, labels=None, alpha=0.8, clusters=None, seed=0) -> np.ndarray:
    """Self-Supervised Prototypes (Sorscher et al., 2022): K-means over the whole dataset's embeddings, cosine
    distance to the nearest centroid, keep the hardest (most distant) ⌈α·N⌉. ``clusters`` defaults to the
    number of classes (10 without labels)."""
    from sklearn.cluster import KMeans

    check_number("alpha", alpha, low=0, high=1, low_open=True)
    emb, lab = check_embeddings(embeddings, labels)
    k = clusters if clusters is not None else (len(np.unique(lab)) if lab is not None else 10)
    check_number("clusters", k, low=1, high=len(emb), integer=True)
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    km = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(unit)
    centres = km.cluster_centers_ / np.maximum(np.linalg.norm(km.cluster_centers_, axis=1, keepdims=True), 1e-12)
    cos_dist = 1.0 - (unit * centres[km.labels_]).sum(axis=1)
    order = np.argsort(-cos_dist, kind="stable")
    return np.sort(order[: math.ceil(alpha * len(emb))]).astype(np.int64)


def random_per_class(labels, alpha=0.8, seed=0) -> np.ndarray:
    """RPC: a uniform random ⌈α·L⌉ of each class (seeded)."""
    check_number("alpha", alpha, low=0, high=1, low_open=True)
    lab = np.asarray(labels).reshape(-1)
    if lab.size == 0:
        raise ValueError("labels is empty: nothing to select from")
    rng = np.random.default_rng(seed)
    kept = [rng.permutation(members)[: math.ceil(alpha * len(members))] for _, members in groups(lab, len(lab))]
    return np.sort(np.concatenate(kept)).astype(np.int64)


def random_per_dataset(num_samples: int, alpha=0.8, seed=0) -> np.ndarray:
    """RPD: a uniform random ⌈α·N⌉ of the whole dataset regardless of class (seeded)."""
    check_number("alpha", alpha, low=0, high=1, low_open=True)
    check_number("num_samples", num_samples, low=1, integer=True)
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(num_samples)[: math.ceil(alpha * num_samples)]).astype(np.int64)
