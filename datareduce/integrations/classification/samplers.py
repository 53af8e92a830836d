"""The samplers of the classification loop: training order (seeded per epoch, sharded, plannable) and evaluation shards.

The training sampler reads ``len(dataset)`` at every iteration, so an in-place subset change needs no new loader,
and takes a visiting plan from a reducer (InfoBatch, RS2, a planned ADONIS epoch).
"""
from __future__ import annotations

import math
from typing import Iterator, Optional

import torch
from torch.utils.data import Sampler


class TrainSampler(Sampler):
    """Shuffled order seeded by (seed, epoch), padded to a multiple of the world size and sharded by rank.

    Reads ``len(dataset)`` at every iteration, so an in-place subset change (IDS γ switch) needs no new
    loader. ``set_plan(positions)`` replaces the shuffle with a given visiting order for one epoch (InfoBatch).
    Every rank yields the same number of positions.
    """

    def __init__(self, dataset, rank: int = 0, world_size: int = 1, seed: int = 0, shuffle: bool = True):
        self.dataset, self.rank, self.world_size = dataset, rank, world_size
        self.seed, self.shuffle = seed, shuffle
        self.epoch = 0
        self.plan: Optional[torch.Tensor] = None
        self.local = False

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_plan(self, positions: Optional[torch.Tensor], local: bool = False) -> None:
        """Visit ``positions`` this epoch instead of the shuffle: a global order sharded over the ranks, or,
        with ``local``, this rank's own order as is (a planned ADONIS epoch). None: back to the shuffle."""
        self.plan = None if positions is None else torch.as_tensor(positions).long()
        self.local = local

    def _order(self) -> torch.Tensor:
        if self.plan is not None:
            return self.plan
        n = len(self.dataset)
        if not self.shuffle:
            return torch.arange(n)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        return torch.randperm(n, generator=g)

    def rank_order(self) -> torch.Tensor:
        """The positions this rank visits this epoch, in order."""
        order = self._order()
        if self.plan is not None and self.local:
            return order
        total = math.ceil(len(order) / self.world_size) * self.world_size
        if total > len(order) and len(order):  # pad by repeating the head (as DistributedSampler does)
            order = torch.cat([order, order[: total - len(order)]])
        return order[self.rank: total: self.world_size]

    def __len__(self) -> int:
        if self.plan is not None and self.local:
            return len(self.plan)
        n = len(self.plan) if self.plan is not None else len(self.dataset)
        return math.ceil(n / self.world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.rank_order().tolist())


class ShardSampler(Sampler):
    """Positions ``rank, rank + world, …`` of a dataset, unpadded (evaluation: every sample counted once)."""

    def __init__(self, dataset, rank: int = 0, world_size: int = 1):
        self.dataset, self.rank, self.world_size = dataset, rank, world_size

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.world_size))

    def __iter__(self):
        return iter(range(self.rank, len(self.dataset), self.world_size))
