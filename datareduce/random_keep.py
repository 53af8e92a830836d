"""The control every online method is compared with: keep a uniform random fraction of each batch.

Same budget, same loop, no loss signal: a method that does not beat it is not worth its selection.
"""
from __future__ import annotations

import torch

from ._validate import check_number


class RandomKeepSelector:
    """Keep each sample with probability ``fraction`` (seeded); never scores, so it costs no extra forward."""

    def __init__(self, fraction=0.3, seed=0):
        self.fraction = check_number("fraction", fraction, low=0, high=1, low_open=True)
        self.seed = check_number("seed", seed, integer=True)
        self.generator = torch.Generator().manual_seed(self.seed)

    def in_warmup(self, epoch) -> bool:
        return False

    def needs_scoring(self, indices, epoch) -> torch.Tensor:
        return torch.zeros(len(indices), dtype=torch.bool)

    def cached_losses(self, indices) -> torch.Tensor:
        return torch.zeros(len(indices))

    def select(self, losses, indices=None, epoch=None, all_losses=None, labels=None) -> torch.Tensor:
        return torch.rand(len(losses), generator=self.generator) < self.fraction

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
