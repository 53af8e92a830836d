"""ADONIS: Adaptive Online Importance Sampling (paper §3.1, Algorithm 1; SPEC §1).

The pure part: given the losses of one forward batch, say which samples to back-propagate.
The loop that scores batches and accumulates the kept samples lives in :mod:`datareduce.online`.
"""
from __future__ import annotations

import math
import warnings

import torch

from ._validate import check_choice, check_number
from .history import LossHistory
from .loss_cache import LossCache

BIN_RULES = ("sturges", "sqrt", "rice")


def bin_count(n: int, rule: str) -> int:
    """Number of equal-width histogram bins for ``n`` values (paper eq. 4 for Sturges; sqrt and Rice too)."""
    if n <= 1:
        return 1
    if rule == "sturges":
        return math.ceil(math.log2(n)) + 1
    if rule == "sqrt":
        return math.ceil(math.sqrt(n))
    return math.ceil(2 * n ** (1 / 3))  # rice


def candidate_mask(losses: torch.Tensor, history: torch.Tensor, bins: str, sigma: float, theta: float) -> torch.Tensor:
    """Which ``losses`` fall into a bin of the clipped ``history`` histogram whose PMF exceeds ``theta``.

    SPEC §1 steps 3-5 (paper eq. 3 and 6, Figures 3-4): history values outside mean ± sigma·std are dropped,
    the rest binned into ``bin_count(|H|)`` equal-width bins, PMF_j = count_j / |clipped H|. Losses outside the
    clipped range are never candidates (outliers may be label noise). Non-finite losses are never candidates.
    """
    finite = torch.isfinite(losses)
    if history.numel() == 0:
        return finite
    mean, std = history.mean(), history.std(unbiased=False)
    clipped = history[(history - mean).abs() <= sigma * std]
    if clipped.numel() == 0:  # sigma < 1 can clip every value (e.g. two values a std apart): no candidates
        return torch.zeros_like(finite)
    lo, hi = clipped.min(), clipped.max()
    k = bin_count(history.numel(), bins)
    width = (hi - lo) / k
    if width <= 0:  # every clipped value is the same: one bin holding everything
        return finite & (losses == lo)
    def bin_of(x):
        return ((x - lo) / width).floor().long().clamp_(0, k - 1)
    pmf = torch.bincount(bin_of(clipped), minlength=k).float() / clipped.numel()
    inside = finite & (losses >= lo) & (losses <= hi)
    safe = torch.where(inside, losses, lo)
    return inside & (pmf[bin_of(safe)] > theta)


def random_cap(mask: torch.Tensor, limit: int, generator: torch.Generator) -> torch.Tensor:
    """Keep at most ``limit`` of the True entries of ``mask``, drawn uniformly at random (seeded)."""
    if int(mask.sum()) <= limit:
        return mask
    keys = torch.rand(mask.numel(), generator=generator)
    keys[~mask] = -1.0
    keep = torch.zeros_like(mask)
    keep[keys.topk(limit).indices] = True
    return keep


class AdonisSelector:
    """Select which samples of a forward batch to train on, from a histogram of recent losses.

    Parameters (paper Table A2; SPEC §1): ``history`` l, the ring-buffer length; ``bins`` the bin-count rule
    k; ``sigma`` the clip width in standard deviations; ``theta`` the PMF threshold of eq. (3); ``alpha`` the
    largest fraction of a forward batch that may be kept (our reading of the paper's α, drawn uniformly at
    random among the candidates); ``eta`` the number of epochs a scored loss stays fresh; ``omega`` the number
    of warm-up epochs trained on every sample; ``seed`` for the random draw.

    Use: ``needs_scoring(indices, epoch)`` says which samples need a fresh loss; score those, take the rest
    from ``cached_losses(indices)``, then ``select(losses, indices, epoch)`` returns the keep mask.
    """

    def __init__(self, history=512, bins="sturges", sigma=1.0, theta=0.12, alpha=0.3, eta=1, omega=0, seed=0):
        self.history_size = check_number("history", history, low=2, integer=True)
        self.bins = check_choice("bins", bins, BIN_RULES)
        self.sigma = check_number("sigma", sigma, low=0, low_open=True)
        self.theta = check_number("theta", theta, low=0, high=1, high_open=True)
        self.alpha = check_number("alpha", alpha, low=0, high=1, low_open=True)
        self.eta = check_number("eta", eta, low=1, integer=True)
        self.omega = check_number("omega", omega, low=0, integer=True)
        self.seed = check_number("seed", seed, integer=True)
        self.history = LossHistory(self.history_size)
        self.cache = LossCache(self.eta)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.nonfinite = 0

    def in_warmup(self, epoch) -> bool:
        """True during the first ``omega`` epochs, when every batch is trained as is (Algorithm 1, line 11)."""
        return epoch is not None and epoch < self.omega

    def needs_scoring(self, indices: torch.Tensor, epoch: int) -> torch.Tensor:
        """Bool mask: samples without a loss fresher than ``eta`` epochs (none during warm-up)."""
        if self.in_warmup(epoch):
            return torch.zeros(len(indices), dtype=torch.bool)
        return self.cache.stale(torch.as_tensor(indices), epoch)

    def cached_losses(self, indices: torch.Tensor) -> torch.Tensor:
        """The stored losses of ``indices`` (NaN for never-scored samples)."""
        return self.cache.get(torch.as_tensor(indices))

    def select(self, losses: torch.Tensor, indices=None, epoch=None, all_losses=None) -> torch.Tensor:
        """Keep mask over this forward batch (SPEC §1 steps 2-6).

        With ``indices`` and ``epoch`` the losses of samples that needed scoring are cached for η-reuse.
        ``all_losses`` (e.g. gathered from every DDP rank) enter the history instead of ``losses`` so that all
        ranks share one histogram; ``losses`` are still the ones selected from.
        """
        losses = torch.as_tensor(losses).detach().float().reshape(-1).cpu()
        n = losses.numel()
        if self.in_warmup(epoch):
            return torch.ones(n, dtype=torch.bool)
        if indices is not None and epoch is not None:
            indices = torch.as_tensor(indices).reshape(-1).cpu()
            fresh = self.cache.stale(indices, epoch)
            self.cache.update(indices[fresh], losses[fresh], epoch)
        finite = torch.isfinite(losses)
        bad = n - int(finite.sum())
        if bad:
            if self.nonfinite == 0:
                warnings.warn(f"ADONIS: {bad} non-finite loss(es) in a batch; they are never selected "
                              "and never enter the history (counted in .nonfinite)", RuntimeWarning, stacklevel=2)
            self.nonfinite += bad
        pushed = losses if all_losses is None else torch.as_tensor(all_losses).detach().float().reshape(-1).cpu()
        self.history.push(pushed[torch.isfinite(pushed)])
        cand = candidate_mask(losses, self.history.view(), self.bins, self.sigma, self.theta)
        return random_cap(cand, math.ceil(self.alpha * n), self.generator)

    def state_dict(self) -> dict:
        """Everything needed for a resumed run to select exactly as an uninterrupted one."""
        return {"history": self.history.state_dict(), "cache": self.cache.state_dict(),
                "generator": self.generator.get_state(), "nonfinite": self.nonfinite}

    def load_state_dict(self, state: dict) -> None:
        self.history.load_state_dict(state["history"])
        self.cache.load_state_dict(state["cache"])
        self.generator.set_state(state["generator"])
        self.nonfinite = int(state["nonfinite"])
