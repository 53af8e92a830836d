"""Checkpoints of the classification loop: written atomically, loaded safely, and every rank's reducer state.

Each rank holds its own selector state (buffer, RNG), so a checkpoint carries all of them and a resumed rank
takes its own back.
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..._validate import UsageError
from ...atomic import write_torch
from ...distributed import gather_objects
from .reducer import Reducer


def reducer_states(reducer: Reducer) -> list:
    """Every rank's reducer state (each rank holds its own buffer and RNG), gathered on all ranks."""
    return gather_objects(reducer.state_dict())


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


def restore_reducer(reducer: Reducer, states: list, rank: int, world_size: int, device) -> None:
    """Load this rank's reducer state; a different world size cannot resume exactly (warns, uses rank 0's)."""
    if not states:
        return
    if len(states) != world_size:
        import warnings

        warnings.warn(f"checkpoint was written by {len(states)} rank(s), this run has {world_size}: the selector "
                      "state of rank 0 is used everywhere, so selections will differ from an uninterrupted run",
                      RuntimeWarning)
        state = states[0]
    else:
        state = states[rank]
    reducer.load_state_dict(state, device=device)
