"""The reducer of RS2: every epoch the sampler visits that epoch's fresh random subset of the training set."""
from __future__ import annotations

from .reducer import FullReducer


class RS2Reducer(FullReducer):
    """RS2: each epoch the sampler visits that epoch's fresh random subset (every sample once before any twice)."""

    name = "rs2"

    def __init__(self, subsets):
        super().__init__()
        self.subsets = subsets

    def prepare_epoch(self, epoch, sampler, last=False):
        sampler.set_plan(self.subsets.plan(epoch))

    def epoch_record(self) -> dict:
        record = super().epoch_record()
        return {**record, "keep_fraction": self.subsets.per_epoch / self.subsets.num_samples}
