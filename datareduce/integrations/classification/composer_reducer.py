"""The reducer of Composer-style selective backprop over the core's ``ComposerSelection``.

The selection (which batches are active, which samples each keeps) is the core's, the same on every host; this
module adds only what the classification loop books: the kept samples (the reduction session counts them per
class) and the selection rate.
"""
from __future__ import annotations

import torch

from ...online import ComposerSelection
from .reducer import Reducer


class ComposerReducer(Reducer):
    """Composer-style SB: while active, train each batch's kept fraction at once (no accumulation)."""

    online = True
    name = "composer-sb"

    def __init__(self, selector, score_fn, epochs: int):
        super().__init__()
        self.loop = ComposerSelection(selector, score_fn, epochs)
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
        """The epoch's selection accounting summed over the ranks."""
        return self.loop.epoch_record()

    def kept_indices(self) -> torch.Tensor:
        """The full-set indices of the samples this rank's batches kept this epoch."""
        return torch.cat(self.kept) if self.kept else torch.zeros(0, dtype=torch.long)

    def state_dict(self) -> dict:
        return self.loop.state_dict()

    def load_state_dict(self, state: dict, device=None) -> None:
        self.loop.load_state_dict(state)
