"""Ring buffer of the most recent per-sample losses (ADONIS's H, SB's loss history)."""
from __future__ import annotations

import torch


class LossHistory:
    """The last ``size`` finite losses seen, oldest overwritten first. Pushing is one vectorised write."""

    def __init__(self, size: int):
        self.size = size
        self.values = torch.zeros(size)
        self.count = 0
        self.pos = 0

    def push(self, losses: torch.Tensor) -> None:
        """Append ``losses`` (1-D, finite, on CPU); keeps only the newest ``size`` values."""
        losses = losses.detach().float().reshape(-1)[-self.size:]
        m = losses.numel()
        if m == 0:
            return
        slots = (self.pos + torch.arange(m)) % self.size
        self.values[slots] = losses
        self.pos = (self.pos + m) % self.size
        self.count = min(self.count + m, self.size)

    def view(self) -> torch.Tensor:
        """The stored losses (order is irrelevant to the histogram and CDF that read them)."""
        return self.values[: self.count]

    def recency_weights(self, decay: float, batch: int) -> torch.Tensor:
        """Weight decay^(age // batch) for each stored value (aligned with :meth:`view`); the newest batch has 1."""
        age = (self.pos - 1 - torch.arange(self.count)) % self.size
        return torch.pow(decay, (age // max(batch, 1)).double())

    def state_dict(self) -> dict:
        return {"values": self.values.clone(), "count": self.count, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        """Restore the stored losses into this buffer's ``size``: a buffer of another length keeps the newest
        ``size`` of them (a run resumed with another history length)."""
        values, count, pos = state["values"], int(state["count"]), int(state["pos"])
        if values.numel() == self.size:  # slot for slot, so the histogram sums in the same order
            self.values, self.count, self.pos = values.clone(), count, pos
            return
        self.values, self.count, self.pos = torch.zeros(self.size), 0, 0
        self.push(values[(pos - count + torch.arange(count)) % values.numel()])  # oldest first
