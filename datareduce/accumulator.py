"""Collect selected samples across forward batches into training batches of exactly ``rho`` (Algorithm 1, l. 26-31)."""
from __future__ import annotations

import torch

from ._validate import check_number


class TensorBatchOps:
    """Batch operations for tuples/lists of tensors that share their first dimension, e.g. (x, y, index)."""

    @staticmethod
    def size(batch) -> int:
        return len(batch[0])

    @staticmethod
    def take(batch, rows: torch.Tensor):
        return type(batch)(t[rows.to(t.device)] for t in batch)

    @staticmethod
    def cat(batches):
        return type(batches[0])(torch.cat(parts) for parts in zip(*batches))


class BatchAccumulator:
    """A queue of selected samples that hands out training batches of exactly ``rho`` samples.

    A partial remainder stays queued for the next forward batch, across epoch boundaries too; only
    :meth:`flush` (the very end of training) hands out a short batch. ``ops`` tells how to measure, slice and
    concatenate the host's batches (:class:`TensorBatchOps` for tuples of tensors).
    """

    def __init__(self, rho: int, ops=TensorBatchOps):
        self.rho = check_number("rho", rho, low=1, integer=True)
        self.ops = ops
        self.pieces = []
        self.held = 0

    def __len__(self) -> int:
        """Samples currently queued."""
        return self.held

    def add(self, batch) -> None:
        """Queue the (already selected) samples of ``batch``."""
        n = self.ops.size(batch)
        if n:
            self.pieces.append(batch)
            self.held += n

    def ready(self) -> int:
        """How many full training batches can be popped now."""
        return self.held // self.rho

    def pop(self):
        """The oldest ``rho`` queued samples as one batch (call only when ``ready()`` > 0).

        Whole pieces are handed out as they are; only the piece that straddles the cut is sliced, so each
        sample is copied at most twice between :meth:`add` and training."""
        if self.held < self.rho:
            raise RuntimeError(f"pop() with {self.held} samples queued, fewer than rho={self.rho}")
        parts, need = [], self.rho
        while need:
            piece = self.pieces[0]
            n = self.ops.size(piece)
            if n <= need:
                parts.append(self.pieces.pop(0))
                need -= n
            else:
                parts.append(self.ops.take(piece, torch.arange(need)))
                self.pieces[0] = self.ops.take(piece, torch.arange(need, n))
                need = 0
        self.held -= self.rho
        return parts[0] if len(parts) == 1 else self.ops.cat(parts)

    def flush(self):
        """Everything still queued as one (short) batch, or None when empty. For the end of training only."""
        if not self.held:
            return None
        merged = self.pieces[0] if len(self.pieces) == 1 else self.ops.cat(self.pieces)
        self.pieces, self.held = [], 0
        return merged

    def state_dict(self) -> dict:
        """The queued samples; ``rho`` stays the constructor's (a resumed run's batch size is its own)."""
        return {"pieces": list(self.pieces), "held": self.held}

    def load_state_dict(self, state: dict) -> None:
        self.pieces = list(state["pieces"])
        self.held = int(state["held"])
