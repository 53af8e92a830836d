"""Per-epoch seeding: every RNG reseeded from (seed, epoch, rank), so a resumed run repeats an uninterrupted one."""
from __future__ import annotations

import numpy as np
import torch


def rng_state() -> dict:
    """The torch RNG state at the end of an epoch, for the record (every epoch reseeds: :func:`seed_epoch`)."""
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def seed_epoch(seed: int, epoch: int, rank: int = 0) -> None:
    """Seed every RNG from (seed, epoch, rank) at the top of an epoch: augmentation, dropout and loader workers
    then depend on nothing but the epoch, so a resumed run repeats an uninterrupted one exactly."""
    import random

    s = (seed * 1_000_003 + epoch * 1009 + rank) % (2**31)
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)
