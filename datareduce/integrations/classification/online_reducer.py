"""The reducer of online batch selection (ADONIS, SB, Stale-SB, random-keep) over the core's ``OnlineSelection``.

This module holds only what the classification loop adds: planning an epoch from cached losses (the sampler then
visits only the kept samples), loading carried-over samples by index, and the epoch's record summed over ranks (the
reduction session counts the kept samples per class from :meth:`OnlineReducer.kept_indices`).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from ...online import OnlineSelection
from .reducer import Reducer
from .training_set import positions_of, sample_ids


class OnlineReducer(Reducer):
    """ADONIS, SB and Stale-SB through the core's :class:`~datareduce.online.OnlineSelection`.

    With ``batch_size == rho`` and ``plan`` on, an epoch whose selection needs no scoring forward (η-reuse,
    random-keep) is selected up front from the cached losses and the sampler visits only the kept samples,
    so the dropped ones are never loaded; ``collate_fn``/``device`` load samples carried across epochs. On
    CUDA with cuDNN autotuning, partly stale batches are scored in buckets of 32 rows (few distinct shapes).
    """

    online = True

    def __init__(self, selector, score_fn, rho: int, name: str, labels: np.ndarray, *,
                 batch_size: Optional[int] = None, plan: bool = True, reuse_train_losses: bool = False,
                 collate_fn=None, device=None):
        super().__init__()
        autotuned = device is not None and torch.device(device).type == "cuda" and torch.backends.cudnn.benchmark
        self.loop = OnlineSelection(selector, score_fn, rho, label_fn=_hard_labels,
                                    reuse_train_losses=reuse_train_losses, load_fn=self._load,
                                    score_bucket=32 if autotuned else 1)
        self.name = name
        self.labels = labels  # of the full set: for class-aware selectors in a planned epoch
        self.batch_size = batch_size
        self.plan = plan and batch_size == rho
        self.collate_fn = collate_fn or torch.utils.data.default_collate
        self.device = device
        self.dataset = None
        self.planned = False
        self.epoch = None

    def _load(self, ids: torch.Tensor):
        """Samples by full-set index, collated and on the training device (for carried-over samples)."""
        pos = positions_of(self.dataset, ids.numpy())
        images, targets, indices = self.collate_fn([self.dataset[int(p)] for p in pos])
        return images.to(self.device or "cpu"), targets.to(self.device or "cpu"), indices

    def prepare_epoch(self, epoch, sampler, last=False):
        sampler.set_plan(None)
        self.dataset, self.epoch, self.planned = sampler.dataset, epoch, False
        if not self.plan:
            return
        ids = torch.from_numpy(sample_ids(sampler.dataset)[sampler.rank_order().numpy()])
        if not self.loop.can_plan(ids, epoch):
            return
        chosen = self.loop.plan(ids.split(self.batch_size), epoch, label_of=lambda i: self.labels[i.numpy()],
                                last=last)
        sampler.set_plan(torch.from_numpy(positions_of(sampler.dataset, chosen.numpy())), local=True)
        self.planned = True

    def batches(self, loader, epoch, last):
        self.epoch = epoch  # for after_step (a host that plans no epochs never calls prepare_epoch)
        source = self.loop.planned(loader) if self.planned else self.loop.epoch(loader, epoch, last=last)
        for batch in source:
            st = self.loop.stats
            self.sel = {"forward": st.forward_samples, "selected": st.selected}
            if self.loop.weighted:  # (images, targets, indices, loss weights): the rescaling variant
                yield batch[:3], batch[3].to(batch[0].device)
            else:
                yield batch, None
        st = self.loop.stats
        self.sel = {"forward": st.forward_samples, "selected": st.selected}

    def after_step(self, indices, losses):
        self.loop.record_training_losses(indices, losses, self.epoch)

    def epoch_record(self) -> dict:
        """The epoch's selection accounting summed over the ranks (the samples queued for the next epoch and the
        epoch's non-finite losses among it) and whether it was planned."""
        return {**self.loop.epoch_record(), "planned": self.planned}

    def kept_indices(self) -> torch.Tensor:
        """The full-set indices this rank's selection kept this epoch."""
        return self.loop.kept_indices()

    def state_dict(self) -> dict:
        return self.loop.state_dict()

    def load_state_dict(self, state: dict, device=None) -> None:
        self.loop.load_state_dict(state)
        acc = self.loop.accumulator
        if device is not None and acc.pieces:  # images/targets live on the training device, the rest on CPU
            acc.pieces = [type(p)(t.to(device) if k < 2 else t for k, t in enumerate(p)) for p in acc.pieces]


def _hard_labels(batch) -> torch.Tensor:
    """Class labels of a batch (argmax of mixup/cutmix soft targets), on the CPU, for class-aware selectors."""
    targets = batch[1]
    return (targets if targets.dim() == 1 else targets.argmax(dim=1)).cpu()
