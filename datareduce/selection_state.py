"""The online-selection state of a run on every rank, as every host's checkpoint carries it.

Under torch.distributed each rank selects from its own shard with its own selector: its RNG, its queue of
selected samples not yet trained, its carried-over samples. A checkpoint therefore holds every rank's state, in
rank order (:func:`gather_states`), and a resumed rank takes its own back (:func:`restore_state`), so the
resumed run selects as the uninterrupted one. (The selection counts, the same on every rank, are
:meth:`datareduce.run_files.RunFiles.state_dict`'s.)
"""
from __future__ import annotations

import warnings
from typing import Optional

from . import distributed


def gather_states(obj) -> list:
    """Every rank's ``obj.state_dict()``, in rank order, on every rank: a collective, so every rank calls it
    ([] for no ``obj``: a method without online state)."""
    if obj is None:
        return []
    return distributed.gather_objects(obj.state_dict())


def restore_state(obj, states: Optional[list], rank: Optional[int] = None, world_size: Optional[int] = None,
                  **load_kwargs) -> bool:
    """Load this rank's entry of ``states`` (:func:`gather_states`) into ``obj`` (``load_kwargs`` go to its
    ``load_state_dict``); False when there is none to load.

    ``rank`` and ``world_size`` default to this process's. States written by another number of ranks cannot
    resume exactly (the shards differ): every rank then takes rank 0's, with a warning."""
    if obj is None or not states:
        return False
    rank = distributed.rank() if rank is None else rank
    world_size = distributed.world_size() if world_size is None else world_size
    if len(states) != world_size:
        warnings.warn(f"the checkpoint holds the selection state of {len(states)} rank(s), this run has "
                      f"{world_size}: every rank resumes with rank 0's, so selections will differ from an "
                      "uninterrupted run", RuntimeWarning)
        rank = 0
    obj.load_state_dict(states[rank], **load_kwargs)
    return True
