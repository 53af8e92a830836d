"""The loss of the classification forward: per-sample cross-entropy, and the autocast context it runs in.

Shared by the training step, the scoring pass and evaluation, so all three compute the same loss the same way.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F


def per_sample_loss(logits: torch.Tensor, target: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy per sample (``reduction='none'``); soft targets from mixup/cutmix work too."""
    return F.cross_entropy(logits, target, reduction="none", label_smoothing=label_smoothing)


def autocast(device: torch.device, amp: bool):
    """CUDA autocast (mixed precision) when ``amp`` is on and ``device`` is a GPU; otherwise a no-op context."""
    if amp and device.type == "cuda":
        return torch.autocast("cuda")
    return contextlib.nullcontext()
