"""Selective Backprop (Jiang et al., 2019) and Stale-SB: the baseline ADONIS was derived from (SPEC §3)."""
from __future__ import annotations

import torch

from ._validate import check_number
from .history import LossHistory
from .loss_cache import LossCache


class SelectiveBackpropSelector:
    """Keep each sample with probability CDF(loss)^beta, the CDF taken over the last ``history`` losses.

    The draw is probabilistic and seeded. ``staleness`` > 1 reuses a sample's loss for that many epochs
    (Stale-SB, ``staleness=2``), through the same ``needs_scoring`` / ``cached_losses`` protocol as
    :class:`~datareduce.adonis.AdonisSelector`; ``omega`` warm-up epochs train on everything.
    """

    def __init__(self, beta=2.0, history=1024, staleness=1, seed=0, omega=0):
        self.beta = check_number("beta", beta, low=0, low_open=True)
        self.history_size = check_number("history", history, low=2, integer=True)
        self.staleness = check_number("staleness", staleness, low=1, integer=True)
        self.seed = check_number("seed", seed, integer=True)
        self.omega = check_number("omega", omega, low=0, integer=True)
        self.history = LossHistory(self.history_size)
        self.cache = LossCache(self.staleness)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.nonfinite = 0

    def in_warmup(self, epoch) -> bool:
        return epoch is not None and epoch < self.omega

    def needs_scoring(self, indices, epoch) -> torch.Tensor:
        if self.in_warmup(epoch):
            return torch.zeros(len(indices), dtype=torch.bool)
        return self.cache.stale(torch.as_tensor(indices), epoch)

    def cached_losses(self, indices) -> torch.Tensor:
        return self.cache.get(torch.as_tensor(indices))

    def keep_probability(self, losses: torch.Tensor) -> torch.Tensor:
        """CDF of each loss within the current history, raised to ``beta`` (0 for non-finite losses)."""
        hist = self.history.view().sort().values
        if hist.numel() == 0:
            return torch.isfinite(losses).float()
        cdf = torch.searchsorted(hist, losses.contiguous(), right=True).float() / hist.numel()
        return torch.where(torch.isfinite(losses), cdf.pow(self.beta), torch.zeros_like(cdf))

    def select(self, losses, indices=None, epoch=None, all_losses=None, labels=None) -> torch.Tensor:
        """Keep mask: history updated with this batch first (as SB does), then one Bernoulli draw per sample."""
        losses = torch.as_tensor(losses).detach().float().reshape(-1).cpu()
        if self.in_warmup(epoch):
            return torch.ones(losses.numel(), dtype=torch.bool)
        if indices is not None and epoch is not None:
            indices = torch.as_tensor(indices).reshape(-1).cpu()
            fresh = self.cache.stale(indices, epoch)
            self.cache.update(indices[fresh], losses[fresh], epoch)
        self.nonfinite += int((~torch.isfinite(losses)).sum())
        pushed = losses if all_losses is None else torch.as_tensor(all_losses).detach().float().reshape(-1).cpu()
        self.history.push(pushed[torch.isfinite(pushed)])
        prob = self.keep_probability(losses)
        return torch.rand(losses.numel(), generator=self.generator) < prob

    def state_dict(self) -> dict:
        return {"history": self.history.state_dict(), "cache": self.cache.state_dict(),
                "generator": self.generator.get_state(), "nonfinite": self.nonfinite}

    def load_state_dict(self, state: dict) -> None:
        self.history.load_state_dict(state["history"])
        self.cache.load_state_dict(state["cache"])
        self.generator.set_state(state["generator"])
        self.nonfinite = int(state["nonfinite"])
