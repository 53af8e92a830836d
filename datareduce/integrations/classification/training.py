"""One epoch of training with data reduction, and its accounting for the whole job.

The reducer decides which samples each optimizer step sees; this module runs the steps (AMP, gradient clipping,
EMA) and counts honestly: loop wall time (loading, scoring, selection and steps), steps, samples back-propagated.
Console output here is the epoch's tqdm bar.
"""
from __future__ import annotations

import time
from typing import Iterator, Optional

import torch
from torch import nn

from ...distributed import all_sum, gather_objects
from ...run_files import RunFiles
from .loss import autocast, per_sample_loss
from .reducer import Reducer


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


def train_one_epoch(model, optimizer, loader, device, epoch: int, args, reducer: Reducer, scaler=None,
                    model_ema=None, files: Optional[RunFiles] = None, last: bool = False,
                    show_progress: bool = True) -> dict:
    """One epoch of training: the reducer decides which samples each optimizer step sees.

    Returns this rank's accounting: ``train_time_s`` (wall time of the loop: loading, scoring, selection and
    steps), ``optimizer_steps``, ``samples_backprop``, ``train_loss`` (mean per-sample loss of the trained
    samples, after InfoBatch weights). ``files`` counts the back-propagated samples. Console: a tqdm bar over the
    forward batches with the selection rate.
    """
    from tqdm import tqdm

    model.train()
    sync = device.type == "cuda"
    if sync:
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    reducer.prepare_epoch(epoch, loader.sampler, last)  # planning the epoch is part of its cost
    bar = tqdm(loader, desc=f"Epoch {epoch}", total=len(loader), disable=not show_progress, dynamic_ncols=True,
               leave=False, mininterval=1.0)
    steps, backprop, loss_sum = 0, 0, 0.0
    for (images, targets, indices), weights in reducer.batches(OnDevice(bar, device), epoch, last):
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
        reducer.after_step(indices, losses)
        if model_ema is not None and steps % args.model_ema_steps == 0:
            model_ema.update_parameters(model)
            if epoch < args.lr_warmup_epochs:
                model_ema.n_averaged.fill_(0)
        n = len(indices)
        backprop += n
        loss_sum += float(loss.detach()) * n
        if files is not None:
            files.count(indices)
        if show_progress and steps % max(1, args.print_freq) == 0:
            rate = reducer.selection_rate()
            bar.set_postfix(loss=f"{loss_sum / backprop:.4f}", sel=f"{rate:.2f}" if rate is not None else "-",
                            lr=f"{optimizer.param_groups[0]['lr']:.4g}", refresh=False)
    if sync:
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - start
    bar.close()
    return {"train_time_s": elapsed, "optimizer_steps": steps, "samples_backprop": backprop,
            "train_loss_sum": loss_sum}


def job_accounting(stats: dict, reducer: Reducer) -> tuple:
    """One epoch's accounting for the whole job from every rank's :func:`train_one_epoch` result, and its mean
    training loss: the reducer's selection accounting, the slowest rank's loop time, the optimizer steps (equal on
    all ranks; each rank's listed under DDP), training batches and samples summed over the ranks."""
    steps = [int(s) for s in gather_objects(stats["optimizer_steps"])]
    train_time = max(gather_objects(stats["train_time_s"]))
    backprop, loss_sum = all_sum([stats["samples_backprop"], stats["train_loss_sum"]])
    selection = {**reducer.epoch_record(), "train_time_s": train_time, "optimizer_steps": steps[0],
                 "train_batches": sum(steps), "samples_backprop": int(backprop)}
    if len(steps) > 1:
        selection["optimizer_steps_per_rank"] = steps
    return selection, loss_sum / backprop if backprop else None
