"""A self-contained demonstration on scikit-learn's digits (a real dataset shipped inside a dependency).

IDS picks a representative 50 % of each class; ADONIS, SB and a random-keep control of the same budget then
train a small MLP on it and on the full set. Returns plain data; :mod:`datareduce.cli` prints it.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

from . import ids
from .adonis import AdonisSelector
from .online import OnlineSelection
from .random_keep import RandomKeepSelector
from .selective_backprop import SelectiveBackpropSelector


def digits_split(seed=0):
    """Digits as (train x, train y, test x, test y), a fixed 75/25 split."""
    d = load_digits()
    x = (d.data / 16.0).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(0.75 * len(x))
    return x[order[:cut]], d.target[order[:cut]], x[order[cut:]], d.target[order[cut:]]


def ids_demo(x, y, alpha=0.5):
    """IDS on raw pixels: per class, how many kept, and the distance range of kept versus dropped samples."""
    kept = ids.select(x, y, alpha=alpha, mode="easy")
    rows = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        dist, _ = ids.centroid_distances(x[members].astype(np.float64))
        is_kept = np.isin(members, kept)
        rows.append({"class": int(c), "total": len(members), "kept": int(is_kept.sum()),
                     "kept_max_dist": float(dist[is_kept].max()),
                     "dropped_min_dist": float(dist[~is_kept].min()) if (~is_kept).any() else None})
    return kept, rows


def train(x, y, xt, yt, selector=None, epochs=15, batch=64, seed=0):
    """Train a small MLP; with a selector, through the online loop. Returns accuracy, backprop count, time."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    data = TensorDataset(torch.tensor(x), torch.tensor(y), torch.arange(len(y)))
    loader = DataLoader(data, batch_size=batch, shuffle=True, generator=torch.Generator().manual_seed(seed))

    def score(b):
        with torch.no_grad():
            return F.cross_entropy(model(b[0]), b[1], reduction="none")

    loop = OnlineSelection(selector, score, rho=batch) if selector is not None else None
    backprop, keep_fractions, start = 0, [], time.perf_counter()
    for epoch in range(epochs):
        batches = loop.epoch(loader, epoch, last=epoch == epochs - 1) if loop else loader
        for xb, yb, _ in batches:
            opt.zero_grad()
            F.cross_entropy(model(xb), yb).backward()
            opt.step()
            backprop += len(yb)
        if loop:
            keep_fractions.append(loop.stats.as_record()["keep_fraction"])
    with torch.no_grad():
        acc = (model(torch.tensor(xt)).argmax(1) == torch.tensor(yt)).float().mean().item() * 100
    return {"top1": acc, "samples_backprop": backprop, "time_s": time.perf_counter() - start,
            "keep_fraction_per_epoch": keep_fractions}


def run(epochs=15, seed=0):
    """The whole demo: IDS table, then full / IDS / ADONIS / SB / random-keep control training results."""
    x, y, xt, yt = digits_split(seed)
    kept, rows = ids_demo(x, y)
    results = {"full": train(x, y, xt, yt, epochs=epochs, seed=seed),
               "ids (alpha 0.5)": train(x[kept], y[kept], xt, yt, epochs=epochs, seed=seed),
               "adonis (theta 0.05, alpha 0.3, eta 2)":
                   train(x, y, xt, yt, AdonisSelector(theta=0.05, alpha=0.3, eta=2, seed=seed), epochs, seed=seed),
               "selective backprop (beta 2)":
                   train(x, y, xt, yt, SelectiveBackpropSelector(seed=seed), epochs, seed=seed)}
    share = results["adonis (theta 0.05, alpha 0.3, eta 2)"]["samples_backprop"] / results["full"]["samples_backprop"]
    results[f"random keep {share:.0%} (control)"] = train(x, y, xt, yt, RandomKeepSelector(share, seed), epochs,
                                                          seed=seed)
    return {"ids": {"alpha": 0.5, "kept": len(kept), "total": len(y), "per_class": rows}, "training": results}
