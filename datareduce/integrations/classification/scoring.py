"""The scoring forward of online selection: per-sample losses under ``no_grad`` that change no model state.

Online selectors (ADONIS, SB, Composer-SB …) score a batch before deciding what to train; that pass must move no
BatchNorm statistic, use no RNG and enter no collective (see :func:`scoring_mode`).
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from .loss import autocast, per_sample_loss

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@contextlib.contextmanager
def scoring_mode(model: nn.Module, bn: str = "batch"):
    """Put ``model`` in the state the scoring forward runs in, and restore it exactly afterwards.

    Everything is in eval mode (no dropout, no RNG use). BatchNorm layers: ``bn="batch"`` (default)
    normalise with the scored batch's own statistics, as the training forward will, *without* recording
    them (``track_running_stats`` is switched off for the pass, so neither the running mean/var nor
    ``num_batches_tracked`` move); ``bn="running"`` uses the running statistics (plain eval mode).
    ``SyncBatchNorm`` layers always use running statistics here: a per-rank scoring pass of ragged size must
    not enter a collective. A batch of one sample is scored with running statistics too.
    """
    modules = list(model.modules())
    saved = [(m, m.training, getattr(m, "track_running_stats", None)) for m in modules]
    try:
        model.eval()
        if bn == "batch":
            for m in modules:
                if isinstance(m, _BN) and not isinstance(m, nn.SyncBatchNorm):
                    m.train()
                    m.track_running_stats = False
        yield model
    finally:
        for m, training, track in saved:
            m.training = training
            if track is not None:
                m.track_running_stats = track


def make_score_fn(model: nn.Module, label_smoothing: float = 0.0, bn: str = "batch", amp: bool = False):
    """``score_fn(batch) -> per-sample losses`` for :class:`~datareduce.online.OnlineSelection`.

    ``model`` is the bare module (not the DDP wrapper: the scoring pass must not sync buffers or enter
    collectives whose call counts differ between ranks).
    """
    def score(batch):
        images, targets = batch[0], batch[1]
        mode = bn if len(images) > 1 else "running"
        with torch.no_grad(), scoring_mode(model, mode), autocast(images.device, amp):
            return per_sample_loss(model(images), targets, label_smoothing).float()

    return score
