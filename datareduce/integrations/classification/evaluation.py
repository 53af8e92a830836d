"""Evaluation of the classification model: top-1 / top-5 accuracy and mean loss, summed over all ranks."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...distributed import all_sum
from .loss import autocast


def evaluate(model, loader, device, num_classes: int, label_smoothing: float = 0.0, amp: bool = False) -> dict:
    """Top-1 (and top-5 with ≥ 5 classes) accuracy in % and the mean loss, summed over all ranks."""
    model.eval()
    k = 5 if num_classes >= 5 else None
    correct1 = correct5 = total = 0
    loss_sum = 0.0
    with torch.inference_mode():
        for batch in loader:
            images = batch[0].to(device, non_blocking=True)
            targets = batch[1].to(device, non_blocking=True)
            with autocast(device, amp):
                out = model(images)
            loss_sum += float(F.cross_entropy(out.float(), targets, reduction="sum", label_smoothing=label_smoothing))
            top = out.topk(k or 1, dim=1).indices
            hit = top == targets[:, None]
            correct1 += int(hit[:, 0].sum())
            if k:
                correct5 += int(hit.any(dim=1).sum())
            total += len(targets)
    c1, c5, n, ls = all_sum([correct1, correct5, total, loss_sum])
    out = {"top1": 100.0 * c1 / n if n else None, "val_loss": ls / n if n else None}
    if k:
        out["top5"] = 100.0 * c5 / n if n else None
    return out
