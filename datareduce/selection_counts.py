"""How often each training sample was back-propagated, summed over the ranks (``selection_counts.npy``)."""
from __future__ import annotations

import numpy as np
import torch

from .atomic import write_npy
from .distributed import all_sum


class SelectionCounts:
    """How many times each sample of the full training set was back-propagated (uint16, saturating)."""

    def __init__(self, size: int):
        self.counts = np.zeros(size, dtype=np.uint16)
        self._epoch = np.zeros(size, dtype=np.int64)

    def add(self, indices: torch.Tensor) -> None:
        np.add.at(self._epoch, indices.reshape(-1).cpu().numpy(), 1)

    def end_epoch(self) -> None:
        """Sum this epoch's counts over ranks and fold them in."""
        total = all_sum(self._epoch).astype(np.int64)
        self.counts = np.minimum(self.counts.astype(np.int64) + total, 65535).astype(np.uint16)
        self._epoch[:] = 0

    def drop_epoch(self) -> None:
        """Forget this rank's counts of the epoch not yet folded in (an epoch started again)."""
        self._epoch[:] = 0

    def save(self, path) -> None:
        write_npy(path, self.counts)
