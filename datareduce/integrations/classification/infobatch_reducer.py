"""The reducer of InfoBatch: each epoch's visiting plan and loss weights from the pruner, scores from training.

The pruner (:mod:`datareduce.infobatch`) decides; this module wires it to the sampler's plan, the step's loss
weights and the training forward's per-sample losses, gathered from every rank.
"""
from __future__ import annotations

from ...distributed import gather_1d, gather_losses
from .reducer import FullReducer


class InfoBatchReducer(FullReducer):
    """InfoBatch: each epoch's visiting plan from the pruner; loss weights 1/(1−r) on kept well-learned samples;
    the training forward's losses (all ranks') update the scores."""

    name = "infobatch"

    def __init__(self, pruner):
        super().__init__()
        self.pruner = pruner
        self.pruned = 0

    def prepare_epoch(self, epoch, sampler, last=False):
        plan = self.pruner.plan(epoch)
        self.pruned = self.pruner.num_samples - len(plan)
        sampler.set_plan(plan)

    def batch_weights(self, batch):
        return self.pruner.loss_weights(batch[-1]).to(batch[0].device)

    def after_step(self, indices, losses):
        all_idx = gather_1d(indices.reshape(-1))
        all_loss = gather_losses(losses.detach().float().reshape(-1).cpu())
        self.pruner.update(all_idx, all_loss)

    def epoch_record(self) -> dict:
        return {**super().epoch_record(), "pruned_samples": int(self.pruned),
                "keep_fraction": 1 - self.pruned / self.pruner.num_samples}

    def state_dict(self) -> dict:
        return {"pruner": self.pruner.state_dict()}

    def load_state_dict(self, state: dict, device=None) -> None:
        self.pruner.load_state_dict(state["pruner"])
