"""Checkpoints of the classification loop: written atomically, loaded safely."""
from __future__ import annotations

from pathlib import Path

import torch

from ..._validate import UsageError
from ...atomic import write_torch


def save_checkpoint(state: dict, path) -> None:
    """``torch.save`` to a temp file, then rename: an interrupted save never leaves a broken checkpoint."""
    write_torch(path, state)


def load_checkpoint(path) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (tensors and plain containers only:
    ``weights_only=True``, so a checkpoint file cannot run code)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--resume {path}: no such checkpoint")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - UnpicklingError and friends
        raise UsageError(f"--resume {path}: not a checkpoint of this trainer ({exc})") from None

