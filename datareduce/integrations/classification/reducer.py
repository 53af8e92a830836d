"""What a reducer is (one epoch of forward batches in, training batches out) and the plain one: full data.

A reducer stands for one data-reduction method in the training loop; the methods' own reducers live in
``*_reducer.py`` beside this module, and :mod:`.reducer_choice` picks one for a run. :class:`FullReducer` also
serves the offline methods, whose reduction is the subset already in place.
"""
from __future__ import annotations

from typing import Optional

import torch

from ...distributed import all_sum
from .samplers import TrainSampler


class Reducer:
    """Turns one epoch of forward batches into training batches ``(batch, loss weights or None)``."""

    online = False
    name = "full"

    def __init__(self):
        self.stats = {}
        self.sel = {"forward": 0, "selected": 0}

    def prepare_epoch(self, epoch: int, sampler: TrainSampler, last: bool = False) -> None:
        """Before the epoch's loader is iterated (inside the timed loop): set the sampler's visiting order."""
        sampler.set_plan(None)

    def batches(self, loader, epoch: int, last: bool):
        raise NotImplementedError

    def after_step(self, indices: torch.Tensor, losses: torch.Tensor) -> None:
        pass

    def epoch_record(self) -> dict:
        return dict(self.stats)

    def selection_rate(self) -> Optional[float]:
        return self.sel["selected"] / self.sel["forward"] if self.sel["forward"] else None

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict, device=None) -> None:
        pass


class FullReducer(Reducer):
    """Every batch as it comes (full data, or an offline subset: IDS / SSP / RPC / RPD)."""

    def batch_weights(self, batch):
        """Per-sample loss weights of ``batch`` (None: unweighted)."""
        return None

    def batches(self, loader, epoch, last):
        self.stats = {"forward_samples": 0, "samples_scored": 0}
        self.sel = {"forward": 0, "selected": 0}
        for batch in loader:
            n = len(batch[0])
            self.stats["forward_samples"] += n
            self.sel["forward"] += n
            self.sel["selected"] += n
            yield batch, self.batch_weights(batch)

    def epoch_record(self) -> dict:
        return {"forward_samples": int(all_sum([self.stats.get("forward_samples", 0)])[0]), "samples_scored": 0}
