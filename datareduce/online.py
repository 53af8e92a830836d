"""The online-selection loop shared by every trainer: score → select → accumulate → train batches of ``rho``.

Framework-agnostic glue around a selector (ADONIS, SB): the host supplies ``score_fn`` (per-sample losses of
a batch under no_grad, leaving the model unchanged), ``index_fn`` (the dataset indices of a batch) and
``ops`` (how to slice and concatenate its batches). Under torch.distributed each rank selects from its own
shard, the loss history is built from every rank's losses, and all ranks yield the same number of
training batches (the minimum that every rank has ready), so optimizer steps stay in lockstep.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from . import distributed
from .accumulator import BatchAccumulator, TensorBatchOps


def last_item(batch):
    """Default ``index_fn``: the dataset indices are the last element of a tuple batch."""
    return batch[-1]


@dataclass
class EpochSelectionStats:
    """What one epoch of online selection did (SPEC §4 and §7 accounting)."""

    forward_samples: int = 0  # samples the loader produced
    scored: int = 0  # samples that got a scoring forward (η-reuse skips the fresh ones)
    selected: int = 0  # samples the selector kept
    backprop: int = 0  # samples in the training batches handed out
    train_batches: int = 0
    loss_sum_all: float = 0.0
    loss_sum_kept: float = 0.0
    finite_all: int = 0
    finite_kept: int = 0
    score_time_s: float = 0.0  # scoring forwards (the price of selection)
    select_time_s: float = 0.0  # the selector and the accumulator (the overhead this package adds)
    kept_indices: list = field(default_factory=list)

    def as_record(self) -> dict:
        """JSON-ready summary (the kept indices are summarised by the caller, not logged raw)."""
        return {
            "forward_samples": self.forward_samples, "samples_scored": self.scored,
            "samples_selected": self.selected, "samples_backprop": self.backprop,
            "train_batches": self.train_batches,
            "keep_fraction": self.selected / self.forward_samples if self.forward_samples else None,
            "mean_loss_all": self.loss_sum_all / self.finite_all if self.finite_all else None,
            "mean_loss_kept": self.loss_sum_kept / self.finite_kept if self.finite_kept else None,
            "score_time_s": self.score_time_s, "select_time_s": self.select_time_s,
        }


class OnlineSelection:
    """Drive a selector over a loader, yielding training batches of exactly ``rho`` samples.

    With a selector that rescales (``selector.rescale``), each yielded tuple batch gets one more last element:
    the per-sample loss weights (:attr:`weighted` is then True).
    """

    def __init__(self, selector, score_fn, rho: int, ops=TensorBatchOps, index_fn=last_item, label_fn=None):
        self.selector = selector
        self.label_fn = label_fn
        self.weighted = bool(getattr(selector, "rescale", False))
        if self.weighted and ops is not TensorBatchOps:
            raise ValueError("loss rescaling needs tuple-of-tensor batches (TensorBatchOps)")
        self.score_fn = score_fn
        self.ops = ops
        self.index_fn = index_fn
        self.accumulator = BatchAccumulator(rho, ops)
        self.stats = EpochSelectionStats()

    @property
    def rho(self) -> int:
        return self.accumulator.rho

    def max_batches(self, num_samples: int) -> int:
        """An upper bound of the training batches one epoch over ``num_samples`` can yield (carry-in included)."""
        return max(1, math.ceil((num_samples + self.rho - 1) / self.rho))

    def losses_for(self, batch, indices: torch.Tensor, epoch: int) -> torch.Tensor:
        """Per-sample losses: a scoring forward for the stale samples only, cached ones for the rest (η-reuse)."""
        need = self.selector.needs_scoring(indices, epoch)
        losses = self.selector.cached_losses(indices)
        n_need = int(need.sum())
        if n_need:
            start = time.perf_counter()
            part = batch if n_need == len(need) else self.ops.take(batch, need.nonzero().flatten())
            losses[need] = self.score_fn(part).detach().float().reshape(-1).cpu()
            self.stats.score_time_s += time.perf_counter() - start
        self.stats.scored += n_need
        return losses

    def epoch(self, loader, epoch: int, last: bool = False):
        """Iterate one epoch of ``loader``; yields training batches. ``last`` flushes the remainder at the end."""
        self.stats = EpochSelectionStats()
        for batch in loader:
            n = self.ops.size(batch)
            self.stats.forward_samples += n
            if self.selector.in_warmup(epoch):
                self.stats.selected += n
                self.stats.kept_indices.append(torch.as_tensor(self.index_fn(batch)).reshape(-1).cpu())
                yield from self._hand_out(self._weighted(batch, torch.ones(n)))
                continue
            indices = torch.as_tensor(self.index_fn(batch)).reshape(-1).cpu()
            losses = self.losses_for(batch, indices, epoch)
            start = time.perf_counter()
            extra = {"labels": torch.as_tensor(self.label_fn(batch)).cpu()} if self.label_fn else {}
            keep = self.selector.select(losses, indices, epoch, all_losses=distributed.gather_losses(losses), **extra)
            self._count(losses, keep, indices)
            rows = keep.nonzero().flatten()
            kept = self.ops.take(batch, rows)
            self.accumulator.add(self._weighted(kept, self.selector.last_weights[rows]) if self.weighted else kept)
            ready = distributed.min_over_ranks(self.accumulator.ready())
            batches = [self.accumulator.pop() for _ in range(ready)]
            self.stats.select_time_s += time.perf_counter() - start
            for b in batches:
                yield from self._hand_out(b)
        if last and distributed.min_over_ranks(len(self.accumulator)) > 0:
            yield from self._hand_out(self.accumulator.flush())

    def _weighted(self, batch, weights):
        return type(batch)((*batch, weights)) if self.weighted else batch

    def _count(self, losses, keep, indices):
        finite = torch.isfinite(losses)
        kept = keep & finite
        self.stats.selected += int(keep.sum())
        self.stats.loss_sum_all += float(losses[finite].sum())
        self.stats.finite_all += int(finite.sum())
        self.stats.loss_sum_kept += float(losses[kept].sum())
        self.stats.finite_kept += int(kept.sum())
        self.stats.kept_indices.append(indices[keep])

    def _hand_out(self, batch):
        self.stats.backprop += self.ops.size(batch)
        self.stats.train_batches += 1
        yield batch

    def kept_indices(self) -> torch.Tensor:
        """Dataset indices kept so far this epoch (all of them in warm-up epochs)."""
        parts = self.stats.kept_indices
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)

    def state_dict(self) -> dict:
        return {"selector": self.selector.state_dict(), "accumulator": self.accumulator.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.selector.load_state_dict(state["selector"])
        self.accumulator.load_state_dict(state["accumulator"])
