"""The reducer of Composer-style selective backprop over the core's ``ComposerSelection``.

The selection (which batches are active, which samples each keeps) is the core's, the same on every host; this
module adds only what the classification loop books: the kept samples per class and the epoch's record summed
over the ranks.
"""
from __future__ import annotations

import numpy as np
import torch

from ...distributed import all_sum
from ...online import ComposerSelection
from .reducer import Reducer


class ComposerReducer(Reducer):
    """Composer-style SB: while active, train each batch's kept fraction at once (no accumulation)."""

    online = True
    name = "composer-sb"

    def __init__(self, selector, score_fn, epochs: int, labels: np.ndarray, num_classes: int):
        super().__init__()
        self.loop = ComposerSelection(selector, score_fn, epochs)
        self.labels, self.num_classes = labels, num_classes
        self.kept: list = []  # this epoch's trained batches' full-set indices

    def batches(self, loader, epoch, last):
        """``loader``'s batches (its length sets the training progress), cut to their kept samples while active."""
        self.kept = []
        for batch in self.loop.epoch(loader, epoch, last):
            st = self.loop.stats
            self.sel = {"forward": st.forward_samples, "selected": st.selected}
            self.kept.append(batch[-1])
            yield batch, None

    def epoch_record(self) -> dict:
        """The epoch's selection accounting summed over the ranks, with the kept samples per class."""
        kept = torch.cat(self.kept).numpy() if self.kept else np.zeros(0, np.int64)
        per_class = all_sum(np.bincount(self.labels[kept], minlength=self.num_classes))
        return {**self.loop.stats.summed().as_record(), "kept_per_class": [int(c) for c in per_class]}

    def state_dict(self) -> dict:
        return self.loop.state_dict()

    def load_state_dict(self, state: dict, device=None) -> None:
        self.loop.load_state_dict(state)
