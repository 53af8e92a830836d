"""What ADONIS and Selective Backprop share: recent-loss history, per-sample loss reuse, seeded draws, warm-up."""
from __future__ import annotations

import torch

from ._validate import check_number
from .history import LossHistory
from .loss_cache import LossCache


def as_losses(values) -> torch.Tensor:
    """A flat float32 CPU tensor of losses (one host copy per batch, no per-sample sync)."""
    return torch.as_tensor(values).detach().float().reshape(-1).cpu()


class LossHistorySelector:
    """Base of the loss-driven selectors: a ring buffer of the last ``history`` finite losses, a cache that lets
    a sample's loss be reused for ``eta`` epochs (η), warm-up epochs on all data (epochs ``i ≤ omega``, as
    Algorithm 1 line 11 counts them), and a seeded RNG.

    Subclasses call :meth:`observe` at the top of ``select`` and apply their own rule to the history.
    """

    def __init__(self, history: int, eta: int, omega: int, seed: int):
        self.history_size = check_number("history", history, low=2, integer=True)
        self.eta = check_number("eta", eta, low=1, integer=True)
        self.omega = check_number("omega", omega, low=-1, integer=True)
        self.seed = check_number("seed", seed, integer=True)
        self.history = LossHistory(self.history_size)
        self.cache = LossCache(self.eta)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.nonfinite = 0

    def in_warmup(self, epoch) -> bool:
        """True for epochs ``i ≤ omega`` (epochs counted from 0), when every batch is trained as is: Algorithm 1,
        line 11, so ω = 0 trains epoch 0 on all data (as Selective Backprop's own code primes one full epoch),
        and ω = −1 selects from the very first batch."""
        return epoch is not None and epoch <= self.omega

    def needs_scoring(self, indices, epoch: int) -> torch.Tensor:
        """Bool mask: samples without a loss fresh enough to reuse (none during warm-up)."""
        if self.in_warmup(epoch):
            return torch.zeros(len(indices), dtype=torch.bool)
        return self.cache.stale(torch.as_tensor(indices), epoch)

    def cached_losses(self, indices) -> torch.Tensor:
        """The stored losses of ``indices`` (NaN for never-scored samples)."""
        return self.cache.get(torch.as_tensor(indices))

    def remember(self, indices, losses, epoch: int) -> None:
        """Cache ``losses`` of ``indices`` as computed in ``epoch`` (another rank's scoring forward, or the
        training forward's losses when they are reused); the history is not touched."""
        losses = as_losses(losses)
        finite = torch.isfinite(losses)
        self.cache.update(torch.as_tensor(indices).reshape(-1).cpu()[finite], losses[finite], epoch)

    def observe(self, losses: torch.Tensor, indices=None, epoch=None, all_losses=None) -> int:
        """Book one forward batch: cache the losses of samples that needed scoring (with ``indices`` and
        ``epoch``), count non-finite losses, and push the finite ones of ``all_losses`` (every rank's, when
        given) or ``losses`` into the history. Returns this batch's number of non-finite losses."""
        if indices is not None and epoch is not None:
            indices = torch.as_tensor(indices).reshape(-1).cpu()
            fresh = self.cache.stale(indices, epoch)
            self.cache.update(indices[fresh], losses[fresh], epoch)
        bad = int((~torch.isfinite(losses)).sum())
        self.nonfinite += bad
        pushed = losses if all_losses is None else as_losses(all_losses)
        self.history.push(pushed[torch.isfinite(pushed)])
        return bad

    def state_dict(self) -> dict:
        """Everything needed for a resumed run to select exactly as an uninterrupted one: the data (history,
        cached losses, RNG), not the parameters, which the selector built for the resumed run keeps."""
        return {"history": self.history.state_dict(), "cache": self.cache.state_dict(),
                "generator": self.generator.get_state(), "nonfinite": self.nonfinite}

    def load_state_dict(self, state: dict) -> None:
        self.history.load_state_dict(state["history"])
        self.cache.load_state_dict(state["cache"])
        self.generator.set_state(state["generator"])
        self.nonfinite = int(state["nonfinite"])
