"""Selective Backprop (Jiang et al., 2019) and Stale-SB: the baseline ADONIS was derived from."""
from __future__ import annotations

import torch

from ._validate import check_number
from .loss_selector import LossHistorySelector, as_losses


class SelectiveBackpropSelector(LossHistorySelector):
    """Keep each sample with probability P(h < loss)^beta, over the last ``history`` losses h (the batch's own
    included, pushed first).

    The draw is probabilistic and seeded. ``eta`` > 1 reuses a sample's loss for that many epochs
    (Stale-SB, ``eta=2``), through the same ``needs_scoring`` / ``cached_losses`` protocol as
    :class:`~datareduce.adonis.AdonisSelector`; epochs ``i ≤ omega`` train on everything (the default 0 primes
    one full epoch, as the authors' code does; −1 selects from the first batch).
    """

    def __init__(self, beta=2.0, history=1024, eta=1, seed=0, omega=0):
        self.beta = check_number("beta", beta, low=0, low_open=True)
        super().__init__(history, eta, omega, seed)

    def keep_probability(self, losses: torch.Tensor) -> torch.Tensor:
        """The share of the current history *strictly below* each loss, raised to ``beta`` (0 for non-finite
        losses). Strictly, as the authors' percentile does: the batch is already in the history, so a loss
        does not count itself (the highest of n is kept with ((n−1)/n)^β) and tied losses do not count each
        other (a batch of equal losses filling the history is never kept)."""
        hist = self.history.view().sort().values
        if hist.numel() == 0:
            return torch.isfinite(losses).float()
        cdf = torch.searchsorted(hist, losses.contiguous(), right=False).float() / hist.numel()
        return torch.where(torch.isfinite(losses), cdf.pow(self.beta), torch.zeros_like(cdf))

    def select(self, losses, indices=None, epoch=None, all_losses=None, labels=None) -> torch.Tensor:
        """Keep mask: history updated with this batch first (as SB does), then one Bernoulli draw per sample."""
        losses = as_losses(losses)
        if self.in_warmup(epoch):
            return torch.ones(losses.numel(), dtype=torch.bool)
        self.observe(losses, indices, epoch, all_losses)
        prob = self.keep_probability(losses)
        return torch.rand(losses.numel(), generator=self.generator) < prob
