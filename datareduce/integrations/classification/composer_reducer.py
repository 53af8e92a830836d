"""The reducer of Composer-style selective backprop: each batch's kept fraction trained at once, no accumulation.

Unlike :mod:`.online_reducer`, the selector is active only over part of training (by progress), and a batch
shrinks instead of waiting for a full one, so ranks stay in lockstep without buffering.
"""
from __future__ import annotations

import numpy as np
import torch

from ...distributed import all_sum
from .reducer import Reducer


class ComposerReducer(Reducer):
    """Composer-style SB: while active, train each batch's kept fraction at once (no accumulation)."""

    online = True
    name = "composer-sb"

    def __init__(self, selector, score_fn, epochs: int, labels: np.ndarray, num_classes: int):
        super().__init__()
        self.selector, self.score_fn, self.epochs = selector, score_fn, epochs
        self.num_batches = None  # forward batches per epoch (training progress); set by train_one_epoch
        self.labels, self.num_classes = labels, num_classes

    def batches(self, loader, epoch, last):
        nb = self.num_batches or (len(loader) if hasattr(loader, "__len__") else 0)
        if not nb:
            raise ValueError("composer-sb needs the number of batches per epoch: set reducer.num_batches")
        self.stats = {"forward_samples": 0, "samples_scored": 0, "samples_selected": 0}
        self.sel = {"forward": 0, "selected": 0}
        kept_all = []
        for i, batch in enumerate(loader):
            n = len(batch[0])
            self.stats["forward_samples"] += n
            self.sel["forward"] += n
            progress = (epoch + i / nb) / self.epochs
            if self.selector.is_active(progress, i):
                losses = self.score_fn(batch)
                self.stats["samples_scored"] += n
                keep = self.selector.select(losses).nonzero().flatten()
                batch = tuple(t[keep.to(t.device)] for t in batch)
            self.stats["samples_selected"] += len(batch[0])
            self.sel["selected"] += len(batch[0])
            kept_all.append(batch[-1])
            yield batch, None
        kept = torch.cat(kept_all).numpy() if kept_all else np.zeros(0, np.int64)
        self._per_class = np.bincount(self.labels[kept], minlength=self.num_classes)

    def epoch_record(self) -> dict:
        fwd, scored, selected = all_sum([self.stats["forward_samples"], self.stats["samples_scored"],
                                          self.stats["samples_selected"]])
        return {"forward_samples": int(fwd), "samples_scored": int(scored), "samples_selected": int(selected),
                "keep_fraction": selected / fwd if fwd else None,
                "kept_per_class": [int(c) for c in all_sum(self._per_class)]}

    def state_dict(self) -> dict:
        return {"selector": self.selector.state_dict()}

    def load_state_dict(self, state: dict, device=None) -> None:
        self.selector.load_state_dict(state["selector"])
