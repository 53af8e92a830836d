"""Per-sample loss cache keyed by dataset index: the η-reuse of ADONIS and Stale-SB."""
from __future__ import annotations

import torch


class LossCache:
    """Remembers each sample's last scored loss and the epoch it was scored in.

    A loss scored in epoch ``e`` is *fresh* in epochs ``e .. e + eta - 1`` and is reused there instead of
    a new scoring forward (the paper's η "decreases the number of additional forward steps").
    ``eta=1`` re-scores every sample every epoch. Storage grows with the largest index seen.
    """

    def __init__(self, eta: int):
        self.eta = eta
        self.loss = torch.empty(0)
        self.epoch = torch.empty(0, dtype=torch.long)

    def _grow(self, size: int) -> None:
        if size > self.loss.numel():
            new = max(size, 2 * self.loss.numel())
            loss = torch.full((new,), float("nan"))
            epoch = torch.full((new,), -(2**62), dtype=torch.long)
            loss[: self.loss.numel()] = self.loss
            epoch[: self.epoch.numel()] = self.epoch
            self.loss, self.epoch = loss, epoch

    def stale(self, indices: torch.Tensor, epoch: int) -> torch.Tensor:
        """Bool mask over ``indices``: True where no loss is cached or the cached one is ``eta`` epochs old."""
        indices = indices.detach().cpu().long()
        if indices.numel() == 0:
            return torch.zeros(0, dtype=torch.bool)
        self._grow(int(indices.max()) + 1)
        return (epoch - self.epoch[indices]) >= self.eta

    def update(self, indices: torch.Tensor, losses: torch.Tensor, epoch: int) -> None:
        """Store freshly scored ``losses`` of ``indices`` as scored in ``epoch``."""
        indices = indices.detach().cpu().long()
        if indices.numel() == 0:
            return
        self._grow(int(indices.max()) + 1)
        self.loss[indices] = losses.detach().float().cpu()
        self.epoch[indices] = epoch

    def get(self, indices: torch.Tensor) -> torch.Tensor:
        """The cached losses of ``indices`` (NaN where none was ever stored)."""
        indices = indices.detach().cpu().long()
        self._grow(int(indices.max()) + 1 if indices.numel() else 0)
        return self.loss[indices].clone()

    def state_dict(self) -> dict:
        """The cached losses and the epochs they were scored in; ``eta`` stays the constructor's, so a run
        resumed with another η reuses the restored losses for the new η."""
        return {"loss": self.loss.clone(), "epoch": self.epoch.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.loss = state["loss"].clone()
        self.epoch = state["epoch"].clone()
