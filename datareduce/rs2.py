"""RS2: repeated sampling of random subsets (Okanovic et al., 2023), the baseline any selection method must beat.

Each epoch trains on a fresh uniformly random ``fraction`` of the training set, drawn without replacement across
epochs until the dataset is exhausted: the epochs walk through one random permutation of the data after
another, ⌈fraction·n⌉ samples at a time, so every sample is seen once before any is seen twice. No scores,
no extra forward: the subset of an epoch is a function of (seed, epoch) alone, so a resumed run draws exactly
the subsets of the uninterrupted one.
"""
from __future__ import annotations

import math

import torch

from ._validate import check_number


class RS2Subsets:
    """The per-epoch random subsets of RS2 without replacement: :meth:`plan` gives an epoch's sample indices."""

    def __init__(self, num_samples: int, fraction: float, seed: int = 0):
        self.num_samples = check_number("num_samples", num_samples, low=1, integer=True)
        self.fraction = check_number("rs2 fraction", fraction, low=0, high=1, low_open=True)
        self.seed = check_number("seed", seed, integer=True)
        self.per_epoch = max(1, math.ceil(self.fraction * self.num_samples))
        self._passes = []

    def _pass(self, k: int) -> torch.Tensor:
        """The ``k``-th random permutation of the data. When an epoch straddles passes ``k−1`` and ``k``, the
        samples it already took from the end of pass ``k−1`` are moved to the end of pass ``k``, so no epoch
        holds a sample twice."""
        for j in range(len(self._passes), k + 1):  # each pass depends on the one before it
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + j)
            perm = torch.randperm(self.num_samples, generator=g)
            offset = (j * self.num_samples) % self.per_epoch  # samples of pass j−1 in the epoch where j starts
            if j > 0 and offset:
                taken = torch.zeros(self.num_samples, dtype=torch.bool)
                taken[self._passes[j - 1][-offset:]] = True
                perm = torch.cat([perm[~taken[perm]], perm[taken[perm]]])
            self._passes.append(perm)
        return self._passes[k]

    def plan(self, epoch: int) -> torch.Tensor:
        """The ``per_epoch`` sample indices of ``epoch``, in training order (a slice of the stream of passes)."""
        check_number("epoch", epoch, low=0, integer=True)
        start = epoch * self.per_epoch
        stop = start + self.per_epoch
        parts = []
        for k in range(start // self.num_samples, (stop - 1) // self.num_samples + 1):
            lo = max(start - k * self.num_samples, 0)
            hi = min(stop - k * self.num_samples, self.num_samples)
            parts.append(self._pass(k)[lo:hi])
        return torch.cat(parts)
