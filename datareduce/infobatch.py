"""InfoBatch (Qin et al., ICLR 2024), written from the published algorithm, as a baseline.

Each epoch, the samples whose last training loss is below the mean loss are "well learned"; a random fraction
``ratio`` of them is pruned for that epoch and the kept well-learned samples get loss weight 1/(1−ratio), so the
expected gradient is unchanged. After the first ⌊``delta``·epochs⌋ epochs the full data is used, unweighted.
The losses come from the training forward itself (one epoch stale): no extra scoring pass.
"""
from __future__ import annotations

import torch

from ._validate import check_number


class InfoBatchPruner:
    """Per-epoch dynamic pruning plan: which samples to visit and with which loss weights."""

    def __init__(self, num_samples: int, num_epochs: int, ratio=0.5, delta=0.875, seed=0):
        self.num_samples = check_number("num_samples", num_samples, low=1, integer=True)
        self.num_epochs = check_number("num_epochs", num_epochs, low=1, integer=True)
        self.ratio = check_number("ratio", ratio, low=0, high=1, high_open=True)
        self.delta = check_number("delta", delta, low=0, high=1)
        self.seed = check_number("seed", seed, integer=True)
        self.scores = torch.ones(num_samples)  # equal scores: nothing is below the mean before the first epoch
        self.weights = torch.ones(num_samples)

    def pruning(self, epoch: int) -> bool:
        """Whether ``epoch`` (counted from 0) prunes or trains on the full data (annealing): it prunes while
        ``epoch + 1 ≤ delta·epochs``, i.e. the first ⌊delta·epochs⌋ epochs, as the authors' sampler does (its
        iteration counter runs one ahead of the epoch); 30 epochs at δ 0.875 prune 26 and anneal 4."""
        return epoch + 1 <= self.delta * self.num_epochs

    def plan(self, epoch: int) -> torch.Tensor:
        """The sample indices to visit in ``epoch`` (shuffled, seeded by seed+epoch); sets ``weights``."""
        g = torch.Generator().manual_seed(self.seed * 100003 + epoch)
        self.weights = torch.ones(self.num_samples)
        if not self.pruning(epoch):
            return torch.randperm(self.num_samples, generator=g)
        well = self.scores < self.scores.mean()
        well_idx = well.nonzero().flatten()
        n_keep = int((1 - self.ratio) * well_idx.numel())
        kept_well = well_idx[torch.randperm(well_idx.numel(), generator=g)[:n_keep]]
        if n_keep:
            self.weights[kept_well] = 1.0 / (1.0 - self.ratio)
        visit = torch.cat([(~well).nonzero().flatten(), kept_well])
        return visit[torch.randperm(visit.numel(), generator=g)]

    def loss_weights(self, indices) -> torch.Tensor:
        """Per-sample loss weights for ``indices`` in the current epoch's plan."""
        return self.weights[torch.as_tensor(indices).long().cpu()]

    def update(self, indices, losses) -> None:
        """Record the training-forward losses of ``indices`` (non-finite ones keep their old score)."""
        indices = torch.as_tensor(indices).long().cpu()
        losses = torch.as_tensor(losses).detach().float().cpu()
        ok = torch.isfinite(losses)
        self.scores[indices[ok]] = losses[ok]

    def state_dict(self) -> dict:
        return {"scores": self.scores.clone(), "weights": self.weights.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.scores = state["scores"].clone()
        self.weights = state["weights"].clone()
