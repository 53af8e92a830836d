"""ADONIS: Adaptive Online Importance Sampling (paper §3.1, Algorithm 1).

The pure part: given the losses of one forward batch, say which samples to back-propagate.
The loop that scores batches and accumulates the kept samples lives in :mod:`datareduce.online`.
"""
from __future__ import annotations

import math
import warnings

import torch

from ._validate import UsageError, check_choice, check_number
from .loss_selector import LossHistorySelector, as_losses

BIN_RULES = ("sturges", "sqrt", "rice")
CLIP_MODES = ("drop", "clamp")  # what happens to history values beyond mean ± σ·std (Figure 3 reads both ways)
CAP_MODES = ("batch", "candidates", "none")  # what α caps: ⌈α·n⌉ of the batch, ⌈α·|candidates|⌉, nothing
PRUNE_POOLS = ("learned", "dense")  # what the prune variant draws from: dense bins below the mean, or every dense bin


def bin_count(n: int, rule: str) -> int:
    """Number of equal-width histogram bins for ``n`` values (paper eq. 4 for Sturges; sqrt and Rice too)."""
    if n <= 1:
        return 1
    if rule == "sturges":
        return math.ceil(math.log2(n)) + 1
    if rule == "sqrt":
        return math.ceil(math.sqrt(n))
    return math.ceil(2 * n ** (1 / 3))  # rice


def candidate_mask(losses: torch.Tensor, history: torch.Tensor, bins: str, sigma: float, theta: float,
                   weights: torch.Tensor = None, clip: str = "drop") -> torch.Tensor:
    """Which ``losses`` fall into a bin of the clipped ``history`` histogram whose PMF exceeds ``theta``.

    Paper eq. 3 and 6, Figures 3-4: the history is clipped to mean ± sigma·std, binned into
    ``bin_count(|H|)`` equal-width bins, PMF_j = count_j / |clipped H|. Figure 3's caption reads two ways:
    with ``clip="drop"`` values beyond the range leave the histogram and losses outside it are never
    candidates (outliers may be label noise); with ``clip="clamp"`` they are moved to the range's edge, so
    the history keeps its size and a high loss falls into the top bin, where it can pass θ. Non-finite losses
    are never candidates. ``weights`` (one per history value) make the PMF a weighted one (the recency-weighted
    variant).
    """
    finite = torch.isfinite(losses)
    if history.numel() == 0:
        return finite
    mean, std = history.mean(), history.std(unbiased=False)
    if clip == "clamp":  # every value stays, moved to the range's edge
        clipped = history.clamp(float(mean - sigma * std), float(mean + sigma * std))
        losses = torch.where(finite, losses.clamp(float(clipped.min()), float(clipped.max())), losses)
        within = torch.ones_like(history, dtype=torch.bool)
    else:
        within = (history - mean).abs() <= sigma * std
        clipped = history[within]
    if clipped.numel() == 0:  # sigma < 1 can clip every value (e.g. two values a std apart): no candidates
        return torch.zeros_like(finite)
    lo, hi = clipped.min(), clipped.max()
    k = bin_count(history.numel(), bins)
    width = (hi - lo) / k
    if width <= 0:  # every clipped value is the same: one bin holding everything
        return finite & (losses == lo)
    def bin_of(x):
        return ((x - lo) / width).floor().long().clamp_(0, k - 1)
    w = None if weights is None else weights[within].double()
    pmf = torch.bincount(bin_of(clipped), weights=w, minlength=k).float()
    pmf = pmf / pmf.sum()
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


def balanced_cap(mask: torch.Tensor, labels: torch.Tensor, quota: torch.Tensor, generator: torch.Generator):
    """Keep at most ``quota[c]`` of the True entries of ``mask`` in each class ``c``, uniformly at random.

    Vectorised: samples are sorted by (class, random key) and each class's first ``quota`` candidates kept.
    """
    keys = torch.rand(mask.numel(), generator=generator, dtype=torch.float64)
    labels = labels.long()
    order = torch.argsort(labels.double() * 4 + torch.where(mask, keys, keys + 2))  # candidates first per class
    sorted_labels = labels[order]
    first = torch.searchsorted(sorted_labels, sorted_labels)  # position of each class's first sample
    rank = torch.arange(mask.numel()) - first
    keep_sorted = mask[order] & (rank < quota[sorted_labels])
    keep = torch.zeros_like(mask)
    keep[order[keep_sorted]] = True
    return keep


