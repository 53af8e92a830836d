"""One epoch of training with data reduction.

The reduction session prepares the epoch and its method decides which samples each optimizer step sees; this
module runs the steps (AMP, gradient clipping, EMA) and books each with the session, which counts for the whole
job. Console output here is the epoch's tqdm bar.
"""
from __future__ import annotations

from typing import Iterator, Optional

import torch
from torch import nn

from ...session import ReductionSession
from .loss import autocast, per_sample_loss


class OnDevice:
    """The ``(images, targets, indices)`` batches of ``loader`` with images and targets on ``device`` (indices stay
    on the CPU), sized like ``loader``: Composer-SB's training progress counts the epoch's batches."""

    def __init__(self, loader, device: torch.device):
        self.loader, self.device = loader, device

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple]:
        non_blocking = self.device.type == "cuda"
        for images, targets, indices in self.loader:
            yield (images.to(self.device, non_blocking=non_blocking),
                   targets.to(self.device, non_blocking=non_blocking), indices)


def train_one_epoch(model, optimizer, loader, device, epoch: int, args, session: ReductionSession, scaler=None,
                    model_ema=None, show_progress: bool = True) -> Optional[float]:
    """One epoch of training: the session prepares it, its method decides which samples each optimizer step sees,
    and it books every step; the epoch's accounting for the whole job goes to the run files
    (:meth:`~datareduce.session.ReductionSession.end_training`). The loop's wall time (planning, loading, scoring,
    selection and steps) runs from the session's preparation to the last step. Returns the job's mean per-sample
    training loss (after InfoBatch weights). Console: a tqdm bar over the forward batches with the selection rate.
    """
    from tqdm import tqdm

    model.train()
    sync = device.type == "cuda"
    if sync:
        torch.cuda.synchronize(device)
    session.start_epoch(epoch)  # the offline subset and the method's plan: planning is part of the epoch's cost
    bar = tqdm(loader, desc=f"Epoch {epoch}", total=len(loader), disable=not show_progress, dynamic_ncols=True,
               leave=False, mininterval=1.0)
    steps, backprop, loss_sum = 0, 0, 0.0
    for (images, targets, indices), weights in session.batches(OnDevice(bar, device)):
        with autocast(device, args.amp):
            losses = per_sample_loss(model(images), targets, args.label_smoothing)
            loss = (losses * weights).mean() if weights is not None else losses.mean()
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            if args.clip_grad_norm is not None:
                scaler.unscale_(optimizer)
                nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad_norm)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if args.clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad_norm)
            optimizer.step()
        steps += 1
        batch_loss = float(loss.detach())
        session.stepped()
        session.trained(indices, losses, batch_loss)
        if model_ema is not None and steps % args.model_ema_steps == 0:
            model_ema.update_parameters(model)
            if epoch < args.lr_warmup_epochs:
                model_ema.n_averaged.fill_(0)
        backprop += len(indices)
        loss_sum += batch_loss * len(indices)
        if show_progress and steps % max(1, args.print_freq) == 0:
            rate = session.selection.selection_rate()
            bar.set_postfix(loss=f"{loss_sum / backprop:.4f}", sel=f"{rate:.2f}" if rate is not None else "-",
                            lr=f"{optimizer.param_groups[0]['lr']:.4g}", refresh=False)
    if sync:
        torch.cuda.synchronize(device)
    bar.close()
    return session.end_training()
