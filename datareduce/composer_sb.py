"""Composer-style Selective Backprop (MosaicML Composer ``selective_backprop``), written from its description.

A fixed fraction ``keep`` of every forward batch is kept, drawn without replacement with probability rising
with the loss rank (p ∝ percentile^(1/keep − 1)); no loss history; the kept samples are trained at once as a
smaller batch (no accumulation), only while training progress is within [start, end) and on batches whose
(1-based) index is not a multiple of ``interrupt``. It is here to show what full-batch accumulation buys.
"""
from __future__ import annotations

import torch

from ._validate import UsageError, check_number


class ComposerSBSelector:
    """Rank-based fixed-fraction selection per batch (Composer's ``select_using_loss``)."""

    def __init__(self, keep=0.5, start=0.5, end=0.9, interrupt=2, seed=0):
        self.keep = check_number("keep", keep, low=0, high=1, low_open=True)
        self.start = check_number("start", start, low=0, high=1)
        self.end = check_number("end", end, low=0, high=1)
        if self.end < self.start:
            raise UsageError(f"end={end!r} must not be before start={start!r}")
        self.interrupt = check_number("interrupt", interrupt, low=0, integer=True)
        self.seed = check_number("seed", seed, integer=True)
        self.generator = torch.Generator().manual_seed(self.seed)

    def is_active(self, progress: float, batch_index: int) -> bool:
        """Whether this batch is subject to selection: progress (fraction of training done) in [start, end),
        and not one of the every-``interrupt``-th batches that Composer trains in full."""
        if not self.start <= progress < self.end:
            return False
        return self.interrupt == 0 or (batch_index + 1) % self.interrupt != 0

    def select(self, losses, indices=None, epoch=None, all_losses=None, labels=None) -> torch.Tensor:
        """Keep exactly ``int(keep·n)`` samples (at least one), favouring high losses by rank."""
        losses = torch.as_tensor(losses).detach().float().reshape(-1).cpu()
        n = losses.numel()
        n_keep = max(1, int(self.keep * n))
        finite = torch.isfinite(losses)
        order = torch.where(finite, losses, torch.full_like(losses, -float("inf"))).argsort()
        percentile = (torch.arange(n, dtype=torch.float64) + 0.5) / n
        prob = percentile.pow(1.0 / self.keep - 1.0)
        prob[: n - int(finite.sum())] = 0.0  # non-finite losses sort first and are never drawn
        n_keep = min(n_keep, int((prob > 0).sum()))
        mask = torch.zeros(n, dtype=torch.bool)
        if n_keep:
            mask[order[torch.multinomial(prob, n_keep, replacement=False, generator=self.generator)]] = True
        return mask

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])