class AdonisSelector(LossHistorySelector):
    """Select which samples of a forward batch to train on, from a histogram of recent losses.

    Parameters (paper Table A2): ``history`` l, the ring-buffer length; ``bins`` the bin-count rule
    k; ``sigma`` the clip width in standard deviations; ``theta`` the PMF threshold of eq. (3); ``alpha`` caps
    how many candidates are kept, drawn uniformly at random among them (Appendix B; Algorithm 1 has no α):
    ``cap="batch"`` at most ⌈α·n⌉ of a forward batch of n, ``"candidates"`` ⌈α·|candidates|⌉, ``"none"``
    every candidate; ``clip`` ("drop" or "clamp") what σ does to the history (see :func:`candidate_mask`);
    ``eta`` the number of epochs a scored loss stays fresh; ``omega`` the last warm-up epoch trained on every
    sample (epochs ``i ≤ omega``, Algorithm 1 line 11: the default 0 trains epoch 0 in full; −1 none); ``seed``
    for the random draw.

    Variants (all off by default, so the defaults are the paper's algorithm):
    ``balance`` caps each class at ⌈α·n_c⌉ of its candidates (needs ``labels`` in :meth:`select`);
    ``floor`` keeps a uniform random ⌈floor·n⌉ of every batch first, inside the α budget;
    ``rescale`` weights kept samples by the inverse of their stratum's keep rate (candidates vs the rest),
    read from :attr:`last_weights`, so the kept batch estimates the full batch's loss without bias;
    ``anneal`` trains the last ``anneal`` of ``epochs`` epochs on everything;
    ``decay`` (0 < decay < 1) weights a history loss by decay^(age in batches of this size), a recency-
    weighted histogram (the paper's future work);
    ``prune`` (0 < prune < 1) turns the rule around to break the feedback loop of the paper's rule (a class
    not learned yet has high, sparse losses, so it is never a candidate and never learned): every sample is
    kept except a random ``prune`` share of the *well-learned* ones — candidates (dense bins) whose loss is
    below the history mean, InfoBatch's criterion restricted to ADONIS's dense bins; with ``rescale`` the kept
    well-learned samples get loss weight 1/(1−prune), so the expected gradient is the full batch's;
    ``prune_pool="dense"`` draws the pruned share from every candidate (every dense bin, whatever its loss), so
    only the rare losses — the sparse bins, where a class not learned yet sits — are always trained.

    Use: ``needs_scoring(indices, epoch)`` says which samples need a fresh loss; score those, take the rest
    from ``cached_losses(indices)``, then ``select(losses, indices, epoch)`` returns the keep mask.
    """

    def __init__(self, history=512, bins="sturges", sigma=1.0, theta=0.12, alpha=0.3, eta=1, omega=0, seed=0,
                 *, clip="drop", cap="batch", balance=False, floor=0.0, rescale=False, anneal=0, epochs=None,
                 decay=None, prune=None, prune_pool="learned"):
        super().__init__(history, eta, omega, seed)
        self.bins = check_choice("bins", bins, BIN_RULES)
        self.clip = check_choice("clip", clip, CLIP_MODES)
        self.cap = check_choice("cap", cap, CAP_MODES)
        self.sigma = check_number("sigma", sigma, low=0, low_open=True)
        self.theta = check_number("theta", theta, low=0, high=1, high_open=True)
        self.alpha = check_number("alpha", alpha, low=0, high=1, low_open=True)
        self.balance = bool(balance)
        self.floor = check_number("floor", floor, low=0, high=self.alpha)
        self.rescale = bool(rescale)
        self.anneal = check_number("anneal", anneal, low=0, integer=True)
        if self.anneal and epochs is None:
            raise ValueError(f"anneal={anneal} needs epochs= (the total number of training epochs)")
        self.epochs = None if epochs is None else check_number("epochs", epochs, low=1, integer=True)
        self.decay = None if decay is None else check_number("decay", decay, low=0, high=1, low_open=True,
                                                             high_open=True)
        self.prune = None if prune is None else check_number("prune", prune, low=0, high=1, low_open=True,
                                                             high_open=True)
        self.prune_pool = check_choice("prune_pool", prune_pool, PRUNE_POOLS)
        if self.prune is not None and (self.balance or self.floor or cap != "batch"):
            raise UsageError("prune keeps every sample but a share of the well-learned ones: it takes no "
                             "balance, floor or cap (α is not used)")
        if self.balance and self.cap != "batch":
            raise UsageError(f"balance caps each class at ⌈α·n_c⌉ of the batch: it needs cap='batch', "
                             f"not {cap!r}")
        self.last_weights = None

    def in_warmup(self, epoch) -> bool:
        """True for epochs trained on every sample: ``i ≤ omega`` (Algorithm 1, line 11) and, with the
        ``anneal`` variant, the last ``anneal`` epochs."""
        annealing = epoch is not None and self.anneal > 0 and epoch >= self.epochs - self.anneal
        return super().in_warmup(epoch) or annealing

    def select(self, losses: torch.Tensor, indices=None, epoch=None, all_losses=None, labels=None) -> torch.Tensor:
        """Keep mask over this forward batch (Algorithm 1's selection).

        With ``indices`` and ``epoch`` the losses of samples that needed scoring are cached for η-reuse.
        ``all_losses`` (e.g. gathered from every DDP rank) enter the history instead of ``losses`` so that all
        ranks share one histogram; ``losses`` are still the ones selected from. ``labels`` are needed by the
        ``balance`` variant only.
        """
        losses = as_losses(losses)
        n = losses.numel()
        if self.in_warmup(epoch):
            self.last_weights = torch.ones(n)
            return torch.ones(n, dtype=torch.bool)
        if self.balance and labels is None:
            raise ValueError("AdonisSelector(balance=True) needs labels= in select()")
        bad = self.observe(losses, indices, epoch, all_losses)
        if bad and self.nonfinite == bad:
            warnings.warn(f"ADONIS: {bad} non-finite loss(es) in a batch; they are never selected "
                          "and never enter the history (counted in .nonfinite)", RuntimeWarning, stacklevel=2)
        finite = torch.isfinite(losses)
        weights = None if self.decay is None else self.history.recency_weights(self.decay, n)
        cand = candidate_mask(losses, self.history.view(), self.bins, self.sigma, self.theta, weights, self.clip)
        if self.prune is not None:
            return self._prune(losses, cand, finite)
        budget = {"batch": math.ceil(self.alpha * n), "candidates": math.ceil(self.alpha * int(cand.sum())),
                  "none": n}[self.cap]
        keep = random_cap(finite, math.ceil(self.floor * n), self.generator) if self.floor else torch.zeros_like(finite)
        if self.balance:
            labels = torch.as_tensor(labels).reshape(-1).cpu().long()
            per_class = torch.bincount(labels)
            kept_per_class = torch.bincount(labels[keep], minlength=len(per_class))
            quota = (torch.ceil(self.alpha * per_class.double()).long() - kept_per_class).clamp(min=0)
            keep |= balanced_cap(cand & ~keep, labels, quota, self.generator)
        else:
            keep |= random_cap(cand & ~keep, budget - int(keep.sum()), self.generator)
        if self.rescale:
            self.last_weights = stratum_weights(keep, cand, finite)
        return keep

    def _prune(self, losses, cand, finite) -> torch.Tensor:
        """The ``prune`` variant: keep all finite samples but a random ``prune`` share of the pool (the
        well-learned candidates, or with ``prune_pool="dense"`` every candidate)."""
        learned = cand if self.prune_pool == "dense" else cand & (losses < self.history.view().mean())
        n_learned = int(learned.sum())
        kept_learned = random_cap(learned, n_learned - math.floor(self.prune * n_learned), self.generator)
        keep = (finite & ~learned) | kept_learned
        self.last_weights = torch.ones(losses.numel())
        if self.rescale:
            self.last_weights[kept_learned] = 1.0 / (1.0 - self.prune)
        self.last_weights[~keep] = 0.0
        return keep


def stratum_weights(keep: torch.Tensor, cand: torch.Tensor, finite: torch.Tensor) -> torch.Tensor:
    """Inverse-inclusion-rate weights (Horvitz-Thompson) over two strata, candidates and the other finite
    samples, normalised to mean 1 over the kept samples; 0 where not kept."""
    w = torch.zeros(keep.numel())
    for stratum in (cand & finite, ~cand & finite):
        kept = keep & stratum
        if kept.any():
            w[kept] = stratum.sum().float() / kept.sum().float()
    if keep.any():
        w[keep] /= w[keep].mean()
    return w
