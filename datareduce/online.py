"""The online-selection loop shared by every trainer: score → select → accumulate → train batches of ``rho``.

Framework-agnostic glue around a selector (ADONIS, SB): the host supplies ``score_fn`` (per-sample losses of
a batch under no_grad, leaving the model unchanged), ``index_fn`` (the dataset indices of a batch) and
``ops`` (how to slice and concatenate its batches). Under torch.distributed each rank selects from its own
shard, the loss history is built from every rank's losses, every rank caches every rank's fresh losses (so
η-reuse survives the re-sharding of each epoch), and all ranks yield the same number of training batches
(the minimum that every rank has ready), so optimizer steps stay in lockstep.

Two ways to run an epoch:

* :meth:`OnlineSelection.epoch` streams: load every sample, score the stale ones, select, train.
* :meth:`OnlineSelection.plan` + :meth:`OnlineSelection.planned`: in an epoch where every sample's loss is
  cached and fresh (η-reuse), the selection needs no image at all, so it is made up front
  from the cached losses and only the kept samples are loaded (the host's loader visits the plan). The
  selector sees the same losses in the same order as when streaming, so it makes the same choices.
  An epoch where only a few losses are stale (at most :data:`REFRESH_SHARE` of the samples, e.g. the
  samples a pruning mode left out η epochs ago) is planned too: the stale samples are loaded by index and
  scored first, in batches of ``rho``, with the model as it is at the epoch's start; then the epoch is
  planned from the refreshed cache. Streaming would load every sample to score those few, a handful per batch.

:class:`ReuseGate` switches a selector's η-reuse off: the detection hosts (the Ultralytics trainer, the YOLOv5
hooks) keep it off while mosaic augmentation is on, and :func:`mosaic_reuse_line` is the line they print at setup.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from . import distributed
from ._validate import check_number
from .accumulator import BatchAccumulator, TensorBatchOps

# An epoch with at most this share of stale losses (on every rank) scores them up front and is planned
# (:meth:`OnlineSelection.plan`): loading the stale samples once more costs less than loading every sample.
REFRESH_SHARE = 0.25


def last_item(batch):
    """Default ``index_fn``: the dataset indices are the last element of a tuple batch."""
    return batch[-1]


def scored_losses(score_fn, batch) -> torch.Tensor:
    """The per-sample losses ``score_fn`` gives ``batch``: detached, float32, flat, on the CPU."""
    return score_fn(batch).detach().float().reshape(-1).cpu()


class ReuseGate:
    """A selector whose η-reuse (ADONIS, Stale-SB) can be switched off: then every sample is scored and no loss is
    cached (neither another rank's nor a training forward's); with ``reuse`` on it is the selector itself.

    The rule on every detection host (:meth:`follow_mosaic`): η-reuse is off while mosaic augmentation is on.
    A mosaic "image" is a new composite of four each time it is loaded (the loss cache keys it by its first
    image), so a loss cached this epoch says little about what the same key loads next epoch. Ultralytics closes
    mosaic for the last ``close_mosaic`` epochs, and η-reuse starts then; YOLOv5 keeps it on for the whole run
    while ``hyp['mosaic'] > 0``, so there every image is scored every epoch (:func:`mosaic_reuse_line` says so
    at setup)."""

    def __init__(self, selector):
        self.selector = selector
        self.reuse = True

    def __getattr__(self, name):
        return getattr(self.selector, name)

    def follow_mosaic(self, mosaic_on: bool) -> bool:
        """Apply the rule for an epoch whose loader has mosaic ``mosaic_on``; returns whether η-reuse is on."""
        self.reuse = not mosaic_on
        return self.reuse

    def needs_scoring(self, indices, epoch) -> torch.Tensor:
        if self.reuse:
            return self.selector.needs_scoring(indices, epoch)
        return torch.ones(len(indices), dtype=torch.bool)

    def select(self, losses, indices=None, epoch=None, **kwargs) -> torch.Tensor:
        return self.selector.select(losses, indices if self.reuse else None, epoch, **kwargs)

    def remember(self, indices, losses, epoch: int) -> None:
        if self.reuse and hasattr(self.selector, "remember"):
            self.selector.remember(indices, losses, epoch)


def reuse_eta(cfg) -> tuple:
    """``(η, its flag)`` of a run's ``ReduceConfig``: ADONIS's ``--adonis-eta``, SB's / Stale-SB's ``--sb-eta``
    (their default included); ``(1, None)`` for a selection that caches no loss."""
    if cfg.adonis is not None:
        return cfg.adonis.eta, "--adonis-eta"
    if cfg.method in ("sb", "stale-sb"):
        return cfg.sb_eta, "--sb-eta"
    return 1, None


def mosaic_reuse_line(cfg, setting: str, epochs: int, off_from=None):
    """The one line a detection host prints at setup when η > 1 meets mosaic (:meth:`ReuseGate.follow_mosaic`),
    else None. ``setting``: how the host sets mosaic (``"hyp mosaic 1.0"``); ``off_from``: the first epoch mosaic
    is off (None or ``>= epochs``: on for the whole run; ``<= 0``: never on, no line)."""
    eta, flag = reuse_eta(cfg)
    if eta <= 1 or (off_from is not None and off_from <= 0):
        return None
    if off_from is None or off_from >= epochs:
        return (f"datareduce: mosaic is on for the whole run ({setting}): every image is scored each epoch, so "
                f"{flag} {eta} reuses no loss (η-reuse needs mosaic off)")
    return (f"datareduce: mosaic is on for the first {off_from} of {epochs} epochs ({setting}): every image is "
            f"scored each epoch until it is off; {flag} {eta} applies from then on (the last {epochs - off_from})")


@dataclass
class EpochSelectionStats:
    """What one epoch of online selection did (the accounting of the epoch record)."""

    forward_samples: int = 0  # samples the loader produced
    scored: int = 0  # samples that got a scoring forward (η-reuse skips the fresh ones)
    selected: int = 0  # samples the selector kept
    backprop: int = 0  # samples in the training batches handed out
    train_batches: int = 0
    loss_sum_all: float = 0.0
    loss_sum_kept: float = 0.0
    finite_all: int = 0
    finite_kept: int = 0
    loaded: int = 0  # samples the loader actually produced (fewer than forward_samples in a planned epoch)
    score_time_s: float = 0.0  # scoring forwards (the price of selection)
    select_time_s: float = 0.0  # the selector and the accumulator (the overhead this package adds)
    kept_indices: list = field(default_factory=list)

    def book_selection(self, losses: torch.Tensor, keep: torch.Tensor) -> None:
        """Book one selection from a batch: the samples kept (bool mask ``keep``) and the finite ``losses`` of all
        and of the kept ones, for the epoch's loss means."""
        finite = torch.isfinite(losses)
        kept = keep & finite
        self.selected += int(keep.sum())
        self.loss_sum_all += float(losses[finite].sum())
        self.finite_all += int(finite.sum())
        self.loss_sum_kept += float(losses[kept].sum())
        self.finite_kept += int(kept.sum())

    def book_batch(self, n: int) -> None:
        """Book a training batch of ``n`` samples handed out."""
        self.backprop += n
        self.train_batches += 1

    def summed(self) -> "EpochSelectionStats":
        """The job's stats: counts and loss sums summed over the ranks, timings the slowest rank's (every rank
        calls it; the kept indices stay this rank's)."""
        if distributed.world_size() == 1:
            return self
        counts = ("forward_samples", "scored", "selected", "backprop", "train_batches", "finite_all", "finite_kept",
                  "loaded")
        sums = ("loss_sum_all", "loss_sum_kept")
        totals = distributed.all_sum([getattr(self, k) for k in counts + sums])
        times = distributed.gather_objects((self.score_time_s, self.select_time_s))
        return EpochSelectionStats(**{k: int(v) for k, v in zip(counts, totals)},
                                   **{k: float(v) for k, v in zip(sums, totals[len(counts):])},
                                   score_time_s=max(t[0] for t in times), select_time_s=max(t[1] for t in times),
                                   kept_indices=self.kept_indices)

    def as_record(self) -> dict:
        """JSON-ready summary (the kept indices are summarised by the caller, not logged raw)."""
        return {
            "forward_samples": self.forward_samples, "samples_loaded": self.loaded, "samples_scored": self.scored,
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

    ``reuse_train_losses`` (the paper's future work, §5.2: compute each loss once): the losses of the training
    forward, handed to :meth:`record_training_losses`, refresh the cache as if scored, so a sample trained in
    this epoch needs no scoring forward for the next ``eta`` epochs. ``load_fn(indices) -> batch`` loads
    samples by dataset index; a host that plans epochs must give it (samples carried out of a planned epoch
    into a streamed one are loaded with it).

    ``score_bucket``: when only some samples of a batch need scoring, score a multiple of this many rows (the
    stale samples, topped up with fresh ones whose new losses are discarded), so the scoring forward sees few
    distinct batch shapes. On CUDA with ``cudnn.benchmark`` every new shape is autotuned: without buckets, an
    epoch of partly stale batches spent 9 s scoring 10k samples where a fully stale one scored 50k in 2 s
    (H200, ``bench/results-gpu``). 1 (the default) scores exactly the stale samples.
    """

    def __init__(self, selector, score_fn, rho: int, ops=TensorBatchOps, index_fn=last_item, label_fn=None,
                 reuse_train_losses: bool = False, load_fn=None, score_bucket: int = 1):
        self.selector = selector
        self.score_bucket = check_number("score_bucket", score_bucket, low=1, integer=True)
        self.label_fn = label_fn
        self.reuse_train_losses = bool(reuse_train_losses)
        if self.reuse_train_losses and not hasattr(selector, "remember"):
            raise ValueError(f"reuse_train_losses needs a loss-caching selector, not {type(selector).__name__}")
        self.load_fn = load_fn
        self.weighted = bool(getattr(selector, "rescale", False))
        if self.weighted and ops is not TensorBatchOps:
            raise ValueError("loss rescaling needs tuple-of-tensor batches (TensorBatchOps)")
        self.score_fn = score_fn
        self.ops = ops
        self.index_fn = index_fn
        self.accumulator = BatchAccumulator(rho, ops)
        self.stats = EpochSelectionStats()
        # selected samples carried out of a planned epoch, not yet trained: dataset indices (and loss weights)
        self.carry = torch.zeros(0, dtype=torch.long)
        self.carry_weights = torch.zeros(0)
        self._plan_weights = None
        self._plan_full = 0  # samples of the plan trained in full batches of ``rho``
        self._nonfinite_start = self._nonfinite()  # the selector's running count when the epoch began

    def _nonfinite(self) -> int:
        """The selector's running count of the non-finite losses it dropped (0 for one that counts none)."""
        return int(getattr(self.selector, "nonfinite", 0))

    def _new_epoch(self) -> None:
        """Fresh epoch stats, and the non-finite count from here."""
        self.stats = EpochSelectionStats()
        self._nonfinite_start = self._nonfinite()

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
            rows = self._rows_to_score(need)
            if len(rows) == len(need):
                losses[need] = self._score(batch)[need]
            else:
                losses[rows[:n_need]] = self._score(self.ops.take(batch, rows))[:n_need]
            self.stats.score_time_s += time.perf_counter() - start
            self.stats.scored += len(rows)
        if distributed.world_size() > 1 and hasattr(self.selector, "remember"):
            self._share(indices[need], losses[need], epoch)
        return losses

    def _score(self, batch) -> torch.Tensor:
        return scored_losses(self.score_fn, batch)

    def _rows_to_score(self, need: torch.Tensor) -> torch.Tensor:
        """Rows of the batch to score: the stale ones first, topped up to a multiple of ``score_bucket``."""
        rows = need.nonzero().flatten()
        if self.score_bucket > 1 and len(rows) < len(need):
            size = min(len(need), math.ceil(len(rows) / self.score_bucket) * self.score_bucket)
            rows = torch.cat([rows, (~need).nonzero().flatten()[: size - len(rows)]])
        return rows

    def _share(self, indices: torch.Tensor, losses: torch.Tensor, epoch: int) -> None:
        """Cache every rank's freshly computed losses on every rank (one collective; just this rank's in one
        process): next epoch a sample may land on another rank's shard, and its loss is still fresh there."""
        pairs = distributed.gather_1d(torch.stack([indices.double(), losses.double()], 1).reshape(-1)).reshape(-1, 2)
        self.selector.remember(pairs[:, 0].long(), pairs[:, 1].float(), epoch)

    def record_training_losses(self, indices, losses, epoch: int) -> None:
        """Host hook after each training step: with ``reuse_train_losses`` the step's per-sample losses refresh
        the loss cache (every rank's, under DDP); otherwise nothing. Call it on every rank."""
        if not self.reuse_train_losses:
            return
        losses = torch.as_tensor(losses).detach().float().reshape(-1).cpu()
        self._share(torch.as_tensor(indices).reshape(-1).cpu(), losses, epoch)

    def epoch(self, loader, epoch: int, last: bool = False):
        """Iterate one epoch of ``loader``; yields training batches. ``last`` flushes the remainder at the end."""
        self._new_epoch()
        self._load_carry()
        held = None
        for batch in loader:
            n = self.ops.size(batch)
            self.stats.forward_samples += n
            self.stats.loaded += n
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
                if last:  # the final batch is held back: it may have to absorb the remainder
                    if held is not None:
                        yield from self._hand_out(held)
                    held = b
                else:
                    yield from self._hand_out(b)
        if last:
            yield from self._finish(held)

    def _finish(self, held):
        """The end of the last epoch: train what is queued without breaking lockstep. Where every rank has a
        remainder it is one more batch; where only some do, it joins their held-back final batch (every
        rank still makes the same number of steps); only when no rank has trained anything yet this epoch
        and some have nothing queued does the remainder stay queued."""
        has_rest = len(self.accumulator) > 0
        if distributed.min_over_ranks(int(has_rest)) == 1:
            if held is not None:
                yield from self._hand_out(held)
            yield from self._hand_out(self.accumulator.flush())
        elif held is not None:
            yield from self._hand_out(self.ops.cat([held, self.accumulator.flush()]) if has_rest else held)

    def _load_carry(self) -> None:
        """Queue the samples a planned epoch selected but did not train (loaded by index through ``load_fn``)."""
        if not len(self.carry):
            return
        if self.load_fn is None:
            raise RuntimeError("samples were carried out of a planned epoch but OnlineSelection has no load_fn")
        batch = self.load_fn(self.carry)
        self.stats.loaded += len(self.carry)
        self.accumulator.add(self._weighted(batch, self.carry_weights) if self.weighted else batch)
        self.carry, self.carry_weights = torch.zeros(0, dtype=torch.long), torch.zeros(0)

    def can_plan(self, indices: torch.Tensor, epoch: int) -> bool:
        """True when this epoch's selection can be made up front: not a warm-up epoch, and on every rank every
        sample of ``indices`` (this rank's epoch) has a fresh cached loss, or (with ``load_fn``) at most
        :data:`REFRESH_SHARE` of them are stale, to be scored first by :meth:`plan`."""
        stale = int(self.selector.needs_scoring(indices, epoch).sum())
        allowed = REFRESH_SHARE * len(indices) if self.load_fn is not None else 0
        ok = not self.selector.in_warmup(epoch) and stale <= allowed
        return distributed.min_over_ranks(int(ok)) == 1

    def _refresh(self, indices: torch.Tensor, epoch: int) -> None:
        """Score the stale samples of ``indices`` (loaded by index, in batches of ``rho``) and cache their
        losses on every rank, so the epoch can be selected from the cache alone."""
        stale = indices[self.selector.needs_scoring(indices, epoch)]
        start = time.perf_counter()
        losses = (torch.cat([self._score(self.load_fn(chunk)) for chunk in stale.split(self.rho)]) if len(stale)
                  else torch.zeros(0))
        self.stats.scored += len(stale)
        self.stats.loaded += len(stale)
        self.stats.score_time_s += time.perf_counter() - start
        if distributed.world_size() > 1:
            self._share(stale, losses, epoch)
        elif len(stale):
            self.selector.remember(stale, losses, epoch)

    def plan(self, index_batches, epoch: int, label_of=None, last: bool = False):
        """Select a whole epoch from cached losses, before loading anything (call only when :meth:`can_plan`).

        ``index_batches``: this rank's epoch as the loader would batch it (dataset indices); ``label_of(indices)``
        gives labels for class-aware selectors. The selector runs batch by batch exactly as :meth:`epoch`
        would. Returns the dataset indices to load and train, in order, a multiple of ``rho`` long (the
        samples queued from earlier epochs first); the rest are carried to the next epoch, or, with ``last``,
        trained as one final batch. Every rank trains the same number of batches. Stale losses (see
        :meth:`can_plan`) are scored first.
        """
        self._new_epoch()
        index_batches = [torch.as_tensor(b).reshape(-1).cpu() for b in index_batches]
        if self.load_fn is not None:
            self._refresh(torch.cat(index_batches) if index_batches else torch.zeros(0, dtype=torch.long), epoch)
        start = time.perf_counter()
        kept, weights = [], []
        queued = self.accumulator.flush()  # a streamed epoch's remainder: re-loaded by index with the plan
        if queued is not None:
            kept.append(torch.as_tensor(self.index_fn(queued[:-1] if self.weighted else queued)).reshape(-1).cpu())
            weights.append(queued[-1].cpu() if self.weighted else torch.ones(len(kept[-1])))
        kept.append(self.carry)
        weights.append(self.carry_weights)
        for indices in index_batches:
            losses = self.selector.cached_losses(indices)
            extra = {"labels": torch.as_tensor(label_of(indices)).reshape(-1).cpu()} if label_of is not None else {}
            keep = self.selector.select(losses, indices, epoch, all_losses=distributed.gather_losses(losses), **extra)
            self.stats.forward_samples += len(indices)
            self._count(losses, keep, indices)
            kept.append(indices[keep])
            weights.append(self.selector.last_weights[keep] if self.weighted else torch.ones(int(keep.sum())))
        order, order_w = torch.cat(kept), torch.cat(weights)
        n = distributed.min_over_ranks(len(order) // self.rho) * self.rho
        self._plan_full = n
        if last and distributed.max_over_ranks(len(order) - n) > 0:
            # as the streamed epoch's end (:meth:`_finish`): every rank trains all it holds, the rest beyond the
            # full batches that all ranks have as one final batch, so all make the same number of steps
            if distributed.min_over_ranks(len(order) - n) > 0:
                n = len(order)
            elif n > 0:
                self._plan_full, n = n - self.rho, len(order)
        self.carry, self.carry_weights = order[n:], order_w[n:]
        self._plan_weights = order_w[:n]
        self.stats.select_time_s += time.perf_counter() - start
        return order[:n]

    def planned(self, loader):
        """Training batches of a planned epoch: ``loader`` must visit exactly the indices :meth:`plan` returned,
        in order, in batches of ``rho`` (the last ones may be short). Yields them (with loss weights when
        :attr:`weighted`); the loader's batches past the plan's full ones are trained as one final batch."""
        offset, tail = 0, []
        for batch in loader:
            n = self.ops.size(batch)
            self.stats.loaded += n
            w = self._plan_weights[offset: offset + n]
            offset += n
            if offset > self._plan_full:
                tail.append(self._weighted(batch, w))
                continue
            yield from self._hand_out(self._weighted(batch, w))
        if tail:
            yield from self._hand_out(self.ops.cat(tail) if len(tail) > 1 else tail[0])
        if offset != len(self._plan_weights):
            raise RuntimeError(f"the loader visited {offset} samples of a {len(self._plan_weights)}-sample plan")

    def _weighted(self, batch, weights):
        return type(batch)((*batch, weights)) if self.weighted else batch

    def _count(self, losses, keep, indices):
        self.stats.book_selection(losses, keep)
        self.stats.kept_indices.append(indices[keep])

    def _hand_out(self, batch):
        self.stats.book_batch(self.ops.size(batch))
        yield batch

    def epoch_record(self) -> dict:
        """The epoch's selection accounting for the whole job (:meth:`EpochSelectionStats.summed`), the selected
        samples queued for the next epoch and the non-finite losses the selector dropped this epoch, both summed
        over the ranks (every rank calls it)."""
        buffered, nonfinite = distributed.all_sum([len(self.accumulator), self._nonfinite() - self._nonfinite_start])
        return {**self.stats.summed().as_record(), "buffered": int(buffered), "nonfinite_losses": int(nonfinite)}

    def kept_indices(self) -> torch.Tensor:
        """Dataset indices kept so far this epoch (all of them in warm-up epochs)."""
        parts = self.stats.kept_indices
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.long)

    def state_dict(self) -> dict:
        return {"selector": self.selector.state_dict(), "accumulator": self.accumulator.state_dict(),
                "carry": self.carry.clone(), "carry_weights": self.carry_weights.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.selector.load_state_dict(state["selector"])
        self._nonfinite_start = self._nonfinite()
        self.accumulator.load_state_dict(state["accumulator"])
        self.carry = state.get("carry", torch.zeros(0, dtype=torch.long)).clone()
        self.carry_weights = state.get("carry_weights", torch.zeros(0)).clone()


class ComposerSelection:
    """Composer-SB as a host's batch source (the selector: :class:`~datareduce.composer_sb.ComposerSBSelector`).

    While the selector is active (training progress in [start, end), not an every-``interrupt``-th batch), each
    forward batch is scored with ``score_fn`` and cut to its kept samples with ``ops.take``, trained at once as a
    smaller batch (no accumulation, so ranks stay in lockstep); otherwise the batch trains as is. ``stats``,
    ``max_batches``, ``epoch_record`` and ``state_dict`` are :class:`OnlineSelection`'s, so a host books both alike.
    """

    def __init__(self, selector, score_fn, epochs: int, ops=TensorBatchOps):
        self.selector, self.score_fn, self.ops = selector, score_fn, ops
        self.epochs = check_number("epochs", epochs, low=1, integer=True)
        self.stats = EpochSelectionStats()

    @staticmethod
    def max_batches(num_samples: int) -> int:
        """0: batches are cut, never queued, so an epoch yields at most the loader's own."""
        return 0

    def epoch(self, loader, epoch: int, last: bool = False):
        """The epoch's training batches: the loader's, cut to their kept samples while the selector is active."""
        self.stats = stats = EpochSelectionStats()
        nb = max(len(loader), 1)
        for i, batch in enumerate(loader):
            n = self.ops.size(batch)
            stats.forward_samples += n
            stats.loaded += n
            if self.selector.is_active((epoch + i / nb) / self.epochs, i):
                start = time.perf_counter()
                losses = scored_losses(self.score_fn, batch)
                stats.score_time_s += time.perf_counter() - start
                stats.scored += n
                start = time.perf_counter()
                keep = self.selector.select(losses)
                batch = self.ops.take(batch, keep.nonzero().flatten())
                stats.select_time_s += time.perf_counter() - start
                stats.book_selection(losses, keep)
            else:  # trained in full
                stats.selected += n
            stats.book_batch(self.ops.size(batch))
            yield batch

    def epoch_record(self) -> dict:
        """The epoch's selection accounting for the whole job (every rank calls it)."""
        return self.stats.summed().as_record()

    def state_dict(self) -> dict:
        return {"selector": self.selector.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.selector.load_state_dict(state["selector"])
