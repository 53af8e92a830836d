"""The few collective operations the selectors need under torch.distributed (no-ops in a single process)."""
from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def collective_device() -> torch.device:
    """Where collective tensors must live: CUDA for NCCL, the CPU for gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_1d(t: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's 1-D tensor (sizes may differ, dtype kept), in rank order, on the CPU."""
    if world_size() == 1:
        return t.cpu()
    dev = collective_device()
    n = torch.tensor([t.numel()], device=dev)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(sizes, n)
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros(longest, dtype=t.dtype, device=dev)
    padded[: t.numel()] = t.to(dev)
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes)]).cpu()


def gather_losses(losses: torch.Tensor) -> torch.Tensor:
    """Every rank's 1-D ``losses`` as one float tensor, in rank order (the shared ADONIS/SB history)."""
    return gather_1d(losses.float())


def min_over_ranks(value: int) -> int:
    """The smallest ``value`` over all ranks: ranks step together only as often as the slowest can."""
    if world_size() == 1:
        return value
    t = torch.tensor([value], device=collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def max_over_ranks(value: int) -> int:
    """The largest ``value`` over all ranks."""
    return -min_over_ranks(-value)


def all_sum(values) -> np.ndarray:
    """Element-wise sum of a numeric vector over ranks (float64); identity in one process."""
    arr = np.asarray(values, dtype=np.float64)
    if world_size() == 1:
        return arr
    t = torch.as_tensor(arr, device=collective_device())
    dist.all_reduce(t)
    return t.cpu().numpy()


def gather_objects(obj) -> list:
    """Every rank's picklable ``obj``, in rank order (``[obj]`` in one process)."""
    if world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()
